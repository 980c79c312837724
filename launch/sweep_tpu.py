"""The TPU VM back end of `python -m launch.sweep`: the gcloud commands that run a sweep on Cloud TPU VMs.

Printed (and run with --execute), per TPU VM:
  1. set-up on every worker: the repository (cloned from --repo_url, or this working tree copied with gcloud scp,
     replacing ~/<repo_dir>), `pip install -e .` and `pip install "jax[tpu]"`;
  2. the manifest: `python -m launch.sweep ... --manifest_only` on worker 0 writes ROOT/sweep.json (the TPU VM can
     write to gs://);
  3. per run: `gcloud compute tpus tpu-vm ssh NAME --zone=ZONE --worker=all --command='cd REPO && python -m
     convnets.main ... --distributed'`: the same command on every worker (host), jax.distributed detects the TPU
     pod. Runs follow one another on one TPU VM (--tpu_name), or go one per TPU (--tpu_names=A,B,...; with
     --execute each TPU's runs start at once, one after another on that TPU).

A pod slice with several hosts needs ROOT on GCS (gs://bucket/path): every host writes its part of each checkpoint
into the same workdir, and the report reads them all. The same holds for data.data_dir (TFDS reads gs:// directly).
Device counts (what the global batch must divide) from --accelerator_type: v2-N / v3-N have N TensorCores, each a
JAX device; v4-N / v5p-N count 2 TensorCores per chip and JAX sees one device per chip (N / 2); v5litepod-N,
v5e-N and v6e-N have N single-core chips. Types with N > 8 span several hosts.
"""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from ml_collections import ConfigDict

EXTRA_FLAGS = ('--distributed',)
_TYPE = re.compile(r'^(v2|v3|v4|v5p|v5litepod|v5e|v6e)-(\d+)$')


def accelerator_devices(accelerator_type: str) -> tuple[int, bool]:
    """(JAX devices, several hosts?) of a TPU accelerator type such as 'v4-32' (16 devices, 2 hosts)."""
    m = _TYPE.match(accelerator_type)
    if not m:
        raise ValueError(f'--accelerator_type={accelerator_type!r}: expected e.g. v3-8, v4-32, v5p-64, '
                         'v5litepod-16 or v6e-8 (or give --num_devices)')
    generation, n = m.group(1), int(m.group(2))
    devices = n // 2 if generation in ('v4', 'v5p') else n
    return devices, n > 8


def devices_of(args: argparse.Namespace) -> Callable[[str, ConfigDict], int | None]:
    count = args.num_devices or (accelerator_devices(args.accelerator_type)[0] if args.accelerator_type else None)
    if count is None:
        print('the batch is not checked against the TPU: give --accelerator_type (e.g. v4-32) or --num_devices',
              file=sys.stderr)
    return lambda label, config: count


def multi_host(args: argparse.Namespace) -> bool:
    return bool(args.accelerator_type) and accelerator_devices(args.accelerator_type)[1]


def problems(args: argparse.Namespace, root: str, configs: dict[str, ConfigDict]) -> list[tuple[str, str]]:
    out = []
    if args.accelerator_type:
        try:
            accelerator_devices(args.accelerator_type)
        except ValueError as e:
            return [('sweep', str(e))]
    several = multi_host(args)
    if not root.startswith('gs://'):
        if several:
            out.append(('sweep', f'--workdir={root}: a {args.accelerator_type} TPU has several hosts, which must all '
                                 'write to one workdir: use a GCS path, --workdir=gs://BUCKET/PATH'))
        else:
            print(f'note: --workdir={root} is not on GCS: the runs write to the TPU VM\'s own disk (gs://BUCKET/PATH '
                  'keeps them when the VM goes)', file=sys.stderr)
    for label, config in configs.items():
        data_dir = config.data.data_dir or ''
        if several and not data_dir.startswith('gs://'):
            out.append((label, f'data.data_dir={data_dir or "(TFDS default, ~/tensorflow_datasets)"}: every host of '
                               'the TPU reads the data: prepare it on GCS and pass -- --config.data.data_dir=gs://...'))
    return out


def check_data_here(config: ConfigDict) -> bool:
    """Only a gs:// data_dir can be checked from here (a local one is on the TPU VM, not this machine)."""
    return (config.data.data_dir or '').startswith('gs://')


def ssh(args: argparse.Namespace, name: str, remote: str, worker: str = 'all') -> list[str]:
    """`gcloud compute tpus tpu-vm ssh NAME --zone=Z --worker=W --command=REMOTE` as an argv."""
    project = [f'--project={args.project}'] if args.project else []
    return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', name, f'--zone={args.zone}', *project, f'--worker={worker}',
            f'--command={remote}']


def shown(argv: Sequence[str]) -> str:
    """The argv as a shell line, with --command='...' quoted as a whole."""
    return ' '.join(f'--command={shlex.quote(a.removeprefix("--command="))}' if a.startswith('--command=')
                    else shlex.quote(a) for a in argv)


def setup_commands(args: argparse.Namespace, name: str) -> list[list[str]]:
    repo = args.repo_dir
    install = f'cd {shlex.quote(repo)} && pip install -e . && pip install -U "jax[tpu]"'
    if args.repo_url:
        url = shlex.quote(args.repo_url)
        fetch = f'(git clone {url} {shlex.quote(repo)} || git -C {shlex.quote(repo)} pull --ff-only)'
        return [ssh(args, name, f'{fetch} && {install}')]
    copy = ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', '--recurse', '.', f'{name}:{repo}', f'--zone={args.zone}',
            *([f'--project={args.project}'] if args.project else []), '--worker=all']
    return [ssh(args, name, f'rm -rf {shlex.quote(repo)}'), copy, ssh(args, name, install)]


def manifest_command(args: argparse.Namespace, name: str, root: str, extra: Sequence[str]) -> list[str]:
    argv = ['python', '-m', 'launch.sweep', f'--config={args.config}', f'--sweep={args.sweep}', f'--workdir={root}',
            '--manifest_only', '--no_status', *(['--', *extra] if extra else [])]
    return ssh(args, name, f'cd {shlex.quote(args.repo_dir)} && {_inner_join(argv)}', worker='0')


def _inner_join(argv: Sequence[str]) -> str:
    """A shell line for inside --command='...': arguments that need quoting get double quotes where they can, so
    that the outer single quotes stay readable."""
    def quote(a: str) -> str:
        if shlex.quote(a) == a or any(c in a for c in '"$`\\!'):
            return shlex.quote(a)
        return f'"{a}"'
    return ' '.join(quote(a) for a in argv)


def run_command(args: argparse.Namespace, name: str, p) -> list[str]:
    main = _inner_join(['python', '-m', 'convnets.main', *p.args, *EXTRA_FLAGS])
    return ssh(args, name, f'cd {shlex.quote(args.repo_dir)} && {main}')


def queues(args: argparse.Namespace, todo: Sequence) -> dict[str, list]:
    """The runs of each TPU VM, in order: all on --tpu_name, or one per TPU of --tpu_names (round robin)."""
    names = [n.strip() for n in args.tpu_names.split(',') if n.strip()] or [args.tpu_name]
    out: dict[str, list] = {n: [] for n in names}
    for i, p in enumerate(todo):
        out[names[i % len(names)]].append(p)
    return {n: runs for n, runs in out.items() if runs}


def commands(args: argparse.Namespace, root: str, todo: Sequence, extra: Sequence[str]
             ) -> dict[str, list[tuple[str, list[str]]]]:
    """Per TPU VM, (what, argv) in the order they run."""
    out = {}
    for k, (name, runs) in enumerate(queues(args, todo).items()):
        steps = [('set-up', c) for c in setup_commands(args, name)]
        if k == 0:
            steps.append(('manifest', manifest_command(args, name, root, extra)))
        steps += [(f'run {p.run.label}', run_command(args, name, p)) for p in runs]
        out[name] = steps
    return out


def preview(args: argparse.Namespace, root: str, todo: Sequence, extra: Sequence[str]) -> None:
    _print(commands(args, root, todo, extra))


def _print(per_tpu: dict[str, list[tuple[str, list[str]]]]) -> None:
    for name, steps in per_tpu.items():
        print(f'# TPU VM {name}: {sum(w.startswith("run ") for w, _ in steps)} run(s), one after another')
        for what, argv in steps:
            print(f'# {what}\n{shown(argv)}')


def launch(args: argparse.Namespace, root: str, todo: Sequence, extra: Sequence[str]) -> int:
    """Prints the commands; with --execute runs them (each TPU's in order, the TPUs at once)."""
    per_tpu = commands(args, root, todo, extra)
    _print(per_tpu)
    if not args.execute:
        print('# (printed only: --execute runs them)')
        return 0
    failures: list[str] = []

    def run_queue(name: str, steps: list[tuple[str, list[str]]]) -> None:
        for what, argv in steps:
            print(f'[{name}] {what}', flush=True)
            if (code := subprocess.run(argv).returncode) != 0:
                failures.append(f'{name}: {what} (exit code {code})')
                if not what.startswith('run '):
                    return  # Without its set-up the TPU's runs cannot start.

    threads = [threading.Thread(target=run_queue, args=item) for item in per_tpu.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for failure in failures:
        print(f'failed: {failure}', file=sys.stderr)
    return 1 if failures else 0
