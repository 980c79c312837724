"""Runs the sweep of an experiment file (one paper table or figure): locally, as a SLURM job array, or on TPU VMs.

  python -m launch.sweep --config=experiments/resnet34.py --sweep=table2 --workdir=ROOT --backend=local \\
      [--dry_run] [--parallel=N] [--only=LABEL,...] [-- --config.FIELD=VALUE ... given to every run]

Each row of the sweep (`get_sweeps()[NAME]` of the experiment file, see convnets.sweeps) runs
`python -m convnets.main --config=FILE[:VARIANT] <its overrides> <the flags after --> --workdir=ROOT/<run name>`.
ROOT/sweep.json records the sweep for `python -m launch.report ROOT`. A run whose workdir holds results.json is
skipped (and said so); an unfinished one is simply run again: convnets.main resumes it from its latest
checkpoint. So rerunning the same command after a crash, a Ctrl-C or a preemption finishes the sweep.

Before anything is launched, every run to be launched is checked (launch/sweep_checks.py): its config parses, its
networks build (jax.eval_shape), its global batch divides the target's devices, its data are prepared. All
problems of all runs are listed at once and nothing is launched (status 2); --skip_validation bypasses the checks.

Back ends
  local    runs on this machine, one at a time or --parallel=N at once; output to ROOT/<run name>.log and a line
           per finished run. Ctrl-C or SIGTERM stops the runs (they checkpoint first); exit status 1 if a run
           failed, with the failed runs and their logs listed. --devices_per_run=N simulates N CPU devices per run.
  slurm    writes ROOT/slurm/<sweep>[_<k>].sbatch (a job array, one array task per unfinished run; runs that ask for
           different resources go to separate arrays) and submits it with sbatch. Resources come from each run's
           config (config.resources: nodes, accelerators_per_node, cpus_per_task, mem, time; `--
           --config.resources.nodes=4` changes them for every run); --partition, --account, --time and
           --slurm_option add to or override them. See launch/sweep_slurm.py.
  tpu_vm   prints (with --execute: runs) the gcloud commands that set up the TPU VM(s) and run each run on every
           worker with --distributed; ROOT must be gs:// on a multi-host TPU. See launch/sweep_tpu.py.

--dry_run prints one line per run (finished / partial (has checkpoints) / new, its label, its full command) and
launches nothing; it validates unless --skip_validation.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys
from collections.abc import Sequence

from convnets import cli_errors, sweeps

BACKENDS = ('local', 'slurm', 'tpu_vm')


@dataclasses.dataclass
class Planned:
    """One run of the sweep as this launch sees it."""
    run: sweeps.Run
    name: str  # Its workdir's name under the root.
    workdir: str
    status: str  # 'finished', 'partial', 'new', or 'unknown' (the workdir could not be read)
    args: list[str]  # convnets.main's arguments (without the back end's own, such as --distributed)


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    """(the launcher's options, the flags after `--` that every run gets)."""
    argv = list(argv)
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    own = argv[:argv.index('--')] if '--' in argv else argv
    p = argparse.ArgumentParser(prog='python -m launch.sweep', description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--config', required=True, help='the experiment file that declares the sweep (get_sweeps())')
    p.add_argument('--sweep', required=True, help="the sweep's name in get_sweeps() ('table2', 'depth', ...)")
    p.add_argument('--workdir', required=True, help='ROOT: each run gets ROOT/<run name>; gs://bucket/path for TPU')
    p.add_argument('--backend', choices=BACKENDS, default='local', help='where the runs go (default local)')
    p.add_argument('--dry_run', action='store_true', help='print what would run (status, label, command); '
                   'launch nothing')
    p.add_argument('--only', action='append', default=[], metavar='LABEL,...',
                   help='run only these rows (labels as the sweep spells them; comma-separated or repeated)')
    p.add_argument('--skip_validation', action='store_true', help='launch without checking config, model, batch '
                   'and data first')
    p.add_argument('--no_status', action='store_true', help='do not read the workdirs to skip finished runs (e.g. '
                   'a gs:// root this machine cannot read); a finished run launched again keeps its results.json')
    p.add_argument('--manifest_only', action='store_true', help='only write ROOT/sweep.json (what the report '
                   'reads); the tpu_vm back end runs this on a TPU VM, which can write to gs://')
    local = p.add_argument_group('local back end')
    local.add_argument('--parallel', type=int, default=1, help='runs at once (default 1: one after another)')
    local.add_argument('--devices_per_run', type=int, default=0, help='N > 0: each run sees N simulated CPU '
                       'devices (XLA_FLAGS=--xla_force_host_platform_device_count=N)')
    slurm = p.add_argument_group('slurm back end')
    slurm.add_argument('--partition', default='', help='sbatch --partition')
    slurm.add_argument('--account', default='', help='sbatch --account')
    slurm.add_argument('--time', default='', help='sbatch --time for every run (default: config.resources.time)')
    slurm.add_argument('--slurm_option', action='append', default=[], metavar='OPTION',
                       help="another #SBATCH line, e.g. --slurm_option=--qos=high (repeatable)")
    slurm.add_argument('--slurm_setup', action='append', default=[], metavar='LINE',
                       help="a shell line run before srun, e.g. 'source ~/venv/bin/activate' (repeatable)")
    slurm.add_argument('--max_concurrent', type=int, default=0, help='at most this many array tasks at once (0: '
                       'no limit)')
    slurm.add_argument('--python', default='python', help='the Python of the compute nodes (default python)')
    tpu = p.add_argument_group('tpu_vm back end')
    tpu.add_argument('--tpu_name', default='', help='the TPU VM every run uses, one after another')
    tpu.add_argument('--tpu_names', default='', help='comma-separated TPU VMs: one run per TPU, in order')
    tpu.add_argument('--zone', default='', help='gcloud --zone of the TPU VMs')
    tpu.add_argument('--project', default='', help='gcloud --project (default: gcloud\'s configured project)')
    tpu.add_argument('--accelerator_type', default='', help='e.g. v4-32: gives the device count that the global '
                     'batch must divide, and whether the TPU has several hosts')
    tpu.add_argument('--num_devices', type=int, default=0, help='devices (chips JAX sees) of the TPU, instead of '
                     'deriving them from --accelerator_type')
    tpu.add_argument('--repo_url', default='', help='git URL the TPU VMs clone; default: copy this working tree '
                     'there with gcloud scp')
    tpu.add_argument('--repo_dir', default='convnets', help="the repository's directory on the TPU VMs (relative "
                     "to the home directory; default convnets)")
    tpu.add_argument('--execute', action='store_true', help='run the printed gcloud commands as well')
    args = p.parse_args(own)
    args.argv = argv  # As given: the SLURM scripts record the command that wrote them.
    if args.parallel < 1:
        p.error(f'--parallel={args.parallel}: give at least 1')
    if args.devices_per_run < 0:
        p.error(f'--devices_per_run={args.devices_per_run}: give a positive number (or 0: the default devices)')
    if args.backend == 'tpu_vm' and not (args.tpu_name or args.tpu_names):
        p.error('--backend=tpu_vm needs --tpu_name=NAME (or --tpu_names=A,B,...) and --zone=ZONE')
    if args.backend == 'tpu_vm' and not args.zone:
        p.error('--backend=tpu_vm needs --zone=ZONE (the TPU VMs\' zone, e.g. us-central2-b)')
    if extra and (bad := [a for a in extra if a.startswith('--workdir') or a.startswith('--config=')]):
        p.error(f'{" ".join(bad)} after "--": the sweep sets --config and --workdir of each run itself')
    return args, extra


def selected_runs(sweep: sweeps.Sweep, only: Sequence[str]) -> list[sweeps.Run]:
    """The sweep's runs, or those named by --only (whole labels first, so 'C (S=384, Q=384)' keeps its comma)."""
    if not only:
        return list(sweep.runs)
    labels = [r.label for r in sweep.runs]
    wanted: list[str] = []
    for value in only:
        wanted.extend([value] if value in labels else [v.strip() for v in value.split(',') if v.strip()])
    if unknown := [w for w in wanted if w not in labels]:
        raise ValueError(f'--only: no row {", ".join(map(repr, unknown))} in this sweep; its rows are '
                         f'{", ".join(map(repr, labels))}')
    return [r for r in sweep.runs if r.label in wanted]


def run_status(workdir: str) -> str:
    """'finished' (results.json), 'partial' (checkpoints, also of a stage), or 'new'."""
    from etils import epath

    path = epath.Path(workdir)
    if (path / sweeps.RESULTS).exists():
        return 'finished'
    if not path.is_dir():
        return 'new'
    if (path / 'checkpoints').is_dir() or any((p / 'checkpoints').is_dir() for p in path.iterdir() if p.is_dir()):
        return 'partial'
    return 'new'


def plan(config_path: str, runs: Sequence[sweeps.Run], root: str, extra: Sequence[str], *,
         read_status: bool = True) -> list[Planned]:
    """Every selected run with its workdir, status and convnets.main arguments."""
    out = []
    for run in runs:
        workdir = sweeps.run_workdir(root, run)
        status = 'unknown'
        if read_status:
            try:
                status = run_status(workdir)
            except Exception as e:  # An unreadable (remote) root: say so once, and launch every run.
                print(f'cannot read {workdir} ({type(e).__name__}: {str(e).splitlines()[0][:200]}); every run is '
                      'launched (a finished run keeps its results.json). --no_status skips this check.',
                      file=sys.stderr)
                read_status = False
        out.append(Planned(run, sweeps.run_name(run), workdir, status,
                           sweeps.main_args(config_path, run, workdir, extra)))
    return out


def command_line(args: Sequence[str], python: str = 'python') -> str:
    """The shell command of one run."""
    return shlex.join([python, '-m', 'convnets.main', *args])


def print_plan(planned: Sequence[Planned], extra_flags: Sequence[str] = ()) -> None:
    width = max(len(p.run.label) for p in planned)
    for p in planned:
        print(f'{p.status:<8} {p.run.label:<{width}}  {command_line([*p.args, *extra_flags])}')


def _root(workdir: str, backend: str) -> str:
    """ROOT as the runs see it: absolute for a local path (SLURM jobs start elsewhere), unchanged for gs://."""
    return workdir.rstrip('/') if '://' in workdir else os.path.abspath(workdir)


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        sweep = sweeps.get_sweep(args.config, args.sweep)
        runs = selected_runs(sweep, args.only)
    except (ValueError, FileNotFoundError, TypeError, SyntaxError) as e:
        cli_errors.fail(str(e), cli_errors.USAGE_ERROR)
    root = _root(args.workdir, args.backend)
    planned = plan(args.config, runs, root, extra, read_status=not args.no_status)
    finished = [p for p in planned if p.status == 'finished']
    todo = [p for p in planned if p.status != 'finished']
    for p in finished:
        print(f'skipping {p.run.label}: finished ({p.workdir}/{sweeps.RESULTS} exists)')
    if args.backend == 'slurm':
        from launch import sweep_slurm as backend
    elif args.backend == 'tpu_vm':
        from launch import sweep_tpu as backend
    else:
        from launch import sweep_local as backend
    if todo and not args.skip_validation and not args.manifest_only:
        from launch import sweep_checks

        problems, configs = sweep_checks.check_runs(
            args.config, [p.run for p in todo], extra, devices_of=backend.devices_of(args),
            generate_data=args.backend == 'local', check_data=getattr(backend, 'check_data_here', lambda c: True))
        problems.items.extend(backend.problems(args, root, configs))
        if problems:
            cli_errors.fail(problems.report(), cli_errors.USAGE_ERROR)
        print(f'checked {len(todo)} run(s): configs parse, models build, batches divide the devices, data present')
    if args.dry_run:
        print(f'--dry_run: {len(todo)} of {len(planned)} run(s) would be launched ({args.backend}); nothing was')
        print_plan(planned, backend.EXTRA_FLAGS)
        if todo and hasattr(backend, 'preview'):
            backend.preview(args, root, todo, extra)
        return 0
    record = sweeps.manifest(args.config, args.sweep, sweep, root, extra)
    if args.manifest_only or args.backend != 'tpu_vm' or args.execute:  # tpu_vm: its first command writes it
        print(f'wrote {sweeps.write_manifest(root, record)}')
    if args.manifest_only:
        return 0
    if not todo:
        print(f'all {len(planned)} run(s) of the sweep are finished: `python -m launch.report {root}` shows the '
              'table')
        return 0
    return backend.launch(args, root, todo, extra)


if __name__ == '__main__':
    sys.exit(main())
