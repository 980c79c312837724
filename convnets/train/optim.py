"""Optimisers and learning-rate schedules built from the config's `optimizer` section.

Every paper in this project trains with SGD + momentum. Weight decay is *coupled* (an L2 term added to the gradient
before momentum), as in Caffe and the papers. Two placements of the learning rate (`optimizer.velocity`):
  'lr_outside' (optax.sgd, default):   v <- m v + (g + wd w);          w <- w - lr v
  'lr_inside'  (AlexNet sec. 5, Caffe): v <- m v - lr (g + wd w);       w <- w + v
They agree exactly while the rate is constant; when it drops, 'lr_inside' keeps the velocity built at the old rate
(the paper's update), while 'lr_outside' rescales it at once.

`optimizer.name = 'adam'` (DCGAN: Adam with beta1 0.5, Radford et al. sec. 4) replaces the momentum by Adam's
moment estimates (`b1`, `b2`, `eps`; Kingma & Ba); weight decay, when set, is still coupled (added to the
gradient first), and the schedules, plateau control, bias multiplier and frozen parameters apply unchanged.
"""

import functools
import re
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from convnets.train import transforms

SCHEDULES = ('constant', 'step', 'exponential', 'cosine', 'plateau')
OPTIMIZERS = ('sgd', 'adam')
VELOCITIES = ('lr_outside', 'lr_inside')


def validate(opt: ConfigDict) -> None:
    """Raises ValueError naming the field for optimiser settings that cannot be right."""
    checks = [
        (np.isfinite(opt.learning_rate) and opt.learning_rate > 0, 'learning_rate', 'a finite rate > 0'),
        (0.0 <= opt.momentum < 1.0, 'momentum', 'in [0, 1) (0.9 in every paper here)'),
        (np.isfinite(opt.weight_decay) and opt.weight_decay >= 0, 'weight_decay', '>= 0'),
        (0.0 < opt.decay_factor <= 1.0, 'decay_factor', 'in (0, 1] (0.1: divide the rate by 10)'),
        (opt.warmup_steps >= 0, 'warmup_steps', '>= 0'),
        (opt.plateau_patience >= 0, 'plateau_patience', '>= 0'),
        (opt.filter_rms_max >= 0, 'filter_rms_max', '>= 0 (0 turns the renormalisation off)'),
        (np.isfinite(opt.bias_lr_multiplier) and opt.bias_lr_multiplier >= 0, 'bias_lr_multiplier',
         '>= 0 (Caffe-trained detectors: 2)'),
    ]
    for ok, field, wanted in checks:
        if not ok:
            raise ValueError(f'optimizer.{field}={opt[field]!r} must be {wanted}: --config.optimizer.{field}=...')
    if opt.schedule not in SCHEDULES:
        raise ValueError(f'Unknown optimizer.schedule {opt.schedule!r}; valid: {", ".join(SCHEDULES)}.')
    if opt.name not in OPTIMIZERS:
        raise ValueError(f'Unknown optimizer.name {opt.name!r}; valid: {", ".join(OPTIMIZERS)}.')
    if opt.name == 'adam' and not (0.0 <= opt.b1 < 1.0 and 0.0 <= opt.b2 < 1.0 and opt.eps > 0):
        raise ValueError(f'optimizer.b1={opt.b1}, b2={opt.b2}, eps={opt.eps}: Adam needs 0 <= b1, b2 < 1 and '
                         f'eps > 0 (DCGAN: b1 0.5, b2 0.999).')


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
    unit = opt.boundary_unit
    if name in ('constant', 'plateau'):  # 'plateau': constant here, lowered by `plateau()` after evaluations.
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
    warmup = int(opt.warmup_steps)
    if warmup > 0:
        base = schedule
        kind = opt.warmup_kind
        if kind not in ('linear', 'constant'):
            raise ValueError(f"optimizer.warmup_kind must be 'linear' or 'constant', got {kind!r}.")
        factor = opt.warmup_factor

        # 'linear': ramp from 0 to the schedule's rate; 'constant': a fixed fraction of it (ResNet-110, sec. 4.2:
        # 0.01 instead of 0.1 for the first ~400 iterations). The schedule itself is not shifted.
        def schedule(step):
            scale = step / warmup if kind == 'linear' else factor
            return jnp.where(step < warmup, base(step) * scale, base(step))
    return schedule


def _decay_mask(on: str) -> Callable | None:
    if on == 'all':
        return None
    if on == 'kernels':
        return lambda params: jax.tree.map(lambda p: jnp.ndim(p) > 1, params)
    raise ValueError(f"optimizer.weight_decay_on must be 'all' or 'kernels', got {on!r}.")


def plateau(opt: ConfigDict) -> transforms.Plateau | None:
    """The evaluation-driven rate controller of schedule 'plateau' (None for the other schedules)."""
    if opt.schedule != 'plateau':
        return None
    return transforms.Plateau(factor=opt.decay_factor, patience=int(opt.plateau_patience), rtol=opt.plateau_rtol,
                              cooldown=int(opt.plateau_cooldown))


def param_paths(params) -> list[str]:
    """'/'-joined paths of every parameter ('conv1_1_layer/kernel'), the names `frozen` patterns search."""
    return ['/'.join(str(getattr(k, 'key', getattr(k, 'name', k))) for k in path)
            for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]]


def _labels(params, fn: Callable[[str], bool]):
    paths = iter(param_paths(params))
    return jax.tree.map(lambda _: fn(next(paths)), params)


def _frozen_labels(patterns: tuple[str, ...]) -> Callable:
    """'frozen' / 'trained' per parameter; every pattern must match something (a typo must not train everything)."""
    compiled = [re.compile(p) for p in patterns]

    def labels(params):
        paths = param_paths(params)
        for pattern in compiled:
            if not any(pattern.search(p) for p in paths):
                raise ValueError(f'optimizer.frozen: {pattern.pattern!r} matches no parameter; parameters are named '
                                 f'like {", ".join(paths[:4])}, ...')
        return _labels(params, lambda p: 'frozen' if any(c.search(p) for c in compiled) else 'trained')

    return labels


def make_optimizer(opt: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    """SGD with momentum (or Adam) and coupled weight decay (see the module docstring), plus the options papers need:
    `bias_lr_multiplier` (Caffe's lr_mult 2 on biases, R-CNN / Fast R-CNN prototxts) and `frozen` (regexes of
    parameter paths that are not trained, e.g. Fast R-CNN's conv1-conv2 of VGG16, sec. 4.5)."""
    tx = _sgd(opt, schedule)
    if opt.frozen:
        # Frozen parameters get no update and keep no optimiser state (multi_transform masks them out).
        tx = optax.multi_transform({'trained': tx, 'frozen': optax.set_to_zero()}, _frozen_labels(tuple(opt.frozen)))
    return tx


def _sgd(opt: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    velocity = opt.velocity
    if velocity not in VELOCITIES:
        raise ValueError(f"optimizer.velocity must be one of {', '.join(VELOCITIES)}, got {velocity!r}.")
    parts = []
    if opt.weight_decay:
        parts.append(optax.add_decayed_weights(opt.weight_decay, mask=_decay_mask(opt.weight_decay_on)))
    rate = [optax.scale_by_learning_rate(schedule)]
    controller = plateau(opt)
    if controller is not None:
        rate.append(controller.transform())  # The plateau multiplier acts exactly where the rate acts.
    if opt.bias_lr_multiplier != 1.0:  # so does the bias multiplier (Caffe: lr_mult scales the rate)
        is_bias = functools.partial(_labels, fn=lambda p: p.rsplit('/', 1)[-1] == 'bias')
        rate.append(optax.masked(optax.scale(opt.bias_lr_multiplier), is_bias))
    if opt.name == 'adam':  # Adam's moments replace the momentum; the rate acts after them, as in optax.adam.
        momentum = [optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps)]
    else:
        momentum = [optax.trace(decay=opt.momentum, nesterov=opt.nesterov)] if opt.momentum else []
    parts += momentum + rate if velocity == 'lr_outside' else rate + momentum
    if opt.filter_rms_max:
        parts.append(transforms.renormalize_filters(opt.filter_rms_max))
    return optax.chain(*parts)
