"""Building blocks shared by the models.

- :func:`scaled_tanh`: LeCun et al. (1998) Appendix A squashing function ``f(a) = A tanh(S a)``.
- :func:`fan_in_uniform`: LeCun et al. (1998) Appendix C initialisation, uniform in ``[-2.4/F, 2.4/F]``.
- :class:`TrainableSubsampling`: LeNet-5's S-layers (Sec. II.B): 2x2 sum times a trainable coefficient plus a
  trainable bias, one of each per feature map.
- :class:`ConnectionTableConv`: a valid convolution in which each output map sees only the input maps its
  connection table allows, storing only the connected kernels as parameters (LeNet-5's C3, Table I).
- :func:`param_name`: naming convention for parameter-holding submodules.
- :class:`LocalResponseNorm`: AlexNet's local response normalisation across feature maps (Krizhevsky et al.
  2012, Sec. 3.3), with the paper's constants and its undivided ``alpha``; optionally per tower (``groups``).
- :func:`max_pool`: max pooling with an optional Caffe-style ``ceil_mode`` (ZF Net's Fig. 3 map sizes).
- :class:`FullyConnected`: a dense layer that can also slide over a feature map as a VALID convolution with the
  same parameters (VGG's dense evaluation, Simonyan and Zisserman 2014, Sec. 3.2).

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


def dropout_fc_head(module: nn.Module, x: Array, train: bool) -> Array:
    """fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8, on a flattened feature map.

    The AlexNet-family classifier: ``module`` holds ``fc6_layer``, ``fc7_layer``, ``fc8_layer`` and ``dropout``;
    the outputs of the first two fully connected layers are dropped in training (AlexNet sec. 4.2, ZF Net sec. 3).
    Sows 'fc6', 'fc7' (after ReLU) and 'fc8' (the logits) into ``module``'s intermediates.
    """
    for name in ("fc6", "fc7"):
        x = nn.relu(getattr(module, param_name(name))(x))
        module.sow("intermediates", name, x)
        x = module.dropout(x, deterministic=not train)
    logits = module.fc8_layer(x)
    module.sow("intermediates", "fc8", logits)
    return logits


def table_kernel(kernel: Array, table) -> Array:
    """The dense ``(kh, kw, n_in, n_out)`` kernel of a connection-table conv from its ``(kh, kw, n)`` parameter.

    Connections are ordered by output map, then input map; absent connections are the constant zero.
    """
    table = np.asarray(table, dtype=bool)
    out_idx, in_idx = np.nonzero(table.T)
    if kernel.ndim != 3 or kernel.shape[-1] != len(out_idx):
        raise ValueError(f"connection table with {len(out_idx)} connections and kernel {kernel.shape}")
    kh, kw, _ = kernel.shape
    return jnp.zeros((kh, kw) + table.shape, kernel.dtype).at[:, :, in_idx, out_idx].set(kernel)


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
        dense = table_kernel(kernel, table)
        y = lax.conv_general_dilated(
            x, dense, window_strides=(1, 1), padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + bias


class LocalResponseNorm(nn.Module):
    """Local response normalisation across feature maps (AlexNet, Sec. 3.3), channels last.

    b^i = a^i / (k + alpha * sum_{j = max(0, i - n/2)}^{min(N - 1, i + n/2)} (a^j)^2)^beta

    at every position, N the number of maps. The window is clipped at the first and last map (no wrap-around).
    Defaults are the paper's "k = 2, n = 5, alpha = 10^-4, and beta = 0.75". Unlike ``torch.nn.LocalResponseNorm``
    (and Caffe's LRN layer), ``alpha`` is NOT divided by ``n`` and ``k`` is the paper's 2, not 1.

    ``groups > 1`` splits the maps into that many contiguous blocks and normalises each block on its own, its
    window clipped at the block's edges: AlexNet's two-GPU net normalises each GPU's maps on that GPU, since "the
    GPUs communicate only in certain layers" (Sec. 3.2). ``n`` must be odd (the window is centred on map i).
    No parameters.
    """

    k: float = 2.0
    n: int = 5
    alpha: float = 1e-4
    beta: float = 0.75
    groups: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.n < 1 or self.n % 2 != 1:
            raise ValueError(f"LocalResponseNorm.n must be a positive odd number, got {self.n}")
        channels = x.shape[-1]
        if self.groups < 1 or channels % self.groups:
            raise ValueError(f"LocalResponseNorm: {channels} channels do not split into {self.groups} groups")
        half = self.n // 2
        # Squares and sums in float32 at least (mixed precision: float16 overflows at 256^2); result in x's dtype.
        wide = x.astype(jnp.promote_types(x.dtype, jnp.float32))
        sq = jnp.square(wide).reshape(x.shape[:-1] + (self.groups, channels // self.groups))
        # Zero padding of half a window on each side of every group clips the sum at the group's edges.
        window = (1,) * (sq.ndim - 1) + (self.n,)
        padding = ((0, 0),) * (sq.ndim - 1) + ((half, half),)
        # A Python-scalar 0 init lets JAX use its (differentiable) windowed-sum primitive.
        sums = lax.reduce_window(sq, 0.0, lax.add, window, (1,) * sq.ndim, padding)
        return (wide / jnp.power(self.k + self.alpha * sums.reshape(x.shape), self.beta)).astype(x.dtype)


def max_pool(x: Array, window: int, stride: int, ceil_mode: bool = False) -> Array:
    """Max pooling over the two spatial axes of an NHWC array, without padding.

    ``ceil_mode=False`` keeps only full windows (``floor((H - window) / stride) + 1`` outputs). ``ceil_mode=True``
    is Caffe's rounding, ``ceil((H - window) / stride) + 1`` outputs: the last window may hang over the bottom
    or right edge, where the missing inputs count as -inf.
    """
    pads = []
    for size in x.shape[1:3]:
        if size < 1 or (not ceil_mode and size < window):
            raise ValueError(f"max_pool: a {size}-pixel map is too small for a {window}x{window} window")
        out = (max(size - window, 0) + (stride - 1 if ceil_mode else 0)) // stride + 1
        pads.append((0, max((out - 1) * stride + window - size, 0)))
    return nn.max_pool(x, (window, window), strides=(stride, stride), padding=pads)


class FullyConnected(nn.Module):
    """A fully-connected layer whose kernel can also slide over a feature map as a convolution.

    Parameters are those of ``nn.Dense``: ``kernel`` of shape ``(fan_in, features)`` and ``bias``.

    - ``layer(x)``: ``x`` is ``(N, fan_in)``, the row-major (h, w, c) flattening of a feature map; the
      result is ``x @ kernel + bias``.
    - ``layer(x, window=(h, w))``: ``x`` is a map ``(N, H, W, c)`` with ``H >= h``, ``W >= w``; the kernel is
      reshaped to ``(h, w, c, features)`` and applied as a VALID, stride-1 convolution, giving a
      ``(N, H - h + 1, W - w + 1, features)`` map. Because the flattening is row-major over (h, w, c), the
      reshape is exact: on an ``h x w`` map the convolution's single output equals the dense layer's output.

    This is VGG's dense evaluation (Sec. 3.2): "the fully-connected layers are first converted to convolutional
    layers (the first FC layer to a 7 x 7 conv. layer, the last two FC layers to 1 x 1 conv. layers)", here with
    no conversion step: both modes read the same parameters.
    """

    features: int
    kernel_init: Initializer = nn.initializers.lecun_normal()
    bias_init: Initializer = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: Array, window: tuple[int, int] | None = None) -> Array:
        if window is None:
            fan_in = x.shape[-1]
        else:
            if x.ndim != 4:
                raise ValueError(f"FullyConnected with window={window} expects an NHWC map, got shape {x.shape}")
            h, w = window
            if x.shape[1] < h or x.shape[2] < w:
                raise ValueError(f"FullyConnected: a {x.shape[1]}x{x.shape[2]} map is smaller than the {h}x{w} window")
            fan_in = h * w * x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (fan_in, self.features))
        bias = self.param("bias", self.bias_init, (self.features,))
        if window is None:
            return jnp.dot(x, kernel) + bias
        conv_kernel = kernel.reshape(window + (x.shape[-1], self.features))
        y = lax.conv_general_dilated(
            x, conv_kernel, window_strides=(1, 1), padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        return y + bias
