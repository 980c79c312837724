"""The one training loop: data -> global arrays -> parallel step -> state -> checkpoints / eval -> results.json.

`train_and_evaluate(config, workdir)` is what `python -m convnets.main` calls; tests call it directly (with a subset
of devices) to prove that device count, process count, restarts and the pmap path do not change the result.
"""

import dataclasses
import itertools
import json
import math
import time
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from etils import epath
from ml_collections import ConfigDict

from convnets import models, parallel
from convnets.data import pipeline
from convnets.evaluate import multiview
from convnets.train import checkpoint, classification, optim, progress
from convnets.train.state import TrainState


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN/Inf; the last good checkpoint is kept."""


def build_model(config: ConfigDict) -> nn.Module:
    """The configured model; models with BatchNorm get their statistics synchronised over the data axis."""
    kwargs = {k: v for k, v in config.model.to_dict().items() if k != 'name'}
    model = models.get_model(config.model.name, **kwargs)
    if 'bn_axis_name' in {f.name for f in dataclasses.fields(model)}:
        model = model.clone(bn_axis_name=parallel.AXIS)
    return model


def total_train_steps(config: ConfigDict, steps_per_epoch: int) -> int:
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(pending)
    return {k: float(np.mean([m[k] for m in fetched])) for k in fetched[0]}


def _check_finite(pending: list[dict[str, jax.Array]], first_step: int, last_good: int | None) -> None:
    """Raises NonFiniteLossError naming the first bad step; called before every log line and every save."""
    for i, m in enumerate(jax.device_get(pending)):
        if not all(np.isfinite(m[k]) for k in ('loss', 'grad_norm', 'param_norm')):
            kept = f'the last good checkpoint (step {last_good}) is kept' if last_good else 'no checkpoint was saved'
            raise NonFiniteLossError(
                f'Non-finite loss, gradient or parameters at step {first_step + i} (loss={m["loss"]}, '
                f'grad_norm={m["grad_norm"]}, param_norm={m["param_norm"]}); training stopped and {kept}. '
                f'Try a lower --config.optimizer.learning_rate, '
                f'a warm-up (--config.optimizer.warmup_steps), or check the input normalisation.')


def evaluate(par: parallel.Parallel, eval_step, state: TrainState, config: ConfigDict) -> dict[str, float]:
    """Top-1/top-5 accuracy and mean loss over the whole eval split (every example exactly once)."""
    batch_size = config.eval_batch_size or config.batch_size
    totals = None
    for local in pipeline.eval_batches(config.data, global_batch_size=batch_size,
                                       process_index=jax.process_index(), process_count=jax.process_count()):
        sums = eval_step(state, par.shard_batch(local))
        totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
    totals = jax.device_get(totals)
    n = float(totals['count'])
    return {'top1': float(totals['top1']) / n, 'top5': float(totals['top5']) / n, 'loss': float(totals['loss']) / n,
            'num_examples': int(n)}


def has_protocol(config: ConfigDict) -> bool:
    """Whether the final evaluation differs from the periodic one (views and/or model overrides are set)."""
    return bool(config.evaluation.views) or bool(config.evaluation.model_overrides.to_dict())


def final_evaluation(config: ConfigDict, s: '_Setup', state: TrainState) -> dict[str, float]:
    """The paper's test protocol (config.evaluation): multiple views and eval-only model fields (e.g. dense)."""
    model = s.model.clone(**config.evaluation.model_overrides.to_dict())
    metrics = multiview.evaluate_views(config, s.mesh, model, state)
    logging.info('final evaluation (%d views%s): top1 %.4f  top5 %.4f  loss %.4f',
                 max(1, len(config.evaluation.views)), f', model {config.evaluation.model_overrides.to_dict()}'
                 if config.evaluation.model_overrides.to_dict() else '', metrics['top1'], metrics['top5'],
                 metrics['loss'])
    return metrics


def _finite_or_none(x: float) -> float | None:
    return x if np.isfinite(x) else None


def _write_json(workdir: str, name: str, results: dict[str, Any]) -> None:
    """Atomically (write then rename) so that sweeps never read a half-written file."""
    path = epath.Path(workdir) / name
    tmp = path.parent / (name + '.tmp')
    tmp.write_text(json.dumps(results, indent=2, sort_keys=True))
    tmp.replace(path)


@dataclasses.dataclass
class _Setup:
    """What both training and eval-only runs build from the config."""

    mesh: Any
    par: parallel.Parallel
    model: nn.Module
    schedule: Any
    tx: Any
    steps_per_epoch: int
    total_steps: int
    ckpt: checkpoint.Checkpointer
    start_step: int
    n_params: int = 0
    state: TrainState | None = None


def _setup(config: ConfigDict, workdir: str, devices: Sequence[jax.Device] | None) -> _Setup:
    mesh = parallel.make_mesh(devices)
    par = parallel.Parallel(mesh, config.parallel)
    parallel.check_batch_size(config.batch_size, mesh)
    if config.eval_batch_size:
        parallel.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
    model = build_model(config)
    steps_per_epoch = pipeline.steps_per_epoch(config.data, config.batch_size)
    total_steps = total_train_steps(config, steps_per_epoch)
    schedule = optim.make_schedule(config.optimizer, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    tx = optim.make_optimizer(config.optimizer, schedule)
    epath.Path(workdir).mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints, model_config=config.model.to_dict())
    ckpt.check_compatible()
    return _Setup(mesh, par, model, schedule, tx, steps_per_epoch, total_steps, ckpt, ckpt.latest_step() or 0)


def _init_or_restore(config: ConfigDict, s: _Setup, image_shape: tuple[int, ...]) -> None:
    """Fresh replicated state from the seed, or the latest checkpoint restored onto the mesh."""
    replicated = parallel.replicated(s.mesh)
    init = jax.jit(lambda: classification.init_state(s.model, s.tx, config.seed, image_shape,
                                                     ema=config.ema_decay > 0),
                   out_shardings=replicated)
    s.state = s.ckpt.restore(jax.eval_shape(init)) if s.start_step else init()
    s.n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(s.state.params))
    logging.info('Model %s: %s parameters; %d steps (%d per epoch), global batch %d on %d devices (%s)',
                 config.model.name, f'{s.n_params:,}', s.total_steps, s.steps_per_epoch, config.batch_size,
                 s.mesh.devices.size, config.parallel)


def _restore_latest(config: ConfigDict, workdir: str, devices: Sequence[jax.Device] | None) -> _Setup:
    """Set-up with the state of the latest checkpoint in `workdir`; an error if there is none."""
    s = _setup(config, workdir, devices)
    if not s.start_step:
        s.ckpt.close()
        raise FileNotFoundError(f'No checkpoint in {s.ckpt.directory}: train first (--mode=train) with this '
                                f'--workdir, or point --workdir at a finished run.')
    # The model is built for the training input shape, as when it was trained.
    _init_or_restore(config, s, pipeline.element_spec_shape(config.data, train=True))
    s.ckpt.close()
    return s


def restore_for_inference(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
                          ) -> tuple[nn.Module, TrainState]:
    """The model and the latest checkpoint's state in `workdir` (for evaluation, visualisation, export).

    Use `state.eval_variables` with `model.apply(..., train=False)`.
    """
    s = _restore_latest(config, workdir, devices)
    return s.model, s.state


def evaluate_checkpoint(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
                        ) -> dict[str, Any]:
    """`--mode=eval`: evaluates the latest checkpoint; writes `eval_results.json` (results.json is untouched)."""
    s = _restore_latest(config, workdir, devices)
    if has_protocol(config):
        metrics = final_evaluation(config, s, s.state)
    else:
        eval_step = s.par.compile(classification.make_eval_step(s.model, axis_name=parallel.AXIS), donate=False)
        metrics = evaluate(s.par, eval_step, s.state, config)
    results = {'step': s.start_step, 'eval': metrics, 'config': config.to_dict()}
    if jax.process_index() == 0:
        _write_json(workdir, 'eval_results.json', results)
    logging.info('eval of step %d: %s', s.start_step, metrics)
    return results


def train_and_evaluate(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
                       ) -> dict[str, Any] | None:
    """Trains (resuming from the latest checkpoint in `workdir`), evaluates and writes `results.json`.

    Returns the results dict, or None when the run stopped early on a preemption request (after saving).
    """
    s = _setup(config, workdir, devices)
    par, ckpt, total_steps, start_step, model = s.par, s.ckpt, s.total_steps, s.start_step, s.model
    mesh = s.mesh
    is_main = jax.process_index() == 0
    batches = pipeline.train_batches(config.data, global_batch_size=config.batch_size, seed=config.seed,
                                     start_step=start_step, process_index=jax.process_index(),
                                     process_count=jax.process_count())
    first = next(batches)
    batches = itertools.chain([first], batches)
    _init_or_restore(config, s, tuple(first['image'].shape[1:]))
    state, n_params = s.state, s.n_params
    tx, schedule = s.tx, s.schedule

    train_step = par.compile(classification.make_train_step(
        model, tx, schedule, axis_name=parallel.AXIS, loss_is_global=par.loss_is_global,
        aux_loss_weight=config.aux_loss_weight, ema_decay=config.ema_decay))
    eval_step = par.compile(classification.make_eval_step(model, axis_name=parallel.AXIS), donate=False)
    plateau = optim.plateau(config.optimizer)
    report_plateau = jax.jit(lambda st, err: st.replace(opt_state=plateau.report(st.opt_state, err)),
                             donate_argnums=0, out_shardings=parallel.replicated(mesh)) if plateau else None
    writer = progress.MetricWriter(workdir, enabled=is_main)
    throughput = progress.Throughput(config.batch_size, total_steps)
    preemption = checkpoint.PreemptionWatcher()
    last_good = start_step or None
    pending: list[dict[str, jax.Array]] = []
    step = start_step
    eval_metrics: dict[str, float] | None = None
    train_metrics: dict[str, float] | None = None
    # Several CPU processes (the simulated multi-host path) can deadlock in gloo collectives when steps are
    # dispatched ahead of each other; waiting for each step there costs little. Accelerators keep async dispatch.
    sync_each_step = jax.process_count() > 1 and jax.devices()[0].platform == 'cpu'
    t_start = time.time()
    try:
        while step < total_steps:
            state, metrics = train_step(state, par.shard_batch(next(batches)))
            if sync_each_step:
                jax.block_until_ready(metrics)
            pending.append(metrics)
            step += 1
            if step == start_step + 1:
                jax.block_until_ready(metrics)
                throughput.start(step)
            stopping = preemption.requested(step)
            if step % config.log_every_steps == 0 or step == total_steps:
                _check_finite(pending, step - len(pending) + 1, last_good)
                mean = train_metrics = _mean_metrics(pending)
                pending = []
                ips = throughput.images_per_second(step, since_last=True)
                progress.log_train(step, total_steps, mean, ips, throughput.eta_seconds(step, ips))
                writer.scalars(step, {f'train/{k}': v for k, v in mean.items()} | {'train/images_per_s': ips})
            if step % config.eval_every_steps == 0 or step == total_steps:
                with throughput.excluded():
                    eval_metrics = evaluate(par, eval_step, state, config)
                logging.info('eval at step %d: top1 %.4f  top5 %.4f  loss %.4f', step, eval_metrics['top1'],
                             eval_metrics['top5'], eval_metrics['loss'])
                if plateau is not None:  # "Divide the rate by 10 when the validation error stops improving."
                    state = report_plateau(state, 1.0 - eval_metrics['top1'])
                writer.scalars(step, {f'eval/{k}': v for k, v in eval_metrics.items()})
            if step % config.checkpoint_every_steps == 0 or step == total_steps or stopping:
                with throughput.excluded():
                    _check_finite(pending, step - len(pending) + 1, last_good)
                    if ckpt.save(step, state, force=True):
                        last_good = step
            if stopping:
                logging.warning('Preempted: checkpoint saved at step %d; rerun the same command to resume.', step)
                return None
        if eval_metrics is None:  # Resumed from a checkpoint at (or past) the last step.
            eval_metrics = evaluate(par, eval_step, state, config)
        periodic_metrics = eval_metrics
        if has_protocol(config):
            eval_metrics = final_evaluation(config, s, state)
    finally:
        ckpt.wait()
        ckpt.close()
        writer.close()
        preemption.close()

    results = {
        'step': step,
        'eval': eval_metrics,  # The final protocol (config.evaluation) if set, else the last periodic eval.
        'eval_periodic': periodic_metrics,
        'train': train_metrics,  # Means over the last logging interval.
        'train_images_per_s': _finite_or_none(throughput.images_per_second(step)),
        'num_params': n_params,
        'num_devices': int(mesh.devices.size),
        'num_processes': jax.process_count(),
        'wall_seconds_this_run': time.time() - t_start,
        'config': config.to_dict(),
    }
    if is_main:
        _write_json(workdir, 'results.json', results)
    logging.info('Done: step %d, eval top1 %.4f, %.1f train img/s', step, eval_metrics['top1'],
                 results['train_images_per_s'])
    return results
