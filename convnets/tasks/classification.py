"""Image (and clip) classification: cross-entropy training with optional auxiliary heads and Polyak averaging.

The step functions are written for ONE device's slice of the batch and run under `convnets.parallel.Parallel`
(shard_map or pmap) with the mesh axis `axis_name`. They know no paper: the model and optimiser come in built.
Video classification is this task on clips: the batch's 'image' is then [B, T, H, W, C] and the model a 3D CNN.

Batches hold 'image' and 'label' (int32 class index). Evaluators: 'classification' (top-1/top-5 accuracy, loss;
multiple views, crops and eval-only model overrides: `convnets.evaluate.classification`) and 'clip_svm' (C3D's
linear SVM on per-video averaged fc6 features: `convnets.evaluate.clip_svm`).
"""

from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax
from ml_collections import ConfigDict

from convnets.evaluate import classification as classification_eval
from convnets.evaluate import clip_svm
from convnets.tasks import base, sgd
from convnets.train.precision import Policy
from convnets.train.state import TrainState

NET = base.SingleNetwork.NET  # The one network's name in TrainState.nets.


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                    axis_name: str, loss_is_global: bool, aux_loss_weight: float = 0.0, ema_decay: float = 0.0,
                    policy: Policy | None = None) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """One SGD step on one device's slice of the global batch.

    `loss_is_global` (see convnets.parallel): True under shard_map, where differentiating the device-averaged loss
    yields the global gradient; False under pmap, where local gradients are averaged explicitly.
    `aux_loss_weight`: models with auxiliary classifiers sow their logits into the 'aux_logits' collection during
    training; their cross-entropies are added with this weight (GoogLeNet sec. 5: 0.3).
    `ema_decay` > 0: Polyak averaging, ema <- decay * ema + (1 - decay) * params after every step.
    `policy`: the compute dtype (`convnets.train.precision`; None: float32); the logits come back float32.
    """
    policy = policy or Policy()

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, Any]]:
        # Dropout masks differ per device and per step; everything else is deterministic.
        rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), lax.axis_index(axis_name))
        net = state.nets[NET]
        has_bn = bool(net.batch_stats)

        mutable = (['batch_stats'] if has_bn else []) + (['aux_logits'] if aux_loss_weight else [])

        def loss_fn(params):
            variables = {'params': params, 'batch_stats': net.batch_stats} if has_bn else {'params': params}
            logits, new_vars = policy.apply(model, variables, batch['image'], train=True, rngs={'dropout': rng},
                                            mutable=mutable)
            main_loss = jnp.mean(cross_entropy(logits, batch['label']))
            aux_loss = sum((jnp.mean(cross_entropy(aux_logits, batch['label']))
                            for aux_logits in jax.tree.leaves(new_vars.get('aux_logits', {}))), jnp.zeros(()))
            return main_loss + aux_loss_weight * aux_loss, (logits, new_vars, main_loss)

        (loss, (logits, new_vars, main_loss)), grads = sgd.net_value_and_grad(
            loss_fn, net, axis_name=axis_name, loss_is_global=loss_is_global, policy=policy)
        new_net = sgd.apply_gradients(net, grads, tx, batch_stats=new_vars['batch_stats'] if has_bn else None,
                                      ema_decay=ema_decay)
        new_state = state.replace(step=state.step + 1, nets={**state.nets, NET: new_net})
        metrics = {
            'loss': loss,  # The training objective (main + weighted auxiliary losses).
            'main_loss': lax.pmean(main_loss, axis_name),
            'top1': lax.pmean(jnp.mean(classification_eval.topk_correct(logits, batch['label'], 1)), axis_name),
            **sgd.update_metrics(state.step, schedule, net, grads, new_net),
        }
        return new_state, metrics

    return step


def init_state(model: nn.Module, tx: optax.GradientTransformation, seed: int,
               image_shape: tuple[int, ...], *, ema: bool = False, policy: Policy | None = None) -> TrainState:
    """Fresh parameters (and BatchNorm statistics) from `seed`; jit this with replicated out_shardings.

    With `ema`, the Polyak average starts at the initial parameters; `policy` gives the loss scale (float16).
    """
    spec = {'image': jax.ShapeDtypeStruct(tuple(image_shape), jnp.float32)}
    return base.fresh_state(TASK.init_variables(model, base.init_rngs(seed), spec), tx, seed, name=NET, ema=ema,
                            loss_scale=(policy or Policy()).initial_loss_scale())


class Classification(base.SingleNetwork):
    """One classifier (`config.model`), SGD from `config.optimizer`, cross-entropy (+ `config.aux_loss_weight`
    times the auxiliary heads' losses), Polyak averaging with `config.ema_decay`."""

    evaluators = {'classification': classification_eval.make_evaluator, 'clip_svm': clip_svm.make_evaluator}

    def run_config(self, config: ConfigDict) -> dict[str, Any]:
        return super().run_config(config) | {'ema_decay': config.ema_decay, 'aux_loss_weight': config.aux_loss_weight}

    def validate(self, config: ConfigDict) -> None:
        super().validate(config)
        if not 0.0 <= config.ema_decay < 1.0:
            raise ValueError(f'ema_decay={config.ema_decay}: the Polyak average needs 0 <= decay < 1 (0 turns it '
                             f'off; GoogLeNet uses 0.9999).')
        if config.aux_loss_weight < 0:
            raise ValueError(f'aux_loss_weight={config.aux_loss_weight} must be >= 0 (GoogLeNet: 0.3).')

    def init_variables(self, model: nn.Module, rngs: dict[str, jax.Array], batch_spec: base.BatchSpec
                       ) -> dict[str, Any]:
        return model.init(rngs, jnp.zeros((1, *batch_spec['image'].shape), jnp.float32), train=False)

    def make_train_step(self, config: ConfigDict, nets: Mapping[str, nn.Module],
                        optimizers: Mapping[str, base.Optimizer], *, axis_name: str, loss_is_global: bool
                        ) -> base.StepFn:
        return make_train_step(nets[NET], optimizers[NET].tx, optimizers[NET].schedule, axis_name=axis_name,
                               loss_is_global=loss_is_global, aux_loss_weight=config.aux_loss_weight,
                               ema_decay=config.ema_decay, policy=Policy.from_config(config))


TASK = Classification()
