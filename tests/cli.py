"""Running `python -m convnets.main` in a subprocess, as users do."""

import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHON_M = (sys.executable, '-m')  # + a module and its flags


def main_command(workdir: str, data_dir: str, *overrides: str, config: str = 'experiments/quickstart.py') -> list[str]:
    return [sys.executable, '-m', 'convnets.main', f'--config={config}', f'--workdir={workdir}',
            f'--config.data.data_dir={data_dir}', *overrides]


def env(num_devices: int = 8) -> dict[str, str]:
    e = dict(os.environ)
    e['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={num_devices}'
    e['TF_CPP_MIN_LOG_LEVEL'] = '2'
    e['PYTHONPATH'] = ROOT + os.pathsep + e.get('PYTHONPATH', '')
    return e


def run(cmd: list[str], num_devices: int = 8, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=ROOT, env=env(num_devices), capture_output=True, text=True, timeout=timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def interrupt_when_checkpointed(cmd: list[str], workdir: str, sig: int, num_devices: int = 2
                                ) -> tuple[int, str]:
    """Starts `cmd`, sends `sig` once its first checkpoint exists; returns (exit code, stderr)."""
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env(num_devices), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    ckpt_dir = os.path.join(workdir, 'checkpoints')
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if os.path.isdir(ckpt_dir) and any(d.isdigit() for d in os.listdir(ckpt_dir)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, 'the run finished before it could be interrupted'
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err
