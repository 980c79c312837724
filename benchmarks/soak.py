"""Soak test of resume: SIGKILL a quickstart run at random times (some of them during checkpoint saves), flip a byte
in a random file of the newest checkpoint after some of the kills, and check that the run still ends with the
uninterrupted run's exact parameters and results.json evaluation.

    python benchmarks/soak.py [--kills=20] [--flips=5] [--seed=0] [--workdir=/tmp/convnets_soak]

Prints one line per kill (when, whether a save was in progress, which file was damaged, what the next start
restored) and a summary; exit code 0 only if the final run matches the uninterrupted one bitwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The quickstart recipe, long enough (~60 s of training on 2 cores) for 20 restarts to each make some progress.
RUN = ('--config=experiments/quickstart.py', '--config.num_epochs=120', '--config.checkpoint_every=50',
       '--config.evals.val.every=1000', '--config.log_every=100')


def _env() -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONPATH=ROOT)
    env.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(os.path.expanduser('~'), '.cache', 'convnets-soak-jax'))
    env.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
    return env


def _command(workdir: str, data_dir: str) -> list[str]:
    return [sys.executable, '-m', 'convnets.main', *RUN, f'--workdir={workdir}', f'--config.data.data_dir={data_dir}']


def _params_digest(workdir: str) -> str:
    """The checkpoint checksum (convnets.train.checkpoint.state_digest) of the final networks, read back."""
    import orbax.checkpoint as ocp

    from convnets.train import checkpoint

    ckpts = os.path.join(workdir, 'checkpoints')
    step = max(int(d) for d in os.listdir(ckpts) if d.isdigit())
    with ocp.StandardCheckpointer() as ckptr:
        tree = ckptr.restore(os.path.join(ckpts, str(step), 'state'))
    return checkpoint.state_digest(tree['nets'])


def _saving(ckpt_dir: str, since: float = 0.0) -> bool:
    """A save in progress: a temporary checkpoint directory created after `since`."""
    if not os.path.isdir(ckpt_dir):
        return False
    for d in os.listdir(ckpt_dir):
        try:
            if 'orbax-checkpoint-tmp' in d and os.path.getmtime(os.path.join(ckpt_dir, d)) >= since:
                return True
        except FileNotFoundError:  # Renamed into place meanwhile.
            pass
    return False


def _flip_random_byte(workdir: str, rng: random.Random) -> str | None:
    ckpts = os.path.join(workdir, 'checkpoints')
    steps = [int(d) for d in os.listdir(ckpts) if d.isdigit()] if os.path.isdir(ckpts) else []
    if not steps:
        return None
    newest = os.path.join(ckpts, str(max(steps)))
    files = [os.path.join(r, f) for r, _, names in os.walk(newest) for f in names
             if os.path.getsize(os.path.join(r, f)) > 0]
    path = rng.choice(files)
    offset = rng.randrange(os.path.getsize(path))
    with open(path, 'r+b') as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ (1 << rng.randrange(8))]))
    return f'{os.path.relpath(path, ckpts)}@{offset}'


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--kills', type=int, default=20)
    parser.add_argument('--flips', type=int, default=5)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--workdir', default='/tmp/convnets_soak')
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.workdir, ignore_errors=True)
    data_dir = os.path.join(args.workdir, 'tfds')
    reference, soaked = os.path.join(args.workdir, 'reference'), os.path.join(args.workdir, 'soaked')

    t0 = time.time()
    proc = subprocess.run(_command(reference, data_dir), cwd=ROOT, env=_env(), capture_output=True, text=True)
    if proc.returncode:
        print(proc.stderr[-3000:])
        return 1
    ref_seconds = time.time() - t0
    print(f'uninterrupted run: {ref_seconds:.1f} s')

    flip_at = set(rng.sample(range(args.kills), args.flips))
    ckpt_dir = os.path.join(soaked, 'checkpoints')
    kills, during_save, restored, damaged_seen = 0, 0, [], 0
    for i in range(args.kills):
        start = time.time()
        child = subprocess.Popen(_command(soaked, data_dir), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
        # A third of the kills wait for a save in progress; the others come at a random time.
        wait_for_save = i % 3 == 0
        deadline = start + (rng.uniform(4.0, 10.0) if not wait_for_save else ref_seconds)
        while child.poll() is None and time.time() < deadline:
            if wait_for_save and _saving(ckpt_dir, start):
                break
            time.sleep(0.002)
        in_save = _saving(ckpt_dir, start)
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            kills += 1
            during_save += in_save
        _, err = child.communicate()
        if child.returncode not in (-signal.SIGKILL, 0):
            print(f'run {i + 1} failed by itself (exit {child.returncode}):', err.strip().splitlines()[-2:])
            return 1
        restored_from = re.findall(r'Restored checkpoint at step (\d+)', err)
        damaged_seen += len(re.findall(r'checkpoint step \d+ is damaged', err))
        restored.append(restored_from[-1] if restored_from else '-')
        flipped = _flip_random_byte(soaked, rng) if i in flip_at else None
        print(f'kill {i + 1:2d} after {time.time() - start:5.1f} s  save in progress: {str(in_save):5s}  '
              f'resumed from: {restored[-1]:>4s}  flipped: {flipped or "-"}', flush=True)

    proc = subprocess.run(_command(soaked, data_dir), cwd=ROOT, env=_env(), capture_output=True, text=True)
    damaged_seen += len(re.findall(r'checkpoint step \d+ is damaged', proc.stderr))
    if proc.returncode:
        print(proc.stderr[-3000:])
        return 1
    with open(os.path.join(reference, 'results.json')) as a, open(os.path.join(soaked, 'results.json')) as b:
        ref, got = json.load(a), json.load(b)
    same_eval = ref['eval'] == got['eval']
    same_params = _params_digest(reference) == _params_digest(soaked)
    set_aside = os.listdir(os.path.join(soaked, 'checkpoints_damaged')) if os.path.isdir(
        os.path.join(soaked, 'checkpoints_damaged')) else []
    print(f'kills: {kills} ({during_save} during a save), byte flips: {args.flips}, damaged checkpoints detected: '
          f'{damaged_seen}, set aside: {sorted(set_aside)}')
    print(f'final eval equal to the uninterrupted run: {same_eval} ({got["eval"]})')
    print(f'final parameters bitwise equal: {same_params}')
    print(f'total soak time: {time.time() - t0:.0f} s')
    return 0 if same_eval and same_params else 1


if __name__ == '__main__':
    sys.exit(main())
