"""DeconvNet (Zeiler and Fergus 2013, Sec. 2.1): project one feature map of a conv layer back to pixel space.

One generic implementation for every model that declares its stages (``deconv_stages()``, next to its
``__call__``; read through :func:`convnets.visualize.stages.describe`) as a list of Conv / ReLU / MaxPool / Norm /
Subsample / Squash stages (:mod:`convnets.models.deconv_stages`): convnet, AlexNet with one or two towers, ZF Net,
VGG A-E, LeNet-5.

Forward: the model's own ``apply`` with ``mutable=['intermediates']``; the activations are read from the sown
intermediates, and every max pool's switches are recomputed from its sown input by :func:`max_pool_with_switches`.

Backward (``project``), starting from the chosen layer's activation (after its ReLU, as in the paper) with every
feature map but ``feature`` set to zero (``mode='all'``: all positions of that map; ``mode='max'``: only its
strongest position, per image), then, for each lower stage in reverse order:

- MaxPool -> :func:`unpool` with the recorded switches (each value goes back to the position of the max it came
  from, zeros elsewhere; where overlapping windows chose the same position the values add);
- ReLU -> rectification of the signal, ``max(signal, 0)``;
- Conv -> the transposed filters of the same layer: the transpose of the convolution (same strides, padding and
  ``feature_group_count``, so AlexNet's towers stay separate), written as a convolution of the stride-dilated
  signal with the spatially flipped, in/out-swapped kernels. The conv bias is not used;
- Norm (LRN / contrast normalisation) -> passed through unchanged, as the ZF paper's DeconvNet does;
- Subsample (LeNet-5's S2, S4) -> the transpose of its linear part: each value spread over its window, times the
  map's trainable coefficient (the bias is not used, like the conv biases);
- Squash (LeNet-5's scaled tanh) -> treated as the rectification step, ``max(signal, 0)``: the ZF paper rectifies
  the signal to keep the reconstructions positive, and tanh has no switch-free inverse. (The independent
  formulation in the tests makes the same choice: the gradient with tanh's backward replaced by ReLU of the signal.)

A Conv with a connection table (LeNet-5's C3) is transposed with its full ``(kh, kw, n_in, n_out)`` kernel, zero
where the table has no connection, scattered from the ``(kh, kw, n)`` parameter as the model does.

Switch tie rule: the first maximum in row-major order within the window (``jnp.argmax``), the same position that
JAX's gradient of ``reduce_window`` max picks. Padding (``ceil_mode``) counts as -inf and is never chosen.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convnets.models.deconv_stages import Conv, MaxPool, Norm, ReLU, Squash, Stage, Subsample
from convnets.models.layers import param_name, table_kernel
from convnets.visualize.stages import describe

Array = jax.Array
MODES = ("all", "max")


def _pool_pads(size: int, window: int, stride: int, padding) -> tuple[int, int]:
    if padding == "VALID":
        return (0, 0)
    if padding == "CEIL":  # Caffe rounding, as convnets.models.layers.max_pool(ceil_mode=True)
        out = (max(size - window, 0) + stride - 1) // stride + 1
        return (0, max((out - 1) * stride + window - size, 0))
    raise ValueError(f"padding must be 'VALID', 'CEIL' or ((lo, hi), (lo, hi)), got {padding!r}")


def max_pool_with_switches(x: Array, window: int, stride: int, padding="VALID") -> tuple[Array, Array]:
    """Max pooling of an NHWC array that also returns the switches.

    ``padding``: 'VALID', 'CEIL' (Caffe's ``ceil_mode``) or explicit ``((top, bottom), (left, right))``; padded
    positions count as -inf. Returns ``(pooled, switches)``, both ``[N, Ho, Wo, C]``; ``switches`` holds the flat
    spatial index ``h * W + w`` (in the unpadded input) of each window's maximum, the first one in row-major
    window order on ties.
    """
    n, h, w, c = x.shape
    if isinstance(padding, str):
        pads = [_pool_pads(h, window, stride, padding), _pool_pads(w, window, stride, padding)]
    else:
        pads = [tuple(p) for p in padding]
    xp = jnp.pad(x, ((0, 0), pads[0], pads[1], (0, 0)), constant_values=-jnp.inf)
    ho = (xp.shape[1] - window) // stride + 1
    wo = (xp.shape[2] - window) // stride + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"max_pool_with_switches: a {h}x{w} map is too small for a {window}x{window} window")
    # All window offsets, in row-major order (a, b): patches[..., a * window + b] = xp[:, a + s*i, b + s*j, :].
    patches = jnp.stack(
        [
            xp[:, a : a + stride * (ho - 1) + 1 : stride, b : b + stride * (wo - 1) + 1 : stride, :]
            for a in range(window)
            for b in range(window)
        ],
        axis=-1,
    )
    offset = jnp.argmax(patches, axis=-1)  # first maximum on ties
    pooled = jnp.take_along_axis(patches, offset[..., None], axis=-1)[..., 0]
    rows = jnp.arange(ho)[None, :, None, None] * stride + offset // window - pads[0][0]
    cols = jnp.arange(wo)[None, None, :, None] * stride + offset % window - pads[1][0]
    return pooled, rows * w + cols


def unpool(values: Array, switches: Array, input_shape: Sequence[int]) -> Array:
    """Inverse of :func:`max_pool_with_switches`: each value back at its switch position, zeros elsewhere.

    ``values`` and ``switches`` are ``[N, Ho, Wo, C]``; the result has ``input_shape`` ``[N, H, W, C]``. Values of
    overlapping windows that chose the same position are added.
    """
    n, h, w, c = input_shape
    if values.shape != switches.shape or values.shape[0] != n or values.shape[-1] != c:
        raise ValueError(f"unpool: values {values.shape}, switches {switches.shape}, input_shape {tuple(input_shape)}")
    flat_vals = values.reshape(n, -1, c)
    flat_sw = switches.reshape(n, -1, c)
    batch = jnp.arange(n)[:, None, None]
    chan = jnp.arange(c)[None, None, :]
    out = jnp.zeros((n, h * w, c), values.dtype).at[batch, flat_sw, chan].add(flat_vals)
    return out.reshape(n, h, w, c)


def _conv_pads(conv: Conv, in_hw: Sequence[int], k_hw: Sequence[int]) -> list[tuple[int, int]]:
    if isinstance(conv.padding, str):
        return list(lax.padtype_to_pads(tuple(in_hw), tuple(k_hw), conv.strides, conv.padding))
    return [tuple(p) for p in conv.padding]


def conv_transpose(y: Array, kernel: Array, conv: Conv, input_shape: Sequence[int]) -> Array:
    """Transpose of the convolution ``conv`` (kernel ``[kh, kw, Cin/g, Cout]``) applied to ``y``, shaped as its input.

    A convolution of ``y`` dilated by the strides with the spatially flipped kernel whose input and output channels
    are swapped within each of the ``g`` groups; the padding makes the result exactly ``input_shape``.
    """
    kh, kw, in_per_group, cout = kernel.shape
    cin = input_shape[-1]
    if cin % in_per_group:
        raise ValueError(f"conv {conv.layer}: input with {cin} channels and kernel {kernel.shape}")
    groups = cin // in_per_group
    # (kh, kw, Ig, g*Og) -> (kh, kw, Og, g*Ig), spatially flipped.
    k = kernel.reshape(kh, kw, in_per_group, groups, cout // groups)
    k = jnp.transpose(k, (0, 1, 4, 3, 2)).reshape(kh, kw, cout // groups, cin)[::-1, ::-1]
    pads = _conv_pads(conv, input_shape[1:3], (kh, kw))
    tpads = []
    for size, ksize, stride, (lo, _), out in zip(
        input_shape[1:3], (kh, kw), conv.strides, pads, y.shape[1:3], strict=True
    ):
        tpads.append((ksize - 1 - lo, size + lo - (out - 1) * stride - 1))
    return lax.conv_general_dilated(
        y, k.astype(y.dtype), window_strides=(1, 1), padding=tpads, lhs_dilation=tuple(conv.strides),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=groups,
    )


def subsample_transpose(y: Array, coeff: Array, window: int, input_shape: Sequence[int]) -> Array:
    """Transpose of LeNet's subsampling (window sums times a per-map ``coeff``), shaped as its input.

    Each value goes to every position of its non-overlapping ``window x window`` field, times its map's
    coefficient; rows and columns the VALID windows left out get zero.
    """
    up = jnp.repeat(jnp.repeat(y * coeff.astype(y.dtype), window, axis=1), window, axis=2)
    h, w = input_shape[1:3]
    if up.shape[1] > h or up.shape[2] > w:
        raise ValueError(f"subsample: output {y.shape} does not fit input_shape {tuple(input_shape)}")
    return jnp.pad(up, ((0, 0), (0, h - up.shape[1]), (0, w - up.shape[2]), (0, 0)))


def _activation_index(stages: Sequence[Stage]) -> dict[str, int]:
    """Conv layer name -> index of the stage whose output is its activation (its ReLU / Squash, else the conv)."""
    index = {}
    for i, stage in enumerate(stages):
        if isinstance(stage, Conv):
            relu_follows = i + 1 < len(stages) and isinstance(stages[i + 1], (ReLU, Squash))
            index[stage.layer] = i + 1 if relu_follows else i
    return index


def supported(model: nn.Module) -> bool:
    """Whether :func:`project` can handle ``model``."""
    try:
        describe(model)
    except (NotImplementedError, ValueError):
        return False
    return True


def layer_names(model: nn.Module, stages: Sequence[Stage] | None = None) -> list[str]:
    """The projectable layers of ``model``: its conv layers, in order, named as sown (e.g. 'conv1', 'conv3_1', 'C3')."""
    return list(_activation_index(describe(model) if stages is None else stages))


def _sown(intermediates: dict, name: str) -> Array:
    if name not in intermediates:
        raise KeyError(f"DeconvNet: the model did not sow {name!r}; sown: {sorted(intermediates)}")
    return intermediates[name][0]


def project(
    model: nn.Module,
    variables: dict,
    images: Array,
    layer: str,
    feature: int,
    mode: str = "all",
    stages: Sequence[Stage] | None = None,
) -> Array:
    """DeconvNet projection of feature map ``feature`` of conv layer ``layer`` back to pixels, ``[N, H, W, C]``.

    ``mode='all'`` keeps every position of that map, ``mode='max'`` only its strongest one (per image), the
    paper's top-activation view. ``stages`` overrides the model's own (``model.deconv_stages()``).
    The model runs in inference mode (``train=False``).
    """
    stages = list(describe(model) if stages is None else stages)
    index = _activation_index(stages)
    if layer not in index:
        raise ValueError(f"DeconvNet: unknown layer {layer!r} for {type(model).__name__}; valid: {list(index)}")
    if mode not in MODES:
        raise ValueError(f"DeconvNet: mode must be one of {MODES}, got {mode!r}")
    images = jnp.asarray(images)
    _, state = model.apply(variables, images, train=False, mutable=["intermediates"])
    inter = state["intermediates"]
    top = index[layer]
    stages = stages[: top + 1]

    # Forward shapes: the input of every stage, from the image and the sown outputs. Max-pool switches come from
    # the pool's input, so every pool must follow a stage whose output is sown.
    inputs: list[Array | None] = []
    current: Array | None = images
    for stage in stages:
        inputs.append(current)
        current = _sown(inter, stage.sown) if stage.sown is not None else None
    act = current
    if act is None:
        raise ValueError(f"DeconvNet: the activation of layer {layer!r} is not sown")

    n_maps = act.shape[-1]
    if not 0 <= feature < n_maps:
        raise ValueError(f"DeconvNet: feature {feature} out of range for {layer!r} ({n_maps} maps)")
    signal = jnp.zeros_like(act).at[..., feature].set(act[..., feature])
    if mode == "max":
        fmap = act[..., feature].reshape(act.shape[0], -1)
        onehot = jax.nn.one_hot(jnp.argmax(fmap, axis=1), fmap.shape[1], dtype=act.dtype)
        signal = signal * onehot.reshape(act.shape[:-1])[..., None]

    params = variables["params"]
    for i in range(len(stages) - 1, -1, -1):
        stage, x_in = stages[i], inputs[i]
        if isinstance(stage, MaxPool):
            if x_in is None:
                raise ValueError(f"DeconvNet: the input of max pool {stage.sown!r} is not sown; switches need it")
            padding = "CEIL" if stage.ceil_mode else "VALID"
            _, switches = max_pool_with_switches(x_in, stage.window, stage.stride, padding)
            signal = unpool(signal, switches, x_in.shape)
        elif isinstance(stage, (ReLU, Squash)):
            signal = jax.nn.relu(signal)  # Squash: the ZF rectification step (see the module docstring)
        elif isinstance(stage, Norm):
            pass  # passed through unchanged (Zeiler and Fergus 2013, Sec. 2.1)
        elif isinstance(stage, Conv):
            if x_in is None:
                raise ValueError(f"DeconvNet: the input of conv {stage.layer!r} is not sown")
            kernel = params[param_name(stage.layer)]["kernel"]
            if stage.table is not None:
                kernel = table_kernel(kernel, stage.table)
            signal = conv_transpose(signal, kernel, stage, x_in.shape)
        elif isinstance(stage, Subsample):
            if x_in is None:
                raise ValueError(f"DeconvNet: the input of subsampling {stage.layer!r} is not sown")
            coeff = params[param_name(stage.layer)]["coeff"]
            signal = subsample_transpose(signal, coeff, stage.window, x_in.shape)
        else:
            raise TypeError(f"DeconvNet: unknown stage {stage!r}")
    return signal


def top_activation(model: nn.Module, variables: dict, images: Array, layer: str) -> np.ndarray:
    """Per image and feature map of ``layer``, its strongest activation ``[N, C]`` (for top-9 searches)."""
    stages = describe(model)
    index = _activation_index(stages)
    if layer not in index:
        raise ValueError(f"DeconvNet: unknown layer {layer!r} for {type(model).__name__}; valid: {list(index)}")
    stage = stages[index[layer]]
    _, state = model.apply(variables, jnp.asarray(images), train=False, mutable=["intermediates"])
    act = _sown(state["intermediates"], stage.sown)
    return np.asarray(jnp.max(act, axis=(1, 2)))
