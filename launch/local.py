"""Launches an N-process job on this machine: the multi-host code path without a cluster.

  python launch/local.py --num_processes=2 --devices_per_process=4 -- \\
      --config=experiments/quickstart.py --workdir=/tmp/quickstart_2proc

Each process runs `python -m convnets.main <args>` with CONVNETS_COORDINATOR_ADDRESS / CONVNETS_NUM_PROCESSES /
CONVNETS_PROCESS_ID set (read by convnets.parallel.initialize_distributed), and, on CPU, its own simulated devices
(--devices_per_process). Output lines are prefixed with [pI]. If one process fails, the others are stopped and the
launcher exits with that process's status. On a real cluster run the same `python -m convnets.main --distributed`
on every host instead (Cloud TPU and SLURM are auto-detected by jax.distributed).
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _relay(index: int, stream) -> None:
    for line in stream:
        sys.stdout.write(f'[p{index}] {line}')
        sys.stdout.flush()


def launch(num_processes: int, devices_per_process: int, main_args: list[str], port: int | None = None) -> int:
    """Runs the processes to completion; returns 0 if all succeeded, else the first failure's status."""
    if num_processes < 1:
        raise ValueError(f'--num_processes must be >= 1, got {num_processes}.')
    if devices_per_process < 1:
        raise ValueError(f'--devices_per_process must be >= 1, got {devices_per_process}.')
    if not any(a.startswith('--config') for a in main_args) or not any(a.startswith('--workdir') for a in main_args):
        raise ValueError('Pass the convnets.main arguments after "--", including --config=... and --workdir=...')
    address = f'127.0.0.1:{port or _free_port()}'
    procs = []
    for i in range(num_processes):
        env = dict(os.environ, CONVNETS_COORDINATOR_ADDRESS=address, CONVNETS_NUM_PROCESSES=str(num_processes),
                   CONVNETS_PROCESS_ID=str(i))
        flags = [f for f in env.get('XLA_FLAGS', '').split() if 'xla_force_host_platform_device_count' not in f]
        env['XLA_FLAGS'] = ' '.join([*flags, f'--xla_force_host_platform_device_count={devices_per_process}'])
        proc = subprocess.Popen([sys.executable, '-m', 'convnets.main', *main_args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=_relay, args=(i, proc.stdout), daemon=True).start()
        procs.append(proc)
    status = 0
    while any(p.poll() is None for p in procs):
        failed = [p.returncode for p in procs if p.returncode not in (None, 0)]
        if failed:
            status = failed[0]
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            break
        time.sleep(0.2)
    for p in procs:
        p.wait()
    return status or next((p.returncode for p in procs if p.returncode), 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--num_processes', type=int, default=2)
    parser.add_argument('--devices_per_process', type=int, default=4, help='simulated CPU devices per process')
    parser.add_argument('--port', type=int, default=None, help='coordinator port (default: a free one)')
    parser.add_argument('main_args', nargs=argparse.REMAINDER, help='-- then the convnets.main arguments')
    args = parser.parse_args()
    main_args = args.main_args[1:] if args.main_args[:1] == ['--'] else args.main_args
    try:
        sys.exit(launch(args.num_processes, args.devices_per_process, main_args, args.port))
    except ValueError as e:
        parser.error(str(e))


if __name__ == '__main__':
    main()
