"""Optax transformations the papers need beyond plain SGD.

- `Plateau`: "divide the learning rate by 10 when the validation error stops improving" (AlexNet sec. 5, ZF Net
  sec. 3, VGG sec. 3.1). The decision rule is optax.contrib.reduce_on_plateau's, but it is driven by the
  evaluation metric rather than the training loss: inside the train step the transform only multiplies by the
  current scale, and `Plateau.report` advances the bookkeeping once per evaluation. Its state lives in the optimiser
  state, so it is checkpointed and resumed with everything else.
- `renormalize_filters`: ZF Net sec. 3, "we renormalize each filter in the convolutional layers whose RMS value
  exceeds a fixed radius of 10^-1 to this fixed radius" — a projection applied after each update.
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from optax.contrib import ReduceLROnPlateauState


def _is_plateau_state(x: Any) -> bool:
    return isinstance(x, ReduceLROnPlateauState)


@dataclasses.dataclass(frozen=True)
class Plateau:
    """Learning-rate multiplier that drops by `factor` after `patience` evaluations without improvement.

    Improvement means the reported value (lower is better, e.g. top-1 error) fell below the best so far by more
    than `rtol` relative; after a drop, `cooldown` evaluations pass before counting again.
    """

    factor: float = 0.1
    patience: int = 1
    rtol: float = 1e-4
    cooldown: int = 0
    min_scale: float = 0.0

    def _rop(self) -> optax.GradientTransformationExtraArgs:
        return optax.contrib.reduce_on_plateau(factor=self.factor, patience=self.patience, rtol=self.rtol,
                                               cooldown=self.cooldown, accumulation_size=1,
                                               min_scale=self.min_scale)

    def transform(self) -> optax.GradientTransformation:
        """Scales updates by the current multiplier (place it where the learning rate is applied)."""

        def update(updates, state, params=None):
            del params
            return jax.tree.map(lambda u: (state.scale * u).astype(u.dtype), updates), state

        return optax.GradientTransformation(self._rop().init, update)

    def report(self, opt_state: Any, value: jax.Array) -> Any:
        """Feeds one evaluation's value to the plateau state inside `opt_state`; returns the new opt_state."""
        rop = self._rop()
        return jax.tree.map(lambda s: rop.update({}, s, value=value)[1] if _is_plateau_state(s) else s,
                            opt_state, is_leaf=_is_plateau_state)


def rate_multiplier(opt_state: Any) -> jax.Array:
    """The current plateau multiplier of the learning rate (1 if the optimiser has no plateau controller)."""
    states = [s for s in jax.tree.leaves(opt_state, is_leaf=_is_plateau_state) if _is_plateau_state(s)]
    return states[0].scale if states else jnp.ones((), jnp.float32)


class RenormState(NamedTuple):
    """Stateless."""


def renormalize_filters(max_rms: float) -> optax.GradientTransformation:
    """Rewrites the update so that every conv filter of the new parameters has RMS <= max_rms (ZF Net sec. 3).

    A conv kernel is a 4-D (H, W, in, out) array; filter j is kernel[..., j]. Filters already within the radius and
    all other parameters are left exactly as the preceding update made them.
    """

    def project(w: jax.Array) -> jax.Array:
        rms = jnp.sqrt(jnp.mean(jnp.square(w), axis=(0, 1, 2), keepdims=True))
        return jnp.where(rms > max_rms, w * (max_rms / jnp.maximum(rms, 1e-30)), w)

    def update(updates, state, params=None):
        if params is None:
            raise ValueError('renormalize_filters needs the parameters: call tx.update(grads, state, params).')
        return jax.tree.map(lambda p, u: project(p + u) - p if p.ndim == 4 else u, params, updates), state

    return optax.GradientTransformation(lambda params: RenormState(), update)
