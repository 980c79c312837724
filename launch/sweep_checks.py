"""What `python -m launch.sweep` checks before it spends accelerator time, for every run it would launch.

- the config parses (as `python -m convnets.main` parses it) and its task accepts it (`Task.validate`);
- the global batch (`batch_size`, `eval_batch_size`) divides the target's device count;
- the task's networks build: `jax.eval_shape` of `Task.init_state` (parameters and optimiser state, nothing
  allocated), at the input shapes the training pipeline would produce. Those shapes are found by tracing the
  config's preprocessing on a symbolic record built from the dataset's TFDS feature declarations
  (`builder.info.features`), which TFDS knows from the builder's code: no record is read and the data need not be
  present here (the same shapes `convnets.data.pipeline.element_spec` traces from the prepared records);
- the data are present: the TFDS dataset is prepared in `data.data_dir`. If it is not, the reason and the fix are
  `convnets.data.builders.get_builder`'s own (manual tar files missing, how to prepare offline, ...). On the local
  back end an embedded dataset that is generated from code (`convnets_digits`, ...) is prepared here, once, so that
  parallel runs do not each generate it; every other dataset must be prepared before a sweep, since its runs would
  otherwise each download and prepare it at the same time.

Every problem of every run is collected (`Problems`), so that one look shows all of them.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib
from collections.abc import Callable, Sequence

from ml_collections import ConfigDict

from convnets import cli_errors, sweeps

# Embedded datasets generated from code (no download, no manual files): cheap to prepare anywhere.
GENERATED_DATASETS = ('convnets_digits', 'convnets_digit_scenes', 'convnets_moving_digits')


@dataclasses.dataclass
class Problems:
    """(run label, what is wrong) pairs, in the order found."""
    items: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    labels: list[str] = dataclasses.field(default_factory=list)  # Every run checked.

    def add(self, label: str, message: str) -> None:
        self.items.append((label, message.strip()))

    def __bool__(self) -> bool:
        return bool(self.items)

    def report(self) -> str:
        """One entry per distinct problem, naming every run it concerns (a missing dataset is said once)."""
        runs = len({label for label, _ in self.items})
        grouped: dict[str, list[str]] = {}
        for label, message in self.items:
            grouped.setdefault(message, []).append(label)
        lines = [f'{len(grouped)} problem(s) in {runs} run(s) of the sweep; nothing was launched '
                 '(--skip_validation launches anyway):']
        for message, labels in grouped.items():
            first, *rest = message.splitlines()
            named = f'all {len(labels)} runs' if len(labels) > 2 and labels == self.labels else ', '.join(labels)
            lines.append(f'  [{named}] {first}')
            lines.extend(f'      {line}' for line in rest)
        return '\n'.join(lines)


def parse_run(config_path: str, run: sweeps.Run, extra: Sequence[str]) -> ConfigDict:
    """The run's config, or a ValueError whose message is convnets.main's own report of the bad field or value."""
    try:
        return sweeps.run_config(config_path, run, extra)
    except Exception as e:  # Whatever ml_collections / absl raise for a bad override or a broken config file.
        argv = ['sweep', f'--config={sweeps.config_arg(config_path, run)}', *sweeps.override_flags(run),
                *(a for a in extra if a.startswith('--config.'))]
        message = cli_errors._parse_error_message(e, argv, sweeps.config_arg(config_path, run))
        raise ValueError(f'config: {message or f"{type(e).__name__}: {e}"}') from e


def batch_problems(config: ConfigDict, devices: int) -> list[str]:
    """What is wrong with the global batch sizes on `devices` devices (every one must divide evenly)."""
    out = []
    for what in ('batch_size', 'eval_batch_size'):
        size = int(config[what])
        if what == 'eval_batch_size' and size == 0:
            continue  # 0: the same as batch_size
        if size <= 0 or size % devices:
            lower = max(devices, size // devices * devices)
            out.append(f'{what}={size} is the GLOBAL batch and must be a multiple of the {devices} devices of the '
                       f'target: e.g. --config.{what}={lower} or {lower + devices}.')
    return out


def _register_datasets() -> None:
    """Registers the project's own TFDS builders, as convnets.data.builders.get_builder does by importing them."""
    for module in ('digit_scenes', 'digits', 'moving_digits', 'ucf101', 'video_folder', 'voc0712'):
        importlib.import_module(f'convnets.data.{module}')


def traced_batch_spec(data: ConfigDict) -> dict:
    """Per-example jax.ShapeDtypeStruct of each batch key after the training preprocessing, traced from the TFDS
    feature declarations (no record read; the dataset need not be prepared)."""
    import jax
    import numpy as np
    import tensorflow as tf
    import tensorflow_datasets as tfds

    from convnets.data import builders, records

    builders.tf_cpu_only()
    _register_datasets()
    builder = tfds.builder(data.name, data_dir=data.data_dir or None)
    signature = builder.info.features.get_tensor_spec()
    for name, feature in records.encoded_features(builder).items():  # Read encoded, as records.read reads them.
        signature[name] = tf.TensorSpec([None] if isinstance(feature, tfds.features.Video) else [], tf.string)
    raw = tf.data.Dataset.from_generator(lambda: iter(()), output_signature=signature)
    seeded = raw.map(lambda x: (x, tf.zeros([2], tf.int64)))
    traced = seeded.map(records.example_fn(builder, data.train_preprocess, tuple(data.batch_keys))).element_spec
    out = {}
    for key, spec in traced.items():
        if not spec.shape.is_fully_defined():
            raise ValueError(f'preprocessing {data.train_preprocess!r} yields {key!r} of shape {spec.shape}, not '
                             'a fixed shape: add ops that fix it (resize, a crop, pad_boxes(N), temporal_crop(N)).')
        out[key] = jax.ShapeDtypeStruct(tuple(spec.shape), np.dtype(spec.dtype.as_numpy_dtype))
    return out


def build_problem(config: ConfigDict) -> str | None:
    """Whether the task's networks and optimiser state build (abstractly) for the config's input shapes."""
    import jax

    from convnets import tasks

    try:
        task = tasks.get(config.task)
        task.validate(config)
        nets = task.build_nets(config)
        # The state's structure does not depend on the schedule's length: any step counts do.
        optimizers = task.make_optimizers(config, steps_per_epoch=1, total_steps=1)
        try:
            spec = traced_batch_spec(config.data)
        except Exception as e:  # The input shapes: a preprocessing op's own check (e.g. a missing cache).
            return f'input: {type(e).__name__}: {e}'.splitlines()[0][:600]
        jax.eval_shape(lambda: task.init_state(config, nets, optimizers, spec))
        for name, ev in config.evals.items():  # Networks an evaluation changes (VGG's dense evaluation).
            overrides = ev.get('model_overrides')
            if overrides is not None and overrides.to_dict() and 'image' in spec and config.task == 'classification':
                model = nets[ev.net].clone(**overrides.to_dict())
                x = jax.ShapeDtypeStruct((1, *spec['image'].shape), spec['image'].dtype)
                try:
                    jax.eval_shape(lambda x, m=model: m.init(jax.random.key(0), x, train=False), x)
                except Exception as e:
                    raise ValueError(f'evals.{name}.model_overrides: {type(e).__name__}: {e}') from e
    except Exception as e:  # Any failure to build is what this check reports.
        return f'model: {type(e).__name__}: {e}'.splitlines()[0][:600]
    return None


def _build_problem_staged(config: ConfigDict) -> str | None:
    """build_problem of the config, or of each stage of a staged config (Faster R-CNN's 4-step training)."""
    from convnets.train import stages

    if not stages.is_staged(config):
        return build_problem(config)
    try:  # 'stage:' references resolve against a workdir; any path will do for building.
        per_stage = stages.configs(config, '/sweep-check')
    except Exception as e:  # A stage the task refuses.
        return f'model: {type(e).__name__}: {e}'.splitlines()[0][:600]
    for name, c in per_stage.items():
        if problem := build_problem(c):
            return f'stage {name!r}: {problem}'
    return None


def data_problem(config: ConfigDict, *, generate_here: bool) -> str | None:
    """Whether the run's dataset is prepared in data.data_dir (see the module docstring)."""
    import tensorflow_datasets as tfds

    from convnets.data import builders

    _register_datasets()
    data = config.data
    try:
        builder = tfds.builder(data.name, data_dir=data.data_dir or None)
        if builder.is_prepared():
            return None
        base = data.name.split(':')[0].split('/')[0]
        if base in GENERATED_DATASETS and generate_here and data.download:
            builders.get_builder(data)  # Generated once here, before the runs start.
            return None
        checked = copy.deepcopy(data)
        with checked.unlocked():
            checked.download = False
        builders.get_builder(checked)  # Raises the project's own message: what is missing and how to get it.
    except Exception as e:  # Unknown name, missing manual files, unreadable data_dir, ...
        # get_builder was asked not to download: its message's reason is ours, not the config's.
        message = str(e).splitlines()[0].replace(' and data.download is False', '')
        return (f'data: {message} Prepare the dataset once before the sweep: its runs would otherwise each '
                'download and prepare it at the same time.')
    return None


def check_runs(config_path: str, runs: Sequence[sweeps.Run], extra: Sequence[str], *,
               devices_of: Callable[[str, ConfigDict], int | None], generate_data: bool,
               check_data: Callable[[ConfigDict], bool] = lambda config: True
               ) -> tuple[Problems, dict[str, ConfigDict]]:
    """Every check of the module docstring for every run; `devices_of(label, config)` is the target's device count
    for that run (None: not checked); `check_data(config)`: whether its data can be checked from here (a TPU VM's
    local data_dir cannot). Returns the problems and the parsed config of each run, by label."""
    import jax

    # Shapes only: on CPU, so that the launcher never takes accelerator memory from the runs it starts.
    jax.config.update('jax_platforms', 'cpu')
    problems, configs = Problems(labels=[run.label for run in runs]), {}
    checked_data: dict[str, str | None] = {}
    checked_builds: dict[str, str | None] = {}
    for run in runs:
        try:
            config = parse_run(config_path, run, extra)
        except ValueError as e:
            problems.add(run.label, str(e))
            continue
        configs[run.label] = config
        devices = devices_of(run.label, config)
        if devices:
            for message in batch_problems(config, devices):
                problems.add(run.label, f'batch: {message}')
        key = config.to_json()  # Runs that differ only in, e.g., the learning rate build the same networks.
        if key not in checked_builds:
            checked_builds[key] = _build_problem_staged(config)
        if checked_builds[key]:
            problems.add(run.label, checked_builds[key])
        data_key = repr((config.data.name, config.data.data_dir, config.data.manual_dir, config.data.download))
        if not check_data(config):
            continue
        if data_key not in checked_data:
            checked_data[data_key] = data_problem(config, generate_here=generate_data)
        if checked_data[data_key]:
            problems.add(run.label, checked_data[data_key])
    return problems, configs
