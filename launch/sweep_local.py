"""The local back end of `python -m launch.sweep`: the runs as `python -m convnets.main` subprocesses here.

One at a time, or --parallel=N at once; each run's output goes to ROOT/<run name>.log (appended: a resumed run's
log keeps its earlier attempts), and a line is printed per finished run. The runs are started in their own process
groups, so that a Ctrl-C in the terminal reaches only the launcher: it then sends SIGTERM to every running run (as
it does on its own SIGTERM), which saves a checkpoint and exits; rerunning the sweep resumes them. The launcher
exits with status 1 if a run failed (they are listed with their logs), 128 + N when stopped by signal N.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

from ml_collections import ConfigDict

from convnets import sweeps

EXTRA_FLAGS: tuple[str, ...] = ()
PROGRAM = ('-m', 'convnets.main')  # What each run is, after `python` (tests put a stand-in here).
POLL_S = 0.2


def devices_of(args: argparse.Namespace) -> Callable[[str, ConfigDict], int]:
    """Each run sees --devices_per_run simulated devices, or this machine's devices: counted by a child process
    with the runs' environment, so that the launcher itself never opens the accelerators (JAX would reserve most
    of their memory for as long as the sweep runs)."""
    count = args.devices_per_run or int(subprocess.run(
        [sys.executable, '-c', 'import jax; print(jax.device_count())'], env=run_env(0), capture_output=True,
        text=True, check=True).stdout.split()[-1])
    return lambda label, config: count


def problems(args: argparse.Namespace, root: str, configs: dict[str, ConfigDict]) -> list[tuple[str, str]]:
    if '://' in root:
        return [('sweep', f'--workdir={root}: the local back end writes logs next to the runs; give a local path')]
    return []


def run_env(devices_per_run: int) -> dict[str, str]:
    """The runs' environment: this one, with N simulated CPU devices when devices_per_run = N > 0."""
    env = dict(os.environ)
    if devices_per_run:
        flags = [f for f in env.get('XLA_FLAGS', '').split() if 'xla_force_host_platform_device_count' not in f]
        env['XLA_FLAGS'] = ' '.join([*flags, f'--xla_force_host_platform_device_count={devices_per_run}'])
    return env


@dataclasses.dataclass
class _Running:
    label: str
    log: str
    workdir: str
    proc: subprocess.Popen
    started: float


def _start(p, root: str, env: dict[str, str]) -> _Running:
    log = os.path.join(root, f'{p.name}.log')
    os.makedirs(root, exist_ok=True)
    command = [sys.executable, *PROGRAM, *p.args]
    with open(log, 'a') as f:
        f.write(f'==== launch.sweep, {time.strftime("%Y-%m-%d %H:%M:%S")}: {" ".join(command)}\n')
        f.flush()
        proc = subprocess.Popen(command, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True)  # Ctrl-C reaches the launcher only; it forwards SIGTERM.
    print(f'started  {p.run.label} (log: {log})', flush=True)
    return _Running(p.run.label, log, p.workdir, proc, time.monotonic())


def launch(args: argparse.Namespace, root: str, todo: Sequence, extra: Sequence[str]) -> int:
    """Runs `todo` (launch.sweep.Planned) to completion; the exit status of the sweep."""
    env = run_env(args.devices_per_run)
    queue, running, failed, done = list(todo), [], [], 0
    stop: list[int] = []  # The signal that stopped the sweep, once one came.

    def on_signal(signum, _frame) -> None:
        live = [r for r in running if r.proc.poll() is None]
        if not stop:
            print(f'\n{signal.Signals(signum).name}: stopping {len(live)} running run(s) (each saves a '
                  'checkpoint first); rerun the same command to resume', file=sys.stderr, flush=True)
        stop.append(signum)
        for r in live:
            r.proc.send_signal(signal.SIGTERM)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue or running:
            while queue and len(running) < args.parallel and not stop:
                running.append(_start(queue.pop(0), root, env))
            time.sleep(POLL_S)
            for r in [r for r in running if r.proc.poll() is not None]:
                running.remove(r)
                done += 1
                seconds = time.monotonic() - r.started
                finished = os.path.exists(os.path.join(r.workdir, sweeps.RESULTS))
                if finished:  # results.json is written last: a signal during the teardown changes nothing.
                    print(f'[{done}/{len(todo)}] {r.label}: finished in {seconds:.0f} s', flush=True)
                elif r.proc.returncode == 0 or stop:
                    print(f'[{done}/{len(todo)}] {r.label}: stopped after {seconds:.0f} s, not finished '
                          f'(checkpointed; rerun to resume)', flush=True)
                    if not stop:
                        failed.append((r.label, 'stopped before finishing', r.log))
                else:
                    print(f'[{done}/{len(todo)}] {r.label}: FAILED (exit code {r.proc.returncode}) after '
                          f'{seconds:.0f} s; log: {r.log}', flush=True)
                    failed.append((r.label, f'exit code {r.proc.returncode}', r.log))
            if stop and not running:
                break
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if failed:
        print(f'{len(failed)} run(s) failed:', file=sys.stderr)
        for label, why, log in failed:
            print(f'  {label} ({why}): {log}', file=sys.stderr)
    if stop:
        print(f'stopped by {signal.Signals(stop[0]).name}; {len(queue)} run(s) not started', file=sys.stderr)
        return 128 + stop[0]
    if not failed:
        print(f'all {len(todo)} run(s) finished: `python -m launch.report {root}` shows the table')
    return 1 if failed else 0
