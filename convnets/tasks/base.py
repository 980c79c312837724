"""What a task provides to the one training loop, and the helpers tasks share.

A task is what differs between classification, detection, video and GANs: which networks it trains, their
optimisers, the initial state, the per-device train step and its metrics, and the evaluators its configs may name.
Everything else — data-parallel execution, checkpoints and resume, preemption, the NaN guard, progress and ETA,
TensorBoard, the plateau schedule, results.json — is the loop's (`convnets.train.loop`) and is the same for every
task. `config.task` names the task: a module of this package (`'classification'`) or any importable module path
(`'tests.test_tasks'`); the module defines `TASK`, an instance of a `Task` subclass.

Contracts:
- `train_step(state, batch) -> (state, metrics)` runs on ONE device's slice of the global batch under
  `convnets.parallel.Parallel` with the mesh axis `axis_name`; `metrics` is a dict of named scalars, already
  averaged over devices, every one of which must stay finite (the loop's NaN guard checks them all).
- Networks run in the compute dtype of `config.dtype` through `convnets.train.precision.Policy.apply` (float32
  state, floating outputs back in float32); gradients and updates go through `convnets.tasks.sgd`, which holds
  float16's loss scaling.
- An evaluator (built by `Task.evaluators[type](context, eval_config)`) maps a state to a dict of named floats.
  The loop runs it on the cadence of its config entry (`config.evals.<name>`) and writes its numbers to
  results.json under the entry's `results_key`.
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from ml_collections import ConfigDict

from convnets import models, parallel
from convnets.train import optim, precision
from convnets.train.state import NetState, TrainState

StepFn = Callable[[TrainState, dict[str, jax.Array]], tuple[TrainState, dict[str, jax.Array]]]
Evaluator = Callable[[TrainState], dict[str, float]]
BatchSpec = Mapping[str, jax.ShapeDtypeStruct]  # Per-example shape and dtype of every batch key.


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A network's optax transformation and its learning-rate schedule (for the logged `lr`)."""

    tx: optax.GradientTransformation
    schedule: optax.Schedule


@dataclasses.dataclass(frozen=True)
class EvalContext:
    """What an evaluator is built from: the run's config, its mesh and the task's networks."""

    config: ConfigDict
    name: str  # The evaluator's entry in config.evals.
    mesh: Mesh
    nets: Mapping[str, nn.Module]
    workdir: str | None = None  # Where evaluators may write files (detection: the VOC devkit results).


EvaluatorFactory = Callable[[EvalContext, ConfigDict], Evaluator]


class Task(abc.ABC):
    """Subclass per task; the loop calls only these methods and `evaluators`."""

    # Evaluator types this task's configs may name in `config.evals.<name>.type`.
    evaluators: Mapping[str, EvaluatorFactory] = {}
    # Train metrics watched for divergence: a run stops when one grows past config.divergence_factor times its
    # first logged value (at least 1).
    divergence_metrics: tuple[str, ...] = ('loss',)

    def architecture(self, config: ConfigDict) -> dict[str, Any]:
        """The config sections that fix the shapes of the state; a workdir holding another architecture is
        refused on resume. Override for tasks whose networks are configured elsewhere than `config.model`."""
        return {'model': config.model.to_dict()}

    def run_config(self, config: ConfigDict) -> dict[str, Any]:
        """The settings that define the run beyond its architecture: changing one of them and resuming would mix
        two runs, so resume refuses it (unless config.resume_with_changes). Cadences, evaluations, the run length
        and where data lives may change. Extend in tasks with more such fields."""
        data = config.data
        out = {'batch_size': config.batch_size, 'seed': config.seed, 'optimizer': config.optimizer.to_dict(),
               'data': {k: data[k] for k in ('name', 'train_split', 'train_preprocess', 'batch_keys',
                                             'shuffle_buffer', 'process_split')}}
        # The compute dtype changes the numbers; named only when not float32, so that the workdirs of runs from
        # before mixed precision existed resume as they are.
        from convnets.data import pipeline

        if device_spec := pipeline.device_spec(data):  # Named only when set: older workdirs resume as they are.
            out['data']['device_preprocess'] = device_spec
        if config.get('dtype', 'float32') != 'float32':
            out['precision'] = {'dtype': config.dtype, 'loss_scale': config.get('loss_scale', 'dynamic')}
        return out

    def validate(self, config: ConfigDict) -> None:
        """Raises ValueError for settings that cannot be right (before anything is built or trained)."""
        optim.validate(config.optimizer)
        precision.validate(config)
        from convnets.data import device_ops, pipeline

        if device_spec := pipeline.device_spec(config.data):
            device_ops.parse(device_spec)  # A ValueError names the valid ops.
            if 'image' not in tuple(config.data.batch_keys):
                raise ValueError(f'data.device_preprocess={device_spec!r} transforms the batch\'s '
                                 f"'image', but data.batch_keys={tuple(config.data.batch_keys)} has none: add it, or "
                                 "set --config.data.device_preprocess=''")

    @abc.abstractmethod
    def build_nets(self, config: ConfigDict) -> dict[str, nn.Module]:
        """The networks, by name (the names of `TrainState.nets`)."""

    @abc.abstractmethod
    def make_optimizers(self, config: ConfigDict, *, steps_per_epoch: int, total_steps: int
                        ) -> dict[str, Optimizer]:
        """One optimiser per trained network (frozen networks may have none)."""

    @abc.abstractmethod
    def init_state(self, config: ConfigDict, nets: Mapping[str, nn.Module], optimizers: Mapping[str, Optimizer],
                   batch_spec: BatchSpec) -> TrainState:
        """The fresh state from `config.seed`; traced under jit with replicated outputs (no side effects)."""

    @abc.abstractmethod
    def make_train_step(self, config: ConfigDict, nets: Mapping[str, nn.Module],
                        optimizers: Mapping[str, Optimizer], *, axis_name: str, loss_is_global: bool) -> StepFn:
        """The per-device train step (see the module docstring and `convnets.parallel` for `loss_is_global`)."""


class SingleNetwork(Task):
    """A task that trains one network, `config.model` as `NET`, with the optimiser of `config.optimizer`
    (classification, detection). Subclasses provide `init_variables`, the step and the evaluators."""

    NET = 'model'

    def build_nets(self, config: ConfigDict) -> dict[str, nn.Module]:
        return {self.NET: build_model(config.model)}

    def make_optimizers(self, config: ConfigDict, *, steps_per_epoch: int, total_steps: int
                        ) -> dict[str, Optimizer]:
        schedule = optim.make_schedule(config.optimizer, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        return {self.NET: Optimizer(optim.make_optimizer(config.optimizer, schedule), schedule)}

    @abc.abstractmethod
    def init_variables(self, model: nn.Module, rngs: dict[str, jax.Array], batch_spec: BatchSpec) -> dict[str, Any]:
        """`model.init` on a dummy example of `batch_spec`'s shapes (traced, never run on data)."""

    def init_state(self, config: ConfigDict, nets: Mapping[str, nn.Module], optimizers: Mapping[str, Optimizer],
                   batch_spec: BatchSpec) -> TrainState:
        """Fresh parameters (and BN statistics) from `config.seed`; with `config.ema_decay` > 0 the Polyak average
        starts at the initial parameters."""
        return fresh_state(self.init_variables(nets[self.NET], init_rngs(config.seed), batch_spec),
                           optimizers[self.NET].tx, config.seed, name=self.NET, ema=config.ema_decay > 0,
                           loss_scale=precision.Policy.from_config(config).initial_loss_scale())


def init_rngs(seed: int) -> dict[str, jax.Array]:
    """The PRNG keys `model.init` gets for seed `seed` (the state's own key is the other half of the split)."""
    init_rng, _ = jax.random.split(jax.random.PRNGKey(seed))
    return {'params': init_rng, 'dropout': init_rng}


def fresh_state(variables: dict[str, Any], tx: optax.GradientTransformation, seed: int, *, name: str,
                ema: bool = False, loss_scale: Any = None) -> TrainState:
    """The step-0 state of one network with `variables` (from `model.init`) and optimiser `tx`; `loss_scale`:
    its initial loss-scale state (`precision.Policy.initial_loss_scale`; None: none)."""
    _, state_rng = jax.random.split(jax.random.PRNGKey(seed))
    params = variables['params']
    net = NetState(params=params, batch_stats=variables.get('batch_stats', {}), opt_state=tx.init(params),
                   ema_params=params if ema else {}, loss_scale={} if loss_scale is None else loss_scale)
    return TrainState(step=jnp.zeros((), jnp.int32), rng=state_rng, nets={name: net})


def build_model(model_config: ConfigDict) -> nn.Module:
    """The model `model_config.name` with the other fields as hyperparameters; models with BatchNorm get their
    statistics synchronised over the data-parallel axis."""
    kwargs = {k: v for k, v in model_config.to_dict().items() if k != 'name'}
    model = models.get_model(model_config.name, **kwargs)
    if 'bn_axis_name' in {f.name for f in dataclasses.fields(model)}:
        model = model.clone(bn_axis_name=parallel.AXIS)
    return model
