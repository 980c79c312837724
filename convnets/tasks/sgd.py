"""The parts of a per-device train step that every task shares: the global gradient of a loss under either
parallel path, and one optimiser update of a network (parameters, BatchNorm statistics, Polyak average).

Tasks write only their loss; these functions keep the data-parallel contract (`convnets.parallel`) and float16's
loss scaling (`convnets.train.precision`) in one place: `net_value_and_grad` differentiates a network's loss
(scaled when the network has a loss scale), `apply_gradients` updates it (skipping a step whose scaled gradient
overflowed) and `update_metrics` reports the update.
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax.training.dynamic_scale import DynamicScale
from jax import lax

from convnets.train import transforms
from convnets.train.precision import Policy
from convnets.train.state import NetState


class Gradients(NamedTuple):
    """A network's global gradient and, with dynamic loss scaling, whether it is finite and the scale's new state."""

    grads: Any
    finite: jax.Array | None = None  # None: no loss scaling (every update is applied)
    loss_scale: Any = None  # the network's loss-scale state after this step


def global_value_and_grad(loss_fn: Callable[[Any], tuple[jax.Array, Any]], params: Any, *, axis_name: str,
                          loss_is_global: bool) -> tuple[tuple[jax.Array, Any], Any]:
    """`((loss, aux), grads)` of `loss_fn(params) -> (loss on this device's slice, aux)`, with the loss averaged
    over devices and the gradient of that average.

    Under shard_map (`loss_is_global`) the device mean is taken inside the differentiated function, which yields
    the global gradient; under pmap the local gradients and losses are averaged after differentiation.
    """
    (loss, aux), grads = jax.value_and_grad(_device_mean(loss_fn, axis_name, loss_is_global), has_aux=True)(params)
    if not loss_is_global:
        grads = lax.pmean(grads, axis_name)
        loss = lax.pmean(loss, axis_name)
    return (loss, aux), grads


def net_value_and_grad(loss_fn: Callable[[Any], tuple[jax.Array, Any]], net: NetState, *, axis_name: str,
                       loss_is_global: bool, policy: Policy | None = None) -> tuple[tuple[jax.Array, Any], Gradients]:
    """`global_value_and_grad` of `loss_fn` at `net.params`; when `net` has a dynamic loss scale (float16), the
    loss is multiplied by it before differentiation and the gradient divided by it (flax's `DynamicScale`), and
    the result says whether the gradient is finite and holds the scale's next state.

    `policy` (the compute dtype `loss_fn` casts the parameters to): in a low precision under shard_map, the
    float32 parameters are marked device-varying before `loss_fn` casts them, so that the cross-device sum of the
    gradient (the transpose of that mark) adds float32 gradients, not their bfloat16 / float16 casts."""
    if policy is not None and not policy.is_float32 and loss_is_global:
        inner = loss_fn

        def loss_fn(params):
            return inner(lax.pcast(params, axis_name, to='varying'))

    scale = net.loss_scale
    if not isinstance(scale, DynamicScale):
        (loss, aux), grads = global_value_and_grad(loss_fn, net.params, axis_name=axis_name,
                                                   loss_is_global=loss_is_global)
        return (loss, aux), Gradients(grads)
    # The gradient of the device-mean loss is already global under shard_map; under pmap DynamicScale averages the
    # local gradients itself (axis_name) before its finiteness test, so every device takes the same decision.
    new_scale, finite, (loss, aux), grads = scale.value_and_grad(
        _device_mean(loss_fn, axis_name, loss_is_global), has_aux=True,
        axis_name=None if loss_is_global else axis_name)(net.params)
    if not loss_is_global:
        loss = lax.pmean(loss, axis_name)
    return (loss, aux), Gradients(grads, finite, new_scale)


def _device_mean(loss_fn: Callable[[Any], tuple[jax.Array, Any]], axis_name: str, loss_is_global: bool
                 ) -> Callable[[Any], tuple[jax.Array, Any]]:
    def wrapped(p):
        loss, aux = loss_fn(p)
        return (lax.pmean(loss, axis_name) if loss_is_global else loss), aux

    return wrapped


def apply_gradients(net: NetState, grads: Any, tx: optax.GradientTransformation, *, batch_stats: Any = None,
                    ema_decay: float = 0.0) -> NetState:
    """`net` after one update by `tx`, with new BatchNorm statistics (if given) and, with `ema_decay` > 0, the
    Polyak average ema <- decay * ema + (1 - decay) * params (GoogLeNet sec. 6).

    `grads`: a gradient pytree, or `Gradients` from `net_value_and_grad`; with a loss scale, an update whose
    gradient is not finite is skipped (the network stays as it was) and the scale takes its next state."""
    g = grads if isinstance(grads, Gradients) else Gradients(grads)
    updates, opt_state = tx.update(g.grads, net.opt_state, net.params)
    params = optax.apply_updates(net.params, updates)
    ema = (jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, net.ema_params, params)
           if ema_decay else net.ema_params)
    new = net.replace(params=params, opt_state=opt_state, ema_params=ema,
                      batch_stats=net.batch_stats if batch_stats is None else batch_stats)
    if g.finite is None:
        return new
    kept = jax.tree.map(lambda n, o: jnp.where(g.finite, n, o), new, net)
    return kept.replace(loss_scale=g.loss_scale)


def update_metrics(step: jax.Array, schedule: optax.Schedule, net: NetState, grads: Any, new_net: NetState
                   ) -> dict[str, jax.Array]:
    """The metrics every task logs about one update of `net` into `new_net` at `step`: the learning rate in force
    (schedule x the optimiser's multiplier), the gradient's norm and the new parameters' norm (it catches a step
    whose update overflowed even though its loss and gradient were still finite). With a loss scale (`grads` a
    `Gradients` from `net_value_and_grad`): the scale the step used and 'skipped' (1 when its gradient was not
    finite; that step's gradient norm is logged as 0, see `convnets.train.precision`)."""
    g = grads if isinstance(grads, Gradients) else Gradients(grads)
    metrics = {'lr': jnp.asarray(schedule(step), jnp.float32) * transforms.rate_multiplier(net.opt_state),
               'grad_norm': optax.global_norm(g.grads), 'param_norm': optax.global_norm(new_net.params)}
    if g.finite is not None:
        metrics['grad_norm'] = jnp.where(g.finite, metrics['grad_norm'], 0.0)
        metrics['loss_scale'] = net.loss_scale.scale
        metrics['skipped'] = 1.0 - g.finite.astype(jnp.float32)
    return metrics
