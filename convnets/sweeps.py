"""Sweeps: the runs that regenerate one table or figure of a paper, declared beside the recipe.

An experiment file may define `get_sweeps() -> dict[str, Sweep]`. A `Sweep` names its paper table (`title`,
`source`), the numbers a row shows (`columns`: paths into results.json) and its rows (`runs`): each row is the
experiment's config (optionally a `:variant` of it) plus `--config.FIELD=VALUE` overrides, and the paper's number
for each column. `launch/sweep.py` runs the rows (locally, as a SLURM array, or on TPU VMs), each in its own
workdir under the sweep's root, named from its overrides; `launch/report.py` lays the results out like the
paper's table with the paper's numbers beside them.

  def get_sweeps():
      return {'table2': sweeps.Sweep(
          title='Top-1 error (%, 10-crop testing) on ImageNet val', source='He et al. 2015, Table 2',
          columns=(sweeps.Column('top-1 err.', 'eval.top1', error=True),),
          runs=(sweeps.Run('plain-18', {'model.name': 'plain18'}, paper={'top-1 err.': 27.94}), ...))}

A run's config is parsed exactly as `python -m convnets.main --config=FILE[:VARIANT] --config.FIELD=VALUE ...`
parses it (`run_config`), so what a sweep validates is what it runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from absl import flags
from ml_collections import ConfigDict, config_flags

MANIFEST = 'sweep.json'  # Written by launch/sweep.py in the sweep's root; read by launch/report.py.
RESULTS = 'results.json'  # A run is finished when its workdir holds this (convnets.train.loop writes it last).
_SLUG_MAX = 96


@dataclasses.dataclass(frozen=True)
class Column:
    """One number of a table row: `key` is a dotted path into results.json ('eval.top1', 'eval.mAP').

    error      report 1 - value (accuracies in results.json, error rates in the paper's table).
    scale      multiply by this for display (100: fractions as percent); `paper` numbers are given as displayed.
    """
    name: str
    key: str
    error: bool = False
    scale: float = 100.0

    def value(self, results: Mapping[str, Any]) -> float | None:
        """This column's number from one run's results.json, or None if the key is absent or not a number."""
        node: Any = results
        for part in self.key.split('.'):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        if isinstance(node, bool) or not isinstance(node, int | float):
            return None
        value = 1.0 - float(node) if self.error else float(node)
        return value * self.scale


@dataclasses.dataclass(frozen=True)
class Run:
    """One row: the experiment's config (its `variant`, '' for the default) with `overrides` applied.

    label      the row's name as the paper prints it ('plain-34', 'C (S=384, Q=384)').
    overrides  {'model.name': 'plain34', ...}: config fields, as `--config.model.name=plain34` would set them.
    paper      {column name: the paper's number}; a column the paper does not report is left out.
    """
    label: str
    overrides: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    variant: str = ''
    paper: Mapping[str, float] = dataclasses.field(default_factory=dict)
    name: str = ''  # The workdir name; '' : made from the variant and overrides (run_name). For long spec strings.


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure drawn from the runs' TensorBoard events: one panel per (title, row labels), one line per run and
    tag. `tags` are (TensorBoard tag, line style) pairs, e.g. (('train/top1', ':'), ('eval_periodic/top1', '-'));
    `error` plots 1 - value (x `scale`)."""
    title: str
    panels: tuple[tuple[str, tuple[str, ...]], ...]
    tags: tuple[tuple[str, str], ...]
    y_label: str = 'error (%)'
    error: bool = True
    scale: float = 100.0


@dataclasses.dataclass(frozen=True)
class Sweep:
    """The runs of one paper table or figure.

    title      what the table shows ('Top-1 error (%, 10-crop) on ImageNet val').
    source     where the paper's numbers come from ('He et al. 2015, Table 2').
    columns    the numbers of each row.
    runs       the rows, in the paper's order; labels are unique.
    baseline   a row label: the report then also shows each row's difference to that row (AlexNet's ablations are
               reported as differences); '' for none.
    figure     a figure to draw from the runs' TensorBoard events (ResNet Fig. 4), or None.
    notes      deviations and how to read the table (printed under it).
    """
    title: str
    source: str
    columns: tuple[Column, ...]
    runs: tuple[Run, ...]
    baseline: str = ''
    figure: Figure | None = None
    notes: str = ''

    def __post_init__(self):
        labels = [r.label for r in self.runs]
        duplicated = sorted({x for x in labels if labels.count(x) > 1})
        if duplicated:
            raise ValueError(f'sweep {self.title!r}: row labels must be unique, {duplicated} repeat')
        if self.baseline and self.baseline not in labels:
            raise ValueError(f'sweep {self.title!r}: baseline {self.baseline!r} is not a row label ({labels})')
        names = {c.name for c in self.columns}
        for run in self.runs:
            if unknown := sorted(set(run.paper) - names):
                raise ValueError(f'sweep {self.title!r}, row {run.label!r}: paper numbers for unknown columns '
                                 f'{unknown}; the columns are {sorted(names)}')
        workdirs = [run_name(r) for r in self.runs]
        if clash := sorted({w for w in workdirs if workdirs.count(w) > 1}):
            raise ValueError(f'sweep {self.title!r}: two rows have the same variant and overrides ({clash}); '
                             'each row must differ in its config')


# ---- Experiment files --------------------------------------------------------------------------------------

def config_file(config_path: str) -> str:
    """'experiments/vgg16.py' of 'experiments/vgg16.py:variant'."""
    return config_path.split(':', 1)[0]


def load_module(config_path: str):
    """The experiment module of `config_path` ('experiments/x.py' or 'experiments/x.py:variant'), loaded from its
    file as ml_collections' config_flags loads it."""
    file = config_file(config_path)
    if not os.path.isfile(file):
        raise FileNotFoundError(f'config file {file!r} not found (relative paths start in {os.getcwd()}); the '
                                'experiments are experiments/*.py')
    name = 'convnets_sweep_' + re.sub(r'\W', '_', os.path.abspath(file))
    spec = importlib.util.spec_from_file_location(name, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def get_sweeps(config_path: str) -> dict[str, Sweep]:
    """The sweeps the experiment file declares (its get_sweeps()); {} if it declares none."""
    module = load_module(config_path)
    declared = getattr(module, 'get_sweeps', None)
    if declared is None:
        return {}
    sweeps = declared()
    for name, sweep in sweeps.items():
        if not isinstance(sweep, Sweep):
            raise TypeError(f'{config_file(config_path)}: get_sweeps()[{name!r}] must be a convnets.sweeps.Sweep, '
                            f'got {type(sweep).__name__}')
    return sweeps


def get_sweep(config_path: str, name: str) -> Sweep:
    """One named sweep of an experiment file, or a ValueError that lists the file's sweeps."""
    sweeps = get_sweeps(config_path)
    if name not in sweeps:
        known = ', '.join(sorted(sweeps)) or 'none (the file defines no get_sweeps())'
        raise ValueError(f'{config_file(config_path)} has no sweep {name!r}; its sweeps: {known}. Experiment files '
                         'with sweeps: ' + ', '.join(files_with_sweeps()))
    return sweeps[name]


def files_with_sweeps(directory: str | None = None) -> list[str]:
    """The experiment files (paths as given under `directory`, default the experiments package) that define
    get_sweeps(), found by reading the files (nothing is imported)."""
    if directory is None:
        spec = importlib.util.find_spec('experiments')
        directory = list(spec.submodule_search_locations)[0] if spec and spec.submodule_search_locations else (
            'experiments')
    found = []
    for name in sorted(os.listdir(directory)):
        if name.endswith('.py') and not name.startswith('_'):
            with open(os.path.join(directory, name)) as f:
                if re.search(r'^def get_sweeps\(', f.read(), re.M):
                    found.append(os.path.join(os.path.relpath(directory) if directory.startswith(os.getcwd())
                                              else directory, name))
    return found


# ---- One run: its command line, its config, its workdir ----------------------------------------------------

def format_value(value: Any) -> str:
    """The text of `--config.FIELD=TEXT` that sets `value` (ml_collections parses it back by the field's type)."""
    if isinstance(value, bool):
        return 'True' if value else 'False'
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return repr(tuple(value))
    return repr(value)


def config_arg(config_path: str, run: Run) -> str:
    """--config's value for `run`: the file, and ':variant' when the run names one."""
    file = config_file(config_path)
    return f'{file}:{run.variant}' if run.variant else file


def override_flags(run: Run) -> list[str]:
    """['--config.model.name=plain34', ...] for the run's overrides, in the order given."""
    return [f'--config.{key}={format_value(value)}' for key, value in run.overrides.items()]


def main_args(config_path: str, run: Run, workdir: str, extra: Sequence[str] = ()) -> list[str]:
    """The arguments of `python -m convnets.main` for one run: --config, its overrides, --workdir, then `extra`
    (the sweep's own overrides for every run, e.g. tiny shapes, and flags such as --distributed)."""
    return [f'--config={config_arg(config_path, run)}', *override_flags(run), *extra, f'--workdir={workdir}']


def run_config(config_path: str, run: Run, extra: Sequence[str] = ()) -> ConfigDict:
    """The config `python -m convnets.main` would run for `run` (plus `extra` --config.FIELD=VALUE flags), parsed by
    ml_collections' own flag parser; raises what that parser raises for a bad field or value."""
    argv = ['sweep', f'--config={config_arg(config_path, run)}', *override_flags(run),
            *(a for a in extra if a.startswith('--config.'))]
    values = flags.FlagValues()
    # sys_argv: config_flags declares one flag per --config.FIELD it finds there before parsing.
    config_flags.DEFINE_config_file('config', None, 'experiment config', flag_values=values, lock_config=True,
                                    sys_argv=argv)
    values(argv)
    return values.config


def _slug_part(text: str) -> str:
    return re.sub(r'[^A-Za-z0-9._+-]+', '_', text).strip('_') or '_'


def run_name(run: Run) -> str:
    """The run's workdir name under the sweep's root, made from its variant and overrides:
    'shortcut=A,name=resnet34'. A field is named by its last component unless two overrides share it; names longer
    than 96 characters keep their start and gain a hash of the whole."""
    if run.name:
        return _slug_part(run.name)
    parts = [f'variant={_slug_part(run.variant)}'] if run.variant else []
    leaves = [key.rsplit('.', 1)[-1] for key in run.overrides]
    for key, value in run.overrides.items():
        field = key.rsplit('.', 1)[-1] if leaves.count(key.rsplit('.', 1)[-1]) == 1 else key
        parts.append(f'{_slug_part(field)}={_slug_part(format_value(value))}')
    name = ','.join(parts) or 'base'
    if len(name) > _SLUG_MAX:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f'{name[:_SLUG_MAX - 9]}-{digest}'
    return name


def run_workdir(root: str, run: Run) -> str:
    """<root>/<run_name(run)>; `root` may be a gs:// path."""
    return f'{root.rstrip("/")}/{run_name(run)}'


# ---- The manifest: what launch/sweep.py ran, for launch/report.py ----------------------------------------------

def manifest(config_path: str, sweep_name: str, sweep: Sweep, root: str, extra: Sequence[str] = ()) -> dict:
    """The JSON-able record of a launched sweep: the file, the sweep (title, columns, rows with their paper numbers,
    figure, notes), the extra flags every run got, and each row's workdir and command-line arguments."""
    record = {'config': config_file(config_path), 'sweep': sweep_name, 'root': root, 'extra': list(extra),
              **dataclasses.asdict(sweep)}
    for row, run in zip(record['runs'], sweep.runs, strict=True):
        row['overrides'] = {k: format_value(v) for k, v in run.overrides.items()}
        row['workdir'] = run_workdir(root, run)
        row['args'] = main_args(config_path, run, row['workdir'], extra)
    return record


def write_manifest(root: str, record: dict) -> str:
    """Writes <root>/sweep.json (local or gs:// root); returns its path."""
    from etils import epath

    path = epath.Path(root) / MANIFEST
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=2) + '\n')
    return str(path)


def read_manifest(root: str) -> tuple[dict, Sweep]:
    """<root>/sweep.json as written by launch/sweep.py: (the record, the Sweep rebuilt from it). Each run's workdir
    is record['runs'][i]['workdir']."""
    from etils import epath

    path = epath.Path(root) / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f'{path} not found: {root} is not the root of a sweep launched by '
                                '`python -m launch.sweep --config=... --sweep=NAME --workdir=ROOT`')
    record = json.loads(path.read_text())
    figure = record.get('figure')
    sweep = Sweep(
        title=record['title'], source=record['source'],
        columns=tuple(Column(**c) for c in record['columns']),
        runs=tuple(Run(label=r['label'], overrides=r['overrides'], variant=r['variant'], paper=r['paper'],
                       name=r['name']) for r in record['runs']),
        baseline=record['baseline'], notes=record['notes'],
        figure=None if figure is None else Figure(
            title=figure['title'], panels=tuple((t, tuple(rows)) for t, rows in figure['panels']),
            tags=tuple((tag, style) for tag, style in figure['tags']), y_label=figure['y_label'],
            error=figure['error'], scale=figure['scale']))
    return record, sweep
