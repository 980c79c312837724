"""Starting a run from another run's weights (`config.init_from`): fine-tuning, and the detection recipes that
start from ImageNet weights.

`config.init_from` names a workdir (a training run, or one written by `python -m convnets.weights.import`); its
newest intact checkpoint gives each network of the same name its parameters and BatchNorm statistics. Everything
else (optimiser state, step, PRNG key) starts fresh, and a Polyak average starts at the loaded parameters.
`config.init_from_skip` lists regular expressions (searched in '<collection>/<module>/.../<name>' paths such as
'params/fc_layer/kernel'): matching variables keep their fresh initialisation, which is how a new classifier with
another number of classes is fitted. Every other variable must be loaded with its exact shape, or the run stops
with a list of what does not fit.

Also here: the provenance of imported weights (`pretrained_record`, kept through init_from chains), the warning
when a pipeline lacks the normalisation those weights expect (`check_preprocessing`), and `save_initial_state`,
which writes step 0 of a workdir from given variables (`python -m convnets.weights.import`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath
from jax.sharding import Mesh
from ml_collections import ConfigDict

from convnets import parallel, tasks
from convnets.data import pipeline
from convnets.train import checkpoint
from convnets.train.state import TrainState
from convnets.train.workdir_lock import WorkdirLock
from convnets.weights.mapping import SHOWN, flatten, unflatten


class InitFromError(ValueError):
    """The weights named by config.init_from do not fit this run."""


def load(workdir: str) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each network's variables from the newest intact checkpoint of `workdir`, and that checkpoint's meta."""
    directory = epath.Path(workdir) / 'checkpoints'
    if not directory.exists() or not any(p.name.isdigit() for p in directory.iterdir()):
        raise FileNotFoundError(
            f'init_from={workdir}: no checkpoint there. Point it at a finished run\'s --workdir, or create one from '
            f'released weights with `python -m convnets.weights.import --from=torchvision --model=resnet50 '
            f'--file=FILE --workdir={workdir}`.')
    ckpt = checkpoint.Checkpointer(workdir, keep=0, architecture={}, read_only=True)
    try:
        return ckpt.restore_net_variables()
    finally:
        ckpt.close()


def _fit(name: str, fresh: Mapping[str, Any], loaded: Mapping[str, Any], skip: Sequence[re.Pattern]
         ) -> tuple[dict[str, Any], list[str], list[str]]:
    """The variables of network `name`: loaded where they fit, fresh where skipped; plus problems and kept."""
    fresh_flat, loaded_flat = flatten(fresh), flatten(loaded)
    out, problems, kept = {}, [], []
    for path, value in fresh_flat.items():
        if any(p.search(path) for p in skip):
            out[path] = value
            kept.append(path)
        elif path not in loaded_flat:
            problems.append(f'{name}: {path} {tuple(value.shape)} is not in the checkpoint')
        elif tuple(np.shape(loaded_flat[path])) != tuple(value.shape):
            problems.append(f'{name}: {path} is {tuple(np.shape(loaded_flat[path]))} in the checkpoint, '
                            f'{tuple(value.shape)} here')
        else:
            out[path] = np.asarray(loaded_flat[path], dtype=value.dtype)
    unused = [f'{name}: {p}' for p in loaded_flat if p not in fresh_flat and not any(s.search(p) for s in skip)]
    if unused:
        problems.append(f'checkpoint variables this network lacks ({len(unused)}): ' + ', '.join(unused[:SHOWN]))
    return unflatten(out), problems, kept


def transfer(state: TrainState, loaded: Mapping[str, Mapping[str, Any]], skip: Sequence[str] = (),
             *, what: str = 'init_from', sharding: jax.sharding.Sharding | None = None) -> TrainState:
    """`state` with each network's parameters and BatchNorm statistics taken from `loaded` (by network name),
    except the variables `skip` matches. InitFromError lists every variable that does not fit."""
    patterns = [re.compile(p) for p in skip]
    missing = [n for n in state.nets if n not in loaded]
    if missing:
        raise InitFromError(f'{what}: the checkpoint has networks {", ".join(loaded) or "none"}; this run needs '
                            f'{", ".join(missing)} too.')
    nets, problems, kept_all = {}, [], []
    for name, net in state.nets.items():
        fresh = {'params': net.params, 'batch_stats': net.batch_stats}
        fitted, issues, kept = _fit(name, fresh, loaded[name], patterns)
        problems += issues
        kept_all += [f'{name}: {p}' for p in kept]
        params, stats = fitted.get('params', {}), fitted.get('batch_stats', {})
        if sharding is not None:
            params, stats = jax.device_put((params, stats), sharding)
        ema = params if net.ema_params else net.ema_params
        nets[name] = net.replace(params=params, batch_stats=stats, ema_params=ema)
    if problems:
        raise InitFromError(f'{what}: the weights do not fit this run ({len(problems)} problems):\n  '
                            + '\n  '.join(problems[:SHOWN]) + '\nList variables to initialise afresh (e.g. a new '
                            'classifier) in --config.init_from_skip, e.g. "(\'params/fc_layer/\',)".')
    if kept_all:
        logging.info('%s: kept the fresh initialisation of %d variables: %s', what, len(kept_all),
                     ', '.join(kept_all[:SHOWN]))
    return state.replace(nets=nets)


def start(config: ConfigDict, state: TrainState, mesh: Mesh) -> tuple[TrainState, dict[str, Any]]:
    """The fresh `state` with the networks of `config.init_from`'s newest checkpoint; the provenance record."""
    loaded, meta = load(config.init_from)
    state = transfer(state, loaded, config.init_from_skip, what=f'init_from={config.init_from}',
                               sharding=parallel.replicated(mesh))
    record = {'workdir': str(config.init_from), 'step': int(meta['step'])}
    if meta.get('pretrained'):
        record['pretrained'] = meta['pretrained']
    elif meta.get('init_from'):
        record['init_from'] = meta['init_from']
    logging.info('Initialised from step %d of %s%s', record['step'], config.init_from,
                 f' ({meta["pretrained"]["framework"]} {meta["pretrained"]["name"]} weights)'
                 if meta.get('pretrained') else '')
    check_preprocessing(config, record, train=True)
    return state, record


def pretrained_record(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The record of imported weights a checkpoint descends from (directly or through init_from), if any."""
    while meta:
        if meta.get('pretrained'):
            return meta['pretrained']
        meta = meta.get('init_from') or {}
    return None


def check_preprocessing(config: ConfigDict, meta: dict[str, Any], *, train: bool) -> None:
    """Warns when imported weights meet a pipeline without the input normalisation they were trained with."""
    record = pretrained_record(meta)
    if not record:
        return
    ops = record['preprocessing']['value_ops']
    specs = {'data.eval_preprocess': config.data.eval_preprocess}
    if train:  # The value ops may run on the devices, after the host's.
        device = pipeline.device_spec(config.data)
        name = 'data.train_preprocess' + ('|data.device_preprocess' if device else '')
        specs[name] = '|'.join(filter(None, (config.data.train_preprocess, device)))
    for name, spec in specs.items():
        if ops not in spec:
            logging.warning(
                'These weights come from %s %s, trained on inputs made by %r (%s); %s=%r does not apply it, so '
                'accuracy will suffer. experiments/pretrained.py:%s_%s sets it.', record['framework'],
                record['name'], ops, record['preprocessing']['description'], name, spec, record['framework'],
                record['name'])


def save_initial_state(config: ConfigDict, workdir: str, variables: dict[str, dict[str, Any]],
                       batch_spec: dict[str, jax.ShapeDtypeStruct], extra: dict[str, Any]) -> dict[str, Any]:
    """Writes step 0 of `workdir`: the fresh state of `config` with each network's `variables` ({'params',
    'batch_stats'}) in place, and `extra` in the meta item (the import's provenance). `batch_spec`: one example's
    shapes (what the networks are initialised for), so that no dataset is needed. Refuses a workdir that already
    holds checkpoints. Returns the meta item."""
    task = tasks.get(config.task)
    task.validate(config)
    mesh = parallel.make_mesh(None)
    nets = task.build_nets(config)
    # The state's structure does not depend on the schedule's length: any step counts do.
    optimizers = task.make_optimizers(config, steps_per_epoch=1, total_steps=1)
    with WorkdirLock(workdir):
        ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints,
                                       architecture={'task': config.task, **task.architecture(config)},
                                       run=task.run_config(config))
        try:
            if ckpt.latest_step() is not None:
                raise FileExistsError(f'{workdir} already holds checkpoints: import into a new --workdir.')
            state = jax.jit(lambda: task.init_state(config, nets, optimizers, batch_spec),
                            out_shardings=parallel.replicated(mesh))()
            state = transfer(state, variables, what='the imported weights',
                                       sharding=parallel.replicated(mesh))
            ckpt.save(0, state, force=True, extra=extra)
            ckpt.wait()
            return ckpt.meta(0)
        finally:
            ckpt.close()
