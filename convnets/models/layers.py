"""Building blocks shared by the models.

- :func:`scaled_tanh`: LeCun et al. (1998) Appendix A squashing function ``f(a) = A tanh(S a)``.
- :func:`fan_in_uniform`: LeCun et al. (1998) Appendix C initialisation, uniform in ``[-2.4/F, 2.4/F]``.
- :class:`TrainableSubsampling`: LeNet-5's S-layers (Sec. II.B): 2x2 sum times a trainable coefficient plus a
  trainable bias, one of each per feature map.
- :class:`ConnectionTableConv`: a valid convolution in which each output map sees only the input maps its
  connection table allows, storing only the connected kernels as parameters (LeNet-5's C3, Table I).
- :func:`param_name`: naming convention for parameter-holding submodules.

Naming convention: models ``sow`` the output of layer ``L`` into the ``intermediates`` collection under the
name ``L`` (e.g. ``'conv1'``, ``'C3'``). Flax forbids a variable and a submodule sharing a name in one scope,
so the submodule holding that layer's parameters is named ``param_name(L) == L + '_layer'``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array
Initializer = nn.initializers.Initializer

# Appendix A: "A is chosen to be 1.7159"; S = 2/3. With these, f(1) = 1 and f(-1) = -1, the second
# derivative of f is maximal at +-1, and the gain near the origin is close to 1.
LECUN_A: float = 1.7159
LECUN_S: float = 2.0 / 3.0

# Appendix C: weights drawn uniformly in [-2.4/F_i, 2.4/F_i], F_i the fan-in of the unit.
LECUN_INIT_SCALE: float = 2.4


def param_name(layer: str) -> str:
    """Name of the submodule holding the parameters of the layer whose output is sown as ``layer``."""
    return f"{layer}_layer"


def scaled_tanh(x: Array) -> Array:
    """LeCun's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3 (1998, Appendix A)."""
    return LECUN_A * jnp.tanh(LECUN_S * x)


def uniform_symmetric(bound: float | Array) -> Initializer:
    """Initializer drawing uniformly in ``[-bound, bound]``; ``bound`` may broadcast against the shape."""

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        u = jax.random.uniform(key, tuple(shape), dtype, minval=-1.0, maxval=1.0)
        return u * jnp.asarray(bound, dtype)

    return init


def fan_in_uniform(scale: float = LECUN_INIT_SCALE) -> Initializer:
    """Appendix C initialisation: uniform in ``[-scale/F, scale/F]``, F = fan-in.

    The fan-in is the product of all but the last dimension of the kernel, which is right for
    ``nn.Dense`` (in, out) and ``nn.Conv`` (kh, kw, in, out) kernels.
    """

    def init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
        fan_in = math.prod(shape[:-1])
        return uniform_symmetric(scale / fan_in)(key, shape, dtype)

    return init


class TrainableSubsampling(nn.Module):
    """LeNet-5 subsampling layer (S2, S4), without its squashing function.

    Sec. II.B: "The four inputs to a unit in S2 are added, then multiplied by a trainable coefficient, and
    added to a trainable bias." One coefficient and one bias per feature map; the 2x2 receptive fields do
    not overlap. The caller applies the sigmoid (``scaled_tanh``) afterwards.

    Initialisation: the paper's Appendix C fan-in rule applied to a unit with four inputs, i.e. the
    coefficient is uniform in [-2.4/4, 2.4/4] = [-0.6, 0.6]; the bias is zero. (A coefficient near zero only
    slows its map down: the rule is kept for faithfulness.)
    """

    window: int = 2

    @nn.compact
    def __call__(self, x: Array) -> Array:
        channels = x.shape[-1]
        w = self.window
        coeff = self.param("coeff", uniform_symmetric(LECUN_INIT_SCALE / (w * w)), (channels,))
        bias = self.param("bias", nn.initializers.zeros_init(), (channels,))
        summed = nn.pool(x, 0.0, lax.add, (w, w), (w, w), "VALID")
        return summed * coeff + bias


class ConnectionTableConv(nn.Module):
    """'VALID' convolution with a fixed input-map -> output-map connection table.

    ``table[i][j]`` is True when output map ``j`` sees input map ``i``. Only the connected ``kh x kw``
    kernels are parameters: ``kernel`` has shape ``(kh, kw, n_connections)`` (connections ordered by output
    map, then input map) and is scattered into a dense ``(kh, kw, n_in, n_out)`` kernel whose other entries
    are the constant zero, so the parameter count is the paper's and gradients never reach absent
    connections. ``bias`` has one entry per output map.

    Initialisation (Appendix C), exact per output map: the fan-in of a unit of map ``j`` is
    ``kh * kw * (number of input maps connected to j)``; biases are zero.
    """

    table: tuple[tuple[bool, ...], ...]
    kernel_size: tuple[int, int] = (5, 5)
    init_scale: float = LECUN_INIT_SCALE

    @nn.compact
    def __call__(self, x: Array) -> Array:
        table = np.asarray(self.table, dtype=bool)
        n_in, n_out = table.shape
        if x.shape[-1] != n_in:
            raise ValueError(f"Connection table expects {n_in} input maps, got input of shape {x.shape}")
        kh, kw = self.kernel_size
        out_idx, in_idx = np.nonzero(table.T)  # ordered by output map, then input map
        fan_in = kh * kw * table.sum(axis=0)[out_idx]  # per connection: fan-in of its output map's units
        kernel = self.param("kernel", uniform_symmetric(self.init_scale / fan_in), (kh, kw, len(out_idx)))
        bias = self.param("bias", nn.initializers.zeros_init(), (n_out,))
        dense = jnp.zeros((kh, kw, n_in, n_out), kernel.dtype).at[:, :, in_idx, out_idx].set(kernel)
        y = lax.conv_general_dilated(
            x, dense, window_strides=(1, 1), padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + bias
