"""Image classification: loss, metrics, and the per-device train / eval step functions.

The step functions are written for ONE device's slice of the batch and run under `convnets.parallel.Parallel`
(shard_map or pmap) with the mesh axis `axis_name`. They know no paper: the model and optimiser come in built.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax

from convnets.evaluate import multiview
from convnets.train import transforms
from convnets.train.state import TrainState


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Per-example softmax cross-entropy with integer labels."""
    return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)


def topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the k highest scores (k is clipped to the number of classes)."""
    k = min(k, logits.shape[-1])
    _, top = lax.top_k(logits, k)
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def make_train_step(model: nn.Module, tx: optax.GradientTransformation, schedule: optax.Schedule, *,
                    axis_name: str, loss_is_global: bool, aux_loss_weight: float = 0.0, ema_decay: float = 0.0
                    ) -> Callable[[TrainState, dict], tuple[TrainState, dict]]:
    """One SGD step on one device's slice of the global batch.

    `loss_is_global` (see convnets.parallel): True under shard_map, where differentiating the device-averaged loss
    yields the global gradient; False under pmap, where local gradients are averaged explicitly.
    `aux_loss_weight`: models with auxiliary classifiers sow their logits into the 'aux_logits' collection during
    training; their cross-entropies are added with this weight (GoogLeNet sec. 5: 0.3).
    `ema_decay` > 0: Polyak averaging, ema <- decay * ema + (1 - decay) * params after every step.
    """

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, Any]]:
        # Dropout masks differ per device and per step; everything else is deterministic.
        rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), lax.axis_index(axis_name))
        has_bn = bool(state.batch_stats)

        mutable = (['batch_stats'] if has_bn else []) + (['aux_logits'] if aux_loss_weight else [])

        def loss_fn(params):
            variables = {'params': params, 'batch_stats': state.batch_stats} if has_bn else {'params': params}
            logits, new_vars = model.apply(variables, batch['image'], train=True, rngs={'dropout': rng},
                                           mutable=mutable)
            main_loss = jnp.mean(cross_entropy(logits, batch['label']))
            aux_loss = sum((jnp.mean(cross_entropy(aux_logits, batch['label']))
                            for aux_logits in jax.tree.leaves(new_vars.get('aux_logits', {}))), jnp.zeros(()))
            loss = main_loss + aux_loss_weight * aux_loss
            if loss_is_global:
                loss = lax.pmean(loss, axis_name)
            return loss, (logits, new_vars, main_loss)

        (loss, (logits, new_vars, main_loss)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        if not loss_is_global:
            grads = lax.pmean(grads, axis_name)
            loss = lax.pmean(loss, axis_name)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            opt_state=opt_state,
            batch_stats=new_vars['batch_stats'] if has_bn else state.batch_stats,
            ema_params=jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, state.ema_params, params)
            if ema_decay else state.ema_params,
        )
        metrics = {
            'loss': loss,  # The training objective (main + weighted auxiliary losses).
            'main_loss': lax.pmean(main_loss, axis_name),
            'top1': lax.pmean(jnp.mean(topk_correct(logits, batch['label'], 1)), axis_name),
            'lr': jnp.asarray(schedule(state.step), jnp.float32) * transforms.rate_multiplier(state.opt_state),
            'grad_norm': optax.global_norm(grads),
            # Catches a step whose update overflowed even though its loss and gradient were still finite.
            'param_norm': optax.global_norm(new_state.params),
        }
        return new_state, metrics

    return step


def make_eval_step(model: nn.Module, *, axis_name: str) -> Callable[[TrainState, dict], dict]:
    """Sums (not means) of loss and top-1/top-5 hits over the real examples of a padded global batch.

    Images [B, H, W, C], or [B, K, H, W, C] for K crops per example whose softmax is averaged (multi-crop).
    """

    def step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        log_probs = multiview.crop_averaged_log_probs(model, state.eval_variables, batch['image'])
        labels, mask = batch['label'], batch['mask']
        sums = {
            'loss': -jnp.sum(jnp.take_along_axis(log_probs, labels[:, None], axis=1)[:, 0] * mask),
            'top1': jnp.sum(topk_correct(log_probs, labels, 1) * mask),
            'top5': jnp.sum(topk_correct(log_probs, labels, 5) * mask),
            'count': jnp.sum(mask),
        }
        return lax.psum(sums, axis_name)

    return step


def init_state(model: nn.Module, tx: optax.GradientTransformation, seed: int,
               image_shape: tuple[int, ...], *, ema: bool = False) -> TrainState:
    """Fresh parameters (and BN statistics) from `seed`; jit this with replicated out_shardings.

    With `ema`, the Polyak average starts at the initial parameters.
    """
    rng = jax.random.PRNGKey(seed)
    init_rng, state_rng = jax.random.split(rng)
    variables = model.init({'params': init_rng, 'dropout': init_rng}, jnp.zeros((1, *image_shape), jnp.float32),
                           train=False)
    params = variables['params']
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, batch_stats=variables.get('batch_stats', {}),
                      opt_state=tx.init(params), rng=state_rng, ema_params=params if ema else {})
