"""Optimisers and learning-rate schedules built from the config's `optimizer` section.

Every paper in this project trains with SGD + momentum (optax.sgd). Weight decay is *coupled* (an L2 term added to
the gradient before momentum), which is how Caffe and the papers' update rules apply it:
  v <- m v + (g + wd w);  w <- w - lr v.
AlexNet (section 5) writes the decay inside the velocity with the rate already applied, v <- m v - wd lr w - lr g;
the two agree exactly while the learning rate is constant and differ only at the steps where the rate changes.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

SCHEDULES = ('constant', 'step', 'exponential', 'cosine')


def _to_steps(value: float, unit: str, steps_per_epoch: int) -> int:
    if unit == 'steps':
        return int(value)
    if unit == 'epochs':
        return int(round(value * steps_per_epoch))
    raise ValueError(f"optimizer.boundary_unit must be 'epochs' or 'steps', got {unit!r}.")


def make_schedule(opt: ConfigDict, *, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Learning rate as a function of the step (after an optional linear warm-up)."""
    lr = opt.learning_rate
    name = opt.schedule
    unit = opt.get('boundary_unit', 'epochs')
    if name == 'constant':
        schedule = optax.constant_schedule(lr)
    elif name == 'step':
        # Piecewise constant: multiply by decay_factor at each boundary (e.g. ResNet CIFAR: /10 at 32k and 48k).
        bounds = sorted(_to_steps(b, unit, steps_per_epoch) for b in opt.boundaries)
        schedule = optax.piecewise_constant_schedule(lr, {b: opt.decay_factor for b in bounds})
    elif name == 'exponential':
        # Staircase decay, e.g. GoogLeNet's "decrease the rate by 4% every 8 epochs".
        every = max(1, _to_steps(opt.decay_every, unit, steps_per_epoch))
        schedule = optax.exponential_decay(lr, transition_steps=every, decay_rate=opt.decay_factor,
                                           staircase=True)
    elif name == 'cosine':
        schedule = optax.cosine_decay_schedule(lr, decay_steps=max(1, total_steps))
    else:
        raise ValueError(f'Unknown optimizer.schedule {name!r}; valid: {", ".join(SCHEDULES)}.')
    warmup = int(opt.get('warmup_steps', 0))
    if warmup > 0:
        base = schedule
        # Linear warm-up to the rate the schedule gives at the end of it; the schedule itself is not shifted.
        def schedule(step):
            return jnp.where(step < warmup, base(step) * step / warmup, base(step))
    return schedule


def _decay_mask(on: str) -> Callable | None:
    if on == 'all':
        return None
    if on == 'kernels':
        return lambda params: jax.tree.map(lambda p: jnp.ndim(p) > 1, params)
    raise ValueError(f"optimizer.weight_decay_on must be 'all' or 'kernels', got {on!r}.")


def make_optimizer(opt: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """SGD with momentum and coupled weight decay (see the module docstring)."""
    parts = []
    if opt.weight_decay:
        parts.append(optax.add_decayed_weights(opt.weight_decay, mask=_decay_mask(opt.weight_decay_on)))
    parts.append(optax.sgd(schedule, momentum=opt.momentum or None, nesterov=opt.nesterov))
    return optax.chain(*parts)
