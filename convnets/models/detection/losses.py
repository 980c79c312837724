"""Losses of the R-CNN family."""

from __future__ import annotations

import jax.numpy as jnp
from jax import Array


def smooth_l1(x: Array, beta: float = 1.0) -> Array:
    """Elementwise smooth L1 of Fast R-CNN eq. 3: ``0.5 x^2 / beta`` if ``|x| < beta``, else ``|x| - 0.5 beta``.

    ``beta=1`` is the paper's loss. py-faster-rcnn's ``SmoothL1Loss`` layer writes it with ``sigma`` (the RPN uses
    sigma 3): ``beta = 1 / sigma**2``. ``beta=0`` is plain L1. Quadratic near 0, so its gradient is bounded by 1 and
    finite everywhere; sum or mean it yourself, with a foreground mask (multiplying a finite value by 0).
    """
    ax = jnp.abs(x)
    if beta <= 0:
        return ax
    return jnp.where(ax < beta, 0.5 * x * x / beta, ax - 0.5 * beta)
