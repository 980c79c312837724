"""The one training loop: data -> global arrays -> parallel step -> state -> evaluations / checkpoints -> results.json.

`train_and_evaluate(config, workdir)` is what `python -m convnets.main` calls; tests call it directly (with a subset
of devices) to prove that device count, process count, restarts and the pmap path do not change the result.

The loop knows no task: `config.task` (convnets.tasks) supplies the networks, optimisers, initial state, train step
and evaluators; the loop handles any metric names they return. What it owns is the same for every task: parallel
execution, resume, preemption, the NaN guard, progress and ETA, TensorBoard, the plateau schedule, results.json.
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
from jax.sharding import Mesh
from ml_collections import ConfigDict

from convnets import parallel, tasks
from convnets.data import device_ops, pipeline
from convnets.train import checkpoint, init_from, intervals, optim, progress
from convnets.train.evaluations import Evaluations, improved
from convnets.train.state import TrainState, num_params
from convnets.train.workdir_lock import WorkdirLock


class NonFiniteLossError(FloatingPointError):
    """Training produced NaN/Inf in a metric, or a watched loss diverged; the last good checkpoint is kept."""


def total_train_steps(config: ConfigDict, steps_per_epoch: int) -> int:
    if config.num_train_steps > 0:
        return int(config.num_train_steps)
    return max(1, math.ceil(config.num_epochs * steps_per_epoch))


def _mean_metrics(pending: list[dict[str, jax.Array]]) -> dict[str, float]:
    fetched = jax.device_get(pending)  # (Sorts dict keys: keep the task's order for the log line.)
    return {k: float(np.mean([m[k] for m in fetched])) for k in pending[0]}


def _check_metrics(pending: list[dict[str, jax.Array]], first_step: int, last_good: int | None,
                   limits: dict[str, float]) -> None:
    """Raises NonFiniteLossError naming the first bad step and metrics: a non-finite value, or a watched loss above
    its divergence limit. Called before every log line and every save, so a bad state is never saved."""
    for i, m in enumerate(jax.device_get(pending)):
        bad = {k: float(v) for k, v in m.items() if not np.all(np.isfinite(v))}
        diverged = {k: float(m[k]) for k, limit in limits.items() if k in m and float(m[k]) > limit}
        if bad or diverged:
            kept = f'the last good checkpoint (step {last_good}) is kept' if last_good else 'no checkpoint was saved'
            what = (f'Non-finite training metrics ({", ".join(f"{k}={v}" for k, v in bad.items())})' if bad else
                    f'Training diverged ({", ".join(f"{k}={v:.4g} > {limits[k]:.4g}" for k, v in diverged.items())}'
                    f', i.e. --config.divergence_factor times its first logged value)')
            raise NonFiniteLossError(
                f'{what} at step {first_step + i} (all: {progress.format_metrics(m)}); training stopped and {kept}. '
                f'Try a lower --config.optimizer.learning_rate, a warm-up (--config.optimizer.warmup_steps), or '
                f'check the input normalisation.')


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

    task: tasks.Task
    mesh: Mesh
    par: parallel.Parallel
    nets: dict[str, nn.Module]
    optimizers: dict[str, tasks.Optimizer]
    steps_per_epoch: int
    total_steps: int
    ckpt: checkpoint.Checkpointer
    evaluations: Evaluations
    start_step: int = 0
    n_params: int = 0
    state: TrainState | None = None
    meta: dict[str, Any] = dataclasses.field(default_factory=dict)  # Of the restored checkpoint.
    run_changes: dict[str, Any] = dataclasses.field(default_factory=dict)


def _setup(config: ConfigDict, workdir: str, devices: Sequence[jax.Device] | None, *, read_only: bool) -> _Setup:
    task = tasks.get(config.task)
    task.validate(config)
    mesh = parallel.make_mesh(devices)
    par = parallel.Parallel(mesh, config.parallel)
    parallel.check_batch_size(config.batch_size, mesh)
    if config.eval_batch_size:
        parallel.check_batch_size(config.eval_batch_size, mesh, 'eval_batch_size')
    nets = task.build_nets(config)
    steps_per_epoch = pipeline.steps_per_epoch(config.data, config.batch_size)
    total_steps = total_train_steps(config, steps_per_epoch)
    optimizers = task.make_optimizers(config, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
    evaluations = Evaluations(task, config, mesh, nets, steps_per_epoch, workdir)
    ckpt = checkpoint.Checkpointer(workdir, keep=config.keep_checkpoints, read_only=read_only,
                                   architecture={'task': config.task, **task.architecture(config)},
                                   run=task.run_config(config))
    return _Setup(task, mesh, par, nets, optimizers, steps_per_epoch, total_steps, ckpt, evaluations)


def _init_or_restore(config: ConfigDict, s: _Setup) -> None:
    """Fresh replicated state from the seed, or the newest intact checkpoint restored onto the mesh."""
    # The state is built for the training input shapes (found by tracing the pipeline, not by reading data).
    spec = {k: jax.ShapeDtypeStruct(shape, dtype) for k, (shape, dtype) in
            pipeline.element_spec(config.data, train=True).items()}
    init = jax.jit(lambda: s.task.init_state(config, s.nets, s.optimizers, spec),
                   out_shardings=parallel.replicated(s.mesh))
    if s.ckpt.latest_step() is not None:
        # Reading a checkpoint (evaluation, visualisation, export) mixes no runs: another batch size is fine.
        s.state, s.meta, s.run_changes = s.ckpt.restore(
            jax.eval_shape(init), allow_run_changes=config.resume_with_changes or s.ckpt.read_only)
        s.start_step = int(s.meta['step'])
        if s.run_changes and not s.ckpt.read_only:
            logging.warning('Resuming step %d with changed settings (resume_with_changes=True): %s', s.start_step,
                            s.run_changes)
    else:
        s.state = init()
        if config.init_from:
            s.state, s.meta['init_from'] = init_from.start(config, s.state, s.mesh)
    s.n_params = num_params(s.state)
    logging.info('Task %s, networks %s: %s parameters; %d steps (%d per epoch), global batch %d on %d devices (%s)',
                 config.task, ', '.join(f'{k}={type(v).__name__}' for k, v in s.nets.items()), f'{s.n_params:,}',
                 s.total_steps, s.steps_per_epoch, config.batch_size, s.mesh.devices.size, config.parallel)


def _restore_latest(config: ConfigDict, workdir: str, devices: Sequence[jax.Device] | None) -> _Setup:
    """Set-up with the state of the newest intact checkpoint in `workdir`, read-only; an error if there is none."""
    directory = epath.Path(workdir) / 'checkpoints'
    if not directory.exists() or not any(p.name.isdigit() for p in directory.iterdir()):
        raise FileNotFoundError(f'No checkpoint in {directory}: train first (--mode=train) with this --workdir, or '
                                f'point --workdir at a finished run.')
    s = _setup(config, workdir, devices, read_only=True)
    try:
        _init_or_restore(config, s)
    finally:
        s.ckpt.close()
    return s


def restore_for_inference(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
                          ) -> tuple[dict[str, nn.Module], TrainState]:
    """The task's networks and the latest checkpoint's state in `workdir` (for evaluation, visualisation, export).

    Use `state.nets[name].eval_variables` with `nets[name].apply(..., train=False)`.
    """
    s = _restore_latest(config, workdir, devices)
    return s.nets, s.state


def evaluate_checkpoint(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
                        ) -> dict[str, Any]:
    """`--mode=eval`: runs every `at_end` evaluator on the latest checkpoint; writes `eval_results.json`
    (results.json is untouched). Reads the workdir only, so it may run beside training."""
    s = _restore_latest(config, workdir, devices)
    init_from.check_preprocessing(config, s.meta, train=False)
    results: dict[str, Any] = {'step': s.start_step}
    if (record := init_from.pretrained_record(s.meta)) is not None:
        results['pretrained'] = record
    for name in s.evaluations.at_end():
        results[s.evaluations.entries[name].results_key] = metrics = s.evaluations.run(name, s.state)
        logging.info('evals.%s of step %d: %s', name, s.start_step, progress.format_metrics(metrics))
    results['config'] = config.to_dict()
    if jax.process_index() == 0:
        _write_json(workdir, 'eval_results.json', results)
    return results


def _finished_results(workdir: str, step: int) -> dict[str, Any] | None:
    """The results.json of a run that already finished at `step`, if there is one."""
    path = epath.Path(workdir) / 'results.json'
    if not path.exists():
        return None
    results = json.loads(path.read_text())
    return results if results.get('step') == step else None


def train_and_evaluate(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None
                       ) -> dict[str, Any] | None:
    """Trains (resuming from the newest intact checkpoint in `workdir`), evaluates and writes `results.json`.

    Returns the results dict, or None when the run stopped early on a preemption request (after saving).
    One run per workdir: a second concurrent run gets WorkdirBusyError.
    """
    with WorkdirLock(workdir):
        return _train_and_evaluate(config, workdir, devices)


def _train_and_evaluate(config: ConfigDict, workdir: str, devices: Sequence[jax.Device] | None
                        ) -> dict[str, Any] | None:
    s = _setup(config, workdir, devices, read_only=False)
    try:
        _init_or_restore(config, s)
    except BaseException:
        s.ckpt.close()
        raise
    par, ckpt, total_steps, start_step, evaluations = s.par, s.ckpt, s.total_steps, s.start_step, s.evaluations
    if start_step >= total_steps and (done := _finished_results(workdir, start_step)) is not None:
        ckpt.close()
        logging.info('This run already finished at step %d: results.json is kept as it is (--mode=eval '
                     're-evaluates the checkpoint; a larger num_train_steps / num_epochs continues training).',
                     start_step)
        return done
    is_main = jax.process_index() == 0
    state = s.state
    local_batches = pipeline.train_batches(config.data, global_batch_size=config.batch_size, seed=config.seed,
                                           start_step=start_step, process_index=jax.process_index(),
                                           process_count=jax.process_count())
    # Batches go onto the devices data.device_prefetch steps ahead of their step. The data position a checkpoint
    # records is its step (the pipeline restarts from start_step), so batches read ahead are simply read again
    # after a resume. Only the batches of this run's steps are read.
    device_spec = pipeline.device_spec(config.data)
    batches = par.device_batches(itertools.islice(local_batches, max(0, total_steps - start_step)),
                                 prefetch=config.data.device_prefetch,
                                 transform=jax.jit(device_ops.batch_fn(device_spec)) if device_spec else None)
    train_step = par.compile(s.task.make_train_step(config, s.nets, s.optimizers, axis_name=parallel.AXIS,
                                                    loss_is_global=par.loss_is_global))
    plateau = optim.plateau(config.optimizer)
    report_plateau = jax.jit(lambda st, value: st.replace(nets=plateau.report(st.nets, value)),
                             donate_argnums=0, out_shardings=parallel.replicated(s.mesh)) if plateau else None
    watched = evaluations.watched
    best = s.meta.get('best')
    # First logged values of the watched losses, kept across restarts: the divergence reference.
    reference: dict[str, float] = dict(s.meta.get('reference_metrics') or {})
    log_every = intervals.to_steps(config.log_every, s.steps_per_epoch, what='log_every')
    checkpoint_every = intervals.to_steps(config.checkpoint_every, s.steps_per_epoch, what='checkpoint_every')
    writer = progress.MetricWriter(workdir, enabled=is_main)
    throughput = progress.Throughput(config.batch_size, total_steps)
    preemption = checkpoint.PreemptionWatcher()
    last_good = start_step or None
    pending: list[dict[str, jax.Array]] = []
    step = start_step
    latest: dict[str, dict[str, float]] = {}  # Latest numbers of each evaluator, by name.
    train_metrics: dict[str, float] | None = None
    # Several CPU processes (the simulated multi-host path) can deadlock in gloo collectives when steps are
    # dispatched ahead of each other; waiting for each step there costs little. Accelerators keep async dispatch.
    sync_each_step = jax.process_count() > 1 and jax.devices()[0].platform == 'cpu'
    t_start = time.time()

    def limits() -> dict[str, float]:
        if not config.divergence_factor:
            return {}
        return {k: config.divergence_factor * max(abs(v), 1.0) for k, v in reference.items()}

    def check(pending: list[dict[str, jax.Array]]) -> None:
        _check_metrics(pending, step - len(pending) + 1, last_good, limits())

    def save(state: TrainState) -> None:
        nonlocal last_good
        with throughput.excluded():
            check(pending)
            extra = {'best': best, 'reference_metrics': reference}
            for key in ('init_from', 'pretrained'):  # provenance of the starting weights, kept through resumes
                if s.meta.get(key):
                    extra[key] = s.meta[key]
            if ckpt.save(step, state, force=True, extra=extra):
                last_good = step

    def run_evaluation(name: str, state: TrainState, step: int) -> TrainState:
        nonlocal best
        with throughput.excluded():
            metrics = latest[name] = evaluations.run(name, state)
        logging.info('evals.%s at step %d: %s', name, step, progress.format_metrics(metrics))
        writer.scalars(step, {f'{evaluations.entries[name].results_key}/{k}': v for k, v in metrics.items()})
        if watched is not None and name == watched.evaluator:
            if watched.metric not in metrics:
                raise KeyError(f'optimizer.plateau_metric={watched.name!r}: evals.{name} returns '
                               f'{", ".join(metrics)}.')
            value = metrics[watched.metric]
            if improved(best, value):
                best = {'metric': watched.name, 'value': value, 'step': step}
            # "Divide the rate by 10 when the validation error stops improving" (AlexNet sec. 5): only periodic
            # evaluations during training drive the schedule.
            if report_plateau is not None and evaluations.every[name]:
                state = report_plateau(state, value)
        return state

    try:
        # Checkpoints are saved BEFORE the evaluations of their step (an evaluation failure never costs training
        # work), so a resumed run first redoes the periodic evaluations of its starting step: they may have
        # changed the state (the plateau schedule) and the bookkeeping after the save.
        if 0 < start_step < total_steps:
            for name in evaluations.due(start_step, last=False):
                state = run_evaluation(name, state, start_step)
        while step < total_steps:
            state, metrics = train_step(state, next(batches))
            if sync_each_step:
                jax.block_until_ready(metrics)
            pending.append(metrics)
            step += 1
            if step == start_step + 1:
                jax.block_until_ready(metrics)
                throughput.start(step)
            stopping = preemption.requested(step)
            last = step == total_steps
            if (log_every and step % log_every == 0) or last:
                check(pending)
                mean = train_metrics = _mean_metrics(pending)
                pending = []
                for k in s.task.divergence_metrics:
                    if k in mean:
                        reference.setdefault(k, mean[k])
                per_s = throughput.examples_per_second(step, since_last=True)
                progress.log_train(step, total_steps, mean, per_s, throughput.eta_seconds(step, per_s))
                writer.scalars(step, {f'train/{k}': v for k, v in mean.items()} | {'train/examples_per_s': per_s})
            if (checkpoint_every and step % checkpoint_every == 0) or last or stopping:
                save(state)
            if stopping:
                logging.warning('Preempted: checkpoint saved at step %d; rerun the same command to resume.', step)
                return None
            for name in evaluations.due(step, last=last):
                state = run_evaluation(name, state, step)
        for name in evaluations.at_end():
            if name not in latest:  # Resumed from a checkpoint at (or past) the last step.
                state = run_evaluation(name, state, step)
    finally:
        ckpt.wait()
        ckpt.close()
        writer.close()
        preemption.close()

    results: dict[str, Any] = {evaluations.entries[name].results_key: m for name, m in latest.items()}
    results |= {
        'step': step,
        'train': train_metrics,  # Means over the last logging interval (None if this run trained no step).
        'best': best,  # The best value of optimizer.plateau_metric seen in training, and its step.
        'train_examples_per_s': _finite_or_none(throughput.examples_per_second(step)),
        'num_params': s.n_params,
        'num_devices': int(s.mesh.devices.size),
        'num_processes': jax.process_count(),
        'wall_seconds_this_run': time.time() - t_start,
        'config': config.to_dict(),
    }
    if s.meta.get('init_from'):
        results['init_from'] = s.meta['init_from']
    if s.run_changes:
        results['resumed_with_changes'] = {k: {'was': old, 'now': new} for k, (old, new) in s.run_changes.items()}
    if is_main:
        _write_json(workdir, 'results.json', results)
    logging.info('Done: step %d, %s, %.1f train examples/s', step, '; '.join(
        f'{k}: {progress.format_metrics(results[k])}' for k in evaluations.results_keys() if k in results),
        results['train_examples_per_s'] or float('nan'))
    return results
