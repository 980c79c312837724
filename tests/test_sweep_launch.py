"""python -m launch.sweep: the dry run, the three back ends (local runs, a SLURM array through a fake sbatch, the
TPU VM commands), validation before launch, and resuming a stopped sweep without rerunning its finished runs."""

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from launch import sweep, sweep_tpu
from tests import cli

# A 3-run sweep of the quickstart recipe at tiny size. 'long' trains "forever" (until stopped) and asks SLURM for
# other resources than the two others, so that it goes to an array of its own.
EXPERIMENT = textwrap.dedent('''
    """Quickstart at tiny size, with a learning-rate sweep (tests/test_sweep_launch.py)."""
    from convnets import sweeps
    from experiments import quickstart


    def get_config():
        c = quickstart.get_config()
        c.num_train_steps = 3
        c.batch_size = 16
        c.evals.val.every = ''
        c.log_every = '1 steps'
        c.resources.nodes = 2
        c.resources.accelerators_per_node = 4
        c.resources.time = '0:30:00'
        return c


    def get_sweeps():
        top1 = sweeps.Column('top-1', 'eval.top1')
        runs = (sweeps.Run('lr 0.01', {'optimizer.learning_rate': 0.01}, paper={'top-1': 50.0}),
                sweeps.Run('lr 0.02', {'optimizer.learning_rate': 0.02}),
                sweeps.Run('long', {'num_train_steps': 100000, 'checkpoint_every': '5 steps',
                                    'resources.accelerators_per_node': 2}, name='long'))
        broken = (sweeps.Run('typo', {'optimizer.learnig_rate': 0.1}), sweeps.Run('fine', {'seed': 1}))
        return {'lr': sweeps.Sweep(title='tiny', source='tests', columns=(top1,), runs=runs),
                'broken': sweeps.Sweep(title='tiny', source='tests', columns=(top1,), runs=broken)}
''')
NAMES = ('learning_rate=0.01', 'learning_rate=0.02', 'long')


@pytest.fixture
def experiment(tmp_path) -> str:
    path = tmp_path / 'tiny_sweep.py'
    path.write_text(EXPERIMENT)
    return str(path)


def _main(monkeypatch, capsys, *argv: str) -> tuple[int, str, str]:
    monkeypatch.chdir(cli.ROOT)
    try:
        status = sweep.main(list(argv))
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return status, out, err


def test_dry_run_says_what_would_run(monkeypatch, capsys, tmp_path, experiment):
    root = tmp_path / 'root'
    (root / NAMES[0]).mkdir(parents=True)
    (root / NAMES[0] / 'results.json').write_text('{}')
    (root / NAMES[1] / 'checkpoints' / '5').mkdir(parents=True)
    status, out, _ = _main(monkeypatch, capsys, f'--config={experiment}', '--sweep=lr', f'--workdir={root}',
                           '--dry_run', '--skip_validation', '--', '--config.seed=3')
    assert status == 0
    lines = out.splitlines()
    assert f'skipping lr 0.01: finished ({root}/{NAMES[0]}/results.json exists)' in lines
    assert '--dry_run: 2 of 3 run(s) would be launched (local); nothing was' in lines
    rows = [line.split(None, 1) for line in lines if line.startswith(('finished ', 'partial ', 'new '))]
    assert [r[0] for r in rows] == ['finished', 'partial', 'new']
    assert rows[1][1].startswith('lr 0.02 ') and rows[2][1].startswith('long ')
    assert rows[2][1].endswith(f"python -m convnets.main --config={experiment} --config.num_train_steps=100000 "
                               f"'--config.checkpoint_every=5 steps' --config.resources.accelerators_per_node=2 "
                               f"--config.seed=3 --workdir={root}/long")
    assert not (root / 'sweep.json').exists()  # A dry run writes nothing.


def test_bad_sweep_name_and_bad_row_are_short_errors(monkeypatch, capsys, tmp_path, experiment):
    status, _, err = _main(monkeypatch, capsys, f'--config={experiment}', '--sweep=nope', f'--workdir={tmp_path}')
    assert status == 2 and err.startswith(f"error: {experiment} has no sweep 'nope'; its sweeps: broken, lr.")
    status, _, err = _main(monkeypatch, capsys, f'--config={experiment}', '--sweep=lr', f'--workdir={tmp_path}',
                           '--only=lr 0.03')
    assert status == 2 and "--only: no row 'lr 0.03' in this sweep" in err and 'Traceback' not in err


def test_local_back_end_lists_failed_runs_and_their_logs(monkeypatch, capsys, tmp_path, experiment):
    from launch import sweep_local

    child = tmp_path / 'child.py'  # A stand-in for convnets.main: fails for one learning rate, else 'finishes'.
    child.write_text(textwrap.dedent('''
        import os, sys
        workdir = sys.argv[-1].split('=', 1)[1]
        if '--config.optimizer.learning_rate=0.02' in sys.argv:
            print('diverged', flush=True)
            sys.exit(3)
        os.makedirs(workdir, exist_ok=True)
        open(os.path.join(workdir, 'results.json'), 'w').write('{}')
    '''))
    monkeypatch.setattr(sweep_local, 'PROGRAM', (str(child),))
    monkeypatch.setattr(sweep_local, 'POLL_S', 0.02)
    root = tmp_path / 'root'
    status, out, err = _main(monkeypatch, capsys, f'--config={experiment}', '--sweep=lr', f'--workdir={root}',
                             '--only=lr 0.01,lr 0.02', '--parallel=2', '--skip_validation')
    assert status == 1
    assert 'lr 0.01: finished in' in out and 'lr 0.02: FAILED (exit code 3)' in out
    assert err.splitlines()[-2:] == ['1 run(s) failed:', f'  lr 0.02 (exit code 3): {root}/{NAMES[1]}.log']
    assert (root / f'{NAMES[1]}.log').read_text().splitlines()[-1] == 'diverged'
    assert json.loads((root / 'sweep.json').read_text())['sweep'] == 'lr'


def _fake(path, body: str) -> None:
    path.write_text('#!/bin/sh\n' + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


def test_slurm_back_end_writes_and_submits_job_arrays(monkeypatch, capsys, tmp_path, experiment):
    bin_dir, root = tmp_path / 'bin', tmp_path / 'root'
    bin_dir.mkdir()
    # sbatch records its arguments and the script; srun (when the script runs below) records the task's command.
    _fake(bin_dir / 'sbatch', f'echo "$@" >> {tmp_path}/sbatch.args\necho "Submitted batch job 1234"\n')
    _fake(bin_dir / 'srun', f'printf "%s\\n" "$@" > {tmp_path}/srun.args\n')
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    status, out, _ = _main(monkeypatch, capsys, f'--config={experiment}', '--sweep=lr', f'--workdir={root}',
                           '--backend=slurm', '--skip_validation', '--partition=gpu', '--account=lab',
                           f'--python={sys.executable}', '--slurm_setup=echo set-up', '--',
                           '--config.data.data_dir=/data/tfds')
    assert status == 0, out
    scripts = [f'{root}/slurm/tiny_sweep_lr_0.sbatch', f'{root}/slurm/tiny_sweep_lr_1.sbatch']
    assert (tmp_path / 'sbatch.args').read_text().split() == scripts  # One array per resource group.
    assert out.count('job 1234') == 2 and (root / 'sweep.json').exists()
    first, second = (open(p).read() for p in scripts)
    sbatch = [line for line in first.splitlines() if line.startswith('#SBATCH')]
    assert sbatch == ['#SBATCH --job-name=tiny_sweep_lr_0', '#SBATCH --array=0-1', '#SBATCH --nodes=2',
                      '#SBATCH --ntasks-per-node=4', '#SBATCH --gpus-per-node=4', '#SBATCH --cpus-per-task=8',
                      '#SBATCH --time=0:30:00', '#SBATCH --partition=gpu', '#SBATCH --account=lab',
                      f'#SBATCH --output={root}/slurm/logs/%x_%A_%a.out', f'#SBATCH --chdir={cli.ROOT}',
                      '#SBATCH --signal=TERM@300']
    assert '#SBATCH --array=0-0' in second and '#SBATCH --gpus-per-node=2' in second
    assert 'export JAX_COORDINATOR_PORT=' in first
    # Array task 1 of the first script runs 'lr 0.02': run the script as SLURM would, with the fake srun.
    env = dict(os.environ, SLURM_ARRAY_TASK_ID='1', SLURM_JOB_NODELIST='node1')
    done = subprocess.run(['bash', scripts[0]], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == 'set-up'
    assert ("array task 1: lr 0.02 on node1, coordinator port" in done.stdout
            and f'log: {root}/{NAMES[1]}.log' in done.stdout)
    assert (tmp_path / 'srun.args').read_text().splitlines() == [
        '--kill-on-bad-exit=1', f'--output={root}/{NAMES[1]}.log', '--open-mode=append', sys.executable, '-m',
        'convnets.main', f'--config={experiment}', '--config.optimizer.learning_rate=0.02',
        '--config.data.data_dir=/data/tfds', f'--workdir={root}/{NAMES[1]}', '--distributed']


def test_tpu_vm_back_end_prints_the_gcloud_commands(monkeypatch, capsys, experiment):
    root = 'gs://bucket/sweeps/lr'
    status, out, _ = _main(monkeypatch, capsys, f'--config={experiment}', '--sweep=lr', f'--workdir={root}',
                           '--backend=tpu_vm', '--tpu_name=pod', '--zone=us-central2-b', '--accelerator_type=v4-32',
                           '--repo_url=https://example.org/convnets.git', '--no_status', '--skip_validation')
    assert status == 0
    commands = [line for line in out.splitlines() if line.startswith('gcloud ')]
    ssh = 'gcloud compute tpus tpu-vm ssh pod --zone=us-central2-b'
    assert commands[0].startswith(f"{ssh} --worker=all --command='(git clone https://example.org/convnets.git "
                                  "convnets || git -C convnets pull --ff-only) && cd convnets && pip install -e . && "
                                  'pip install -U "jax[tpu]"')
    assert commands[1] == (f"{ssh} --worker=0 --command='cd convnets && python -m launch.sweep --config={experiment} "
                           f"--sweep=lr --workdir={root} --manifest_only --no_status'")
    assert commands[2] == (f"{ssh} --worker=all --command='cd convnets && python -m convnets.main "
                           f"--config={experiment} --config.optimizer.learning_rate=0.01 "
                           f"--workdir={root}/{NAMES[0]} --distributed'")
    assert len(commands) == 5 and all('--worker=all' in c and '--distributed' in c for c in commands[2:])
    assert out.rstrip().endswith('# (printed only: --execute runs them)')


def test_tpu_devices_and_hosts():
    assert sweep_tpu.accelerator_devices('v4-32') == (16, True)  # 16 chips (one JAX device each), 4 hosts
    assert sweep_tpu.accelerator_devices('v3-8') == (8, False)
    assert sweep_tpu.accelerator_devices('v5litepod-16') == (16, True)
    args = sweep.parse_args(['--config=x', '--sweep=y', '--workdir=/tmp/r', '--backend=tpu_vm', '--tpu_name=t',
                             '--zone=z', '--accelerator_type=v4-32'])[0]
    problems = sweep_tpu.problems(args, '/tmp/r', {})
    assert len(problems) == 1 and 'use a GCS path, --workdir=gs://BUCKET/PATH' in problems[0][1]


def test_remote_paths():
    from convnets.train.workdir_lock import is_remote

    assert is_remote('gs://bucket/run') and not is_remote('/tmp/run') and not is_remote('runs/gs:/x')


@pytest.mark.slow
def test_validation_reports_every_problem_of_every_run(monkeypatch, capsys, tmp_path, experiment):
    empty = tmp_path / 'no_data'
    empty.mkdir()
    root = tmp_path / 'root'
    status, _, err = _main(monkeypatch, capsys, f'--config={experiment}', '--sweep=broken', f'--workdir={root}',
                           '--backend=slurm', '--', f'--config.data.data_dir={empty}', '--config.batch_size=30')
    assert status == 2, err
    lines = err.splitlines()
    assert lines[0] == 'error: 3 problem(s) in 2 run(s) of the sweep; nothing was launched (--skip_validation ' \
                       'launches anyway):'
    assert lines[1].startswith("  [typo] config: --config.optimizer.learnig_rate: the config has no field "
                               "'optimizer.learnig_rate'. Did you mean optimizer.learning_rate?")
    assert lines[2] == ('  [fine] batch: batch_size=30 is the GLOBAL batch and must be a multiple of the 8 devices '
                        'of the target: e.g. --config.batch_size=24 or 32.')  # 2 nodes x 4 GPUs
    assert lines[3].startswith(f"  [fine] data: dataset 'convnets_digits' is not prepared in {empty}. To prepare")
    assert not root.exists()  # Nothing launched, nothing written.

    # A gs:// workdir has no file lock: the lock is skipped (nothing is read or written there).
    from convnets.train.workdir_lock import WorkdirLock
    with WorkdirLock('gs://bucket/run') as lock:
        assert lock._fd is None


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, f'the sweep ended before {what}: {proc.communicate()}'
        assert time.time() < deadline, f'timed out waiting for {what}'
        time.sleep(0.1)


@pytest.mark.slow
def test_local_sweep_runs_and_a_stopped_sweep_resumes(tmp_path, experiment, digits_dir):
    root = tmp_path / 'root'
    command = [sys.executable, '-m', 'launch.sweep', f'--config={experiment}', '--sweep=lr', f'--workdir={root}',
               '--parallel=3', '--devices_per_run=2', '--skip_validation', '--',
               f'--config.data.data_dir={digits_dir}']
    proc = subprocess.Popen(command, cwd=cli.ROOT, env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    results = [root / name / 'results.json' for name in NAMES]
    checkpoints = root / 'long' / 'checkpoints'
    # Both short runs finish; 'long' would train for 100000 steps: stop the sweep once it has a checkpoint.
    _wait_for(lambda: results[0].exists() and results[1].exists(), proc, 'the short runs finished')
    _wait_for(lambda: checkpoints.is_dir() and any(p.name.isdigit() for p in checkpoints.iterdir()), proc,
              "'long' saved a checkpoint")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, (out, err)
    assert 'SIGTERM: stopping' in err and 'long: stopped after' in out
    assert 'lr 0.01: finished in' in out and 'lr 0.02: finished in' in out
    assert not results[2].exists()
    manifest = json.loads((root / 'sweep.json').read_text())
    assert [r['workdir'] for r in manifest['runs']] == [str(root / name) for name in NAMES]
    before = [(p.stat().st_mtime_ns, p.read_text()) for p in results[:2]]
    logs = [(root / f'{name}.log').read_text() for name in NAMES[:2]]
    saved = max(int(p.name) for p in checkpoints.iterdir() if p.name.isdigit())

    # Rerun (with a shorter run length): the finished runs are skipped, 'long' resumes from its checkpoint.
    done = subprocess.run([*command, '--config.num_train_steps=1'], cwd=cli.ROOT, env=cli.env(),
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert 'skipping lr 0.01: finished' in done.stdout and 'skipping lr 0.02: finished' in done.stdout
    assert '[1/1] long: finished' in done.stdout
    assert [(p.stat().st_mtime_ns, p.read_text()) for p in results[:2]] == before
    assert [(root / f'{name}.log').read_text() for name in NAMES[:2]] == logs
    assert json.loads(results[2].read_text())['step'] >= saved >= 5  # Resumed, not trained again from step 0.
