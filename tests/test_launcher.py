"""launch/local.py watches every process: the death of any one stops the others within seconds, and says which."""

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from tests import cli

_spec = importlib.util.spec_from_file_location('launch_local', os.path.join(cli.ROOT, 'launch', 'local.py'))
local = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(local)

# A stand-in for convnets.main: the process named by FAIL_PROCESS fails (FAIL_HOW: an exit code, or 'kill' for
# SIGKILL) after 0.5 s; the others would run for a minute, like a survivor waiting in a collective for its dead peer.
CHILD = textwrap.dedent('''
    import os, signal, sys, time
    index = int(os.environ['CONVNETS_PROCESS_ID'])
    print(f'process {index} of {os.environ["CONVNETS_NUM_PROCESSES"]} started', flush=True)
    if os.environ.get('IGNORE_SIGTERM'):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if index == int(os.environ.get('FAIL_PROCESS', -1)):
        time.sleep(0.5)
        how = os.environ['FAIL_HOW']
        if how == 'kill':
            os.kill(os.getpid(), signal.SIGKILL)
        sys.exit(int(how))
    time.sleep(float(os.environ.get('RUN_S', 60)))
''')


@pytest.fixture
def child(tmp_path) -> str:
    path = tmp_path / 'child.py'
    path.write_text(CHILD)
    return str(path)


def _launch(monkeypatch, child: str, num_processes: int = 2, grace_period_s: float = 5.0, **env) -> tuple[int, float]:
    for key, value in env.items():
        monkeypatch.setenv(key, str(value))
    start = time.monotonic()
    status = local.launch(num_processes, 1, [], program=(child,), grace_period_s=grace_period_s)
    return status, time.monotonic() - start


def test_death_of_a_later_process_stops_the_job_at_once(monkeypatch, capsys, child):
    status, seconds = _launch(monkeypatch, child, num_processes=3, FAIL_PROCESS=1, FAIL_HOW=3)
    out, err = capsys.readouterr()
    # Before: only the first live process was watched, and process 0 waited ~74 s for JAX's heartbeat.
    assert status == 3 and seconds < 5, (status, seconds)
    assert '[p1] process 1 of 3 started' in out
    assert 'process 1 of 3 died (exit code 3)' in err
    assert 'process 0 stopped by SIGTERM' in err and 'process 2 stopped by SIGTERM' in err


def test_a_process_killed_by_a_signal_is_named_with_the_signal(monkeypatch, capsys, child):
    status, seconds = _launch(monkeypatch, child, FAIL_PROCESS=1, FAIL_HOW='kill')
    err = capsys.readouterr().err
    assert status == 128 + signal.SIGKILL and seconds < 5, (status, seconds)
    assert 'process 1 of 2 died (killed by SIGKILL (exit code -9))' in err


def test_a_survivor_that_ignores_sigterm_is_killed_after_the_grace_period(monkeypatch, capsys, child):
    status, seconds = _launch(monkeypatch, child, grace_period_s=1.0, FAIL_PROCESS=1, FAIL_HOW=2, IGNORE_SIGTERM=1)
    err = capsys.readouterr().err
    assert status == 2 and 1.0 < seconds < 6, (status, seconds)
    assert 'process 0 killed with SIGKILL (still running 1 s after SIGTERM)' in err


def test_a_job_whose_processes_all_succeed_exits_zero(monkeypatch, capsys, child):
    status, seconds = _launch(monkeypatch, child, RUN_S=0.2)
    assert status == 0 and seconds < 5
    assert 'died' not in capsys.readouterr().err


def _children(pid: int) -> dict[int, int]:
    """{CONVNETS_PROCESS_ID: pid} of the direct children of `pid` (Linux /proc)."""
    out = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            with open(f'/proc/{entry}/environ', 'rb') as f:
                env = dict(v.split(b'=', 1) for v in f.read().split(b'\0') if b'=' in v)
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b'CONVNETS_PROCESS_ID' in env:
            out[int(env[b'CONVNETS_PROCESS_ID'])] = int(entry)
    return out


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir('/proc/self'), reason='finds the launched processes through /proc')
def test_kill_9_of_process_1_of_a_real_two_process_run(tmp_path, digits_dir):
    """The issue's probe: kill -9 process 1 of a training quickstart; the launcher ends the job within seconds."""
    workdir = str(tmp_path / 'run')
    main_args = cli.main_command(workdir, digits_dir, '--config.num_train_steps=100000', '--config.batch_size=16',
                                 '--config.log_every=1', '--config.model.name=lenet5')[3:]
    launcher = [sys.executable, 'launch/local.py', '--num_processes=2', '--devices_per_process=1',
                '--grace_period_s=3', '--', *main_args]
    proc = subprocess.Popen(launcher, cwd=cli.ROOT, env=cli.env(1), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        lines = []
        for line in proc.stdout:  # Wait until both processes train (step logs of process 1).
            lines.append(line)
            if line.startswith('[p1]') and 'step' in line and 'loss' in line:
                break
        assert proc.poll() is None, ''.join(lines[-30:])
        pids = _children(proc.pid)
        assert set(pids) == {0, 1}, pids
        os.kill(pids[1], signal.SIGKILL)
        killed = time.monotonic()
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGKILL, err[-2000:]
    assert 'process 1 of 2 died (killed by SIGKILL (exit code -9))' in err
    # The poll (0.1 s) + the grace period (3 s) + process exit; before this change process 0 hung for ~74 s.
    assert seconds < 10, seconds
    with pytest.raises(ProcessLookupError):  # Process 0 was stopped and reaped, not left behind.
        os.kill(pids[0], 0)
