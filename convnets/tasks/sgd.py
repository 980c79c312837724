"""The parts of a per-device train step that every task shares: the global gradient of a loss under either
parallel path, and one optimiser update of a network (parameters, BatchNorm statistics, Polyak average).

Tasks write only their loss; these two functions keep the data-parallel contract (`convnets.parallel`) in one place.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import lax

from convnets.train import transforms
from convnets.train.state import NetState


def global_value_and_grad(loss_fn: Callable[[Any], tuple[jax.Array, Any]], params: Any, *, axis_name: str,
                          loss_is_global: bool) -> tuple[tuple[jax.Array, Any], Any]:
    """`((loss, aux), grads)` of `loss_fn(params) -> (loss on this device's slice, aux)`, with the loss averaged
    over devices and the gradient of that average.

    Under shard_map (`loss_is_global`) the device mean is taken inside the differentiated function, which yields
    the global gradient; under pmap the local gradients and losses are averaged after differentiation.
    """

    def wrapped(p):
        loss, aux = loss_fn(p)
        return (lax.pmean(loss, axis_name) if loss_is_global else loss), aux

    (loss, aux), grads = jax.value_and_grad(wrapped, has_aux=True)(params)
    if not loss_is_global:
        grads = lax.pmean(grads, axis_name)
        loss = lax.pmean(loss, axis_name)
    return (loss, aux), grads


def apply_gradients(net: NetState, grads: Any, tx: optax.GradientTransformation, *, batch_stats: Any = None,
                    ema_decay: float = 0.0) -> NetState:
    """`net` after one update by `tx`, with new BatchNorm statistics (if given) and, with `ema_decay` > 0, the
    Polyak average ema <- decay * ema + (1 - decay) * params (GoogLeNet sec. 6)."""
    updates, opt_state = tx.update(grads, net.opt_state, net.params)
    params = optax.apply_updates(net.params, updates)
    ema = (jax.tree.map(lambda e, p: ema_decay * e + (1.0 - ema_decay) * p, net.ema_params, params)
           if ema_decay else net.ema_params)
    return net.replace(params=params, opt_state=opt_state, ema_params=ema,
                       batch_stats=net.batch_stats if batch_stats is None else batch_stats)


def update_metrics(step: jax.Array, schedule: optax.Schedule, net: NetState, grads: Any, new_net: NetState
                   ) -> dict[str, jax.Array]:
    """The metrics every task logs about one update of `net` into `new_net` at `step`: the learning rate in force
    (schedule x the optimiser's multiplier), the gradient's norm and the new parameters' norm (it catches a step
    whose update overflowed even though its loss and gradient were still finite)."""
    return {'lr': jnp.asarray(schedule(step), jnp.float32) * transforms.rate_multiplier(net.opt_state),
            'grad_norm': optax.global_norm(grads), 'param_norm': optax.global_norm(new_net.params)}
