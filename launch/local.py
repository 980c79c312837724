"""Launches an N-process job on this machine: the multi-host code path without a cluster.

  python launch/local.py --num_processes=2 --devices_per_process=4 -- \\
      --config=experiments/quickstart.py --workdir=/tmp/quickstart_2proc

Each process runs `python -m convnets.main <args>` with CONVNETS_COORDINATOR_ADDRESS / CONVNETS_NUM_PROCESSES /
CONVNETS_PROCESS_ID set (read by convnets.parallel.initialize_distributed), and, on CPU, its own simulated devices
(--devices_per_process). Output lines are prefixed with [pI].

Every process is watched, not only the first: when one exits with an error or is killed, the launcher notices
within a poll (0.1 s), stops the others (SIGTERM, then SIGKILL after --grace_period_s), says on stderr which
process died and how, and exits with that process's status (128 + N for a process killed by signal N). Without
this the survivors would wait in a collective for JAX's heartbeat timeout (over a minute). A SIGTERM to the
launcher (preemption) is passed on to every process. On a real cluster run the same
`python -m convnets.main --distributed` on every host instead (Cloud TPU and SLURM are auto-detected by
jax.distributed).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

MAIN = ('-m', 'convnets.main')
POLL_S = 0.1
GRACE_PERIOD_S = 10.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _relay(index: int, stream) -> None:
    for line in stream:
        sys.stdout.write(f'[p{index}] {line}')
        sys.stdout.flush()


def describe_exit(code: int) -> str:
    """`exit code 3`, or `killed by SIGKILL (exit code -9)` for a process ended by a signal."""
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f'signal {-code}'
        return f'killed by {name} (exit code {code})'
    return f'exit code {code}'


def exit_status(code: int) -> int:
    """The shell's status for a child's return code: the code itself, or 128 + N for death by signal N."""
    return 128 - code if code < 0 else code


def _first_failure(procs: Sequence[subprocess.Popen]) -> tuple[int, int] | None:
    """Waits until every process has exited (None) or one has failed: (its index, its return code)."""
    while True:
        codes = [p.poll() for p in procs]
        for i, code in enumerate(codes):
            if code not in (None, 0):
                return i, code
        if all(code is not None for code in codes):
            return None
        time.sleep(POLL_S)


def _stop(procs: Sequence[subprocess.Popen], grace_period_s: float) -> list[str]:
    """SIGTERM to the live processes, SIGKILL to those still alive after the grace period; how each ended."""
    live = [(i, p) for i, p in enumerate(procs) if p.poll() is None]
    for _, p in live:
        p.terminate()
    deadline = time.monotonic() + grace_period_s
    notes = []
    for i, p in live:
        try:
            code = p.wait(timeout=max(0.0, deadline - time.monotonic()))
            notes.append(f'process {i} stopped by SIGTERM ({describe_exit(code)})')
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            notes.append(f'process {i} killed with SIGKILL (still running {grace_period_s:g} s after SIGTERM)')
    return notes


def launch(num_processes: int, devices_per_process: int, main_args: list[str], port: int | None = None, *,
           program: Sequence[str] = MAIN, grace_period_s: float = GRACE_PERIOD_S) -> int:
    """Runs the processes to completion; returns 0 if all succeeded, else the status of the first that failed.

    `program` is what each process runs after `python` (default `-m convnets.main`), followed by `main_args`.
    """
    if num_processes < 1:
        raise ValueError(f'--num_processes must be >= 1, got {num_processes}.')
    if devices_per_process < 1:
        raise ValueError(f'--devices_per_process must be >= 1, got {devices_per_process}.')
    address = f'127.0.0.1:{port or _free_port()}'
    procs, relays = [], []
    for i in range(num_processes):
        env = dict(os.environ, CONVNETS_COORDINATOR_ADDRESS=address, CONVNETS_NUM_PROCESSES=str(num_processes),
                   CONVNETS_PROCESS_ID=str(i))
        flags = [f for f in env.get('XLA_FLAGS', '').split() if 'xla_force_host_platform_device_count' not in f]
        env['XLA_FLAGS'] = ' '.join([*flags, f'--xla_force_host_platform_device_count={devices_per_process}'])
        proc = subprocess.Popen([sys.executable, *program, *main_args], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        relay = threading.Thread(target=_relay, args=(i, proc.stdout), daemon=True)
        relay.start()
        procs.append(proc)
        relays.append(relay)

    def forward_sigterm(*_) -> None:  # Preemption of the launcher is preemption of the job: all save and exit.
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)

    forwarding = threading.current_thread() is threading.main_thread()  # Only there can handlers be set.
    previous = signal.signal(signal.SIGTERM, forward_sigterm) if forwarding else None
    try:
        failure = _first_failure(procs)
    except BaseException:  # Ctrl-C or a launcher bug: leave no process behind.
        _stop(procs, grace_period_s)
        raise
    finally:
        if forwarding:
            signal.signal(signal.SIGTERM, previous)
    notes = _stop(procs, grace_period_s) if failure else []
    for relay in relays:  # The processes' last lines come before the launcher's verdict.
        relay.join(timeout=2.0)
    if failure is None:
        return 0
    index, code = failure
    print(f'launch/local.py: process {index} of {num_processes} died ({describe_exit(code)}); stopped the others'
          + (f': {"; ".join(notes)}.' if notes else '.'), file=sys.stderr, flush=True)
    return exit_status(code)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--num_processes', type=int, default=2)
    parser.add_argument('--devices_per_process', type=int, default=4, help='simulated CPU devices per process')
    parser.add_argument('--port', type=int, default=None, help='coordinator port (default: a free one)')
    parser.add_argument('--grace_period_s', type=float, default=GRACE_PERIOD_S,
                        help='after one process dies, how long the others get to exit after SIGTERM before SIGKILL')
    parser.add_argument('main_args', nargs=argparse.REMAINDER, help='-- then the convnets.main arguments')
    args = parser.parse_args()
    main_args = args.main_args[1:] if args.main_args[:1] == ['--'] else args.main_args
    if not any(a.startswith('--config') for a in main_args) or not any(a.startswith('--workdir') for a in main_args):
        parser.error('Pass the convnets.main arguments after "--", including --config=... and --workdir=...')
    try:
        sys.exit(launch(args.num_processes, args.devices_per_process, main_args, args.port,
                        grace_period_s=args.grace_period_s))
    except ValueError as e:
        parser.error(str(e))


if __name__ == '__main__':
    main()
