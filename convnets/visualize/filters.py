"""First-layer filters as an image grid, and a per-layer summary of the sown activations.

Models sow each layer's output into the ``'intermediates'`` collection (values are 1-tuples) and keep that
layer's parameters under ``'<layer>_layer'`` (`convnets.models.layers.param_name`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from convnets.visualize import images as im


def intermediates(model: nn.Module, variables: Any, x: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(logits, {layer: activation}) of ``model`` on a batch, in the order the layers were sown."""
    logits, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    out = {}
    for name, value in state.get('intermediates', {}).items():
        value = value[0] if isinstance(value, tuple) else value
        if hasattr(value, 'shape'):  # Skip nested collections of submodules (not used by our models).
            out[name] = np.asarray(value)
    return np.asarray(logits), out


def spatial_layers(acts: dict[str, np.ndarray]) -> list[str]:
    """Names of the sown layers with NHWC outputs (conv / pooling / normalisation stages), in order."""
    return [name for name, a in acts.items() if a.ndim == 4]


def first_conv_kernel(variables: Any, layer_order: list[str] | None = None) -> tuple[str, np.ndarray]:
    """(layer, kernel [kh, kw, cin, cout]) of the first convolution.

    With ``layer_order`` (sown layer names in forward order) the first ``<layer>_layer`` holding a 4-D kernel
    is taken; otherwise (or if none matches) the first 4-D ``kernel`` found in the parameter tree.
    """
    params = variables['params']
    for name in layer_order or []:
        sub = params.get(f'{name}_layer')
        if isinstance(sub, dict) and 'kernel' in sub and np.ndim(sub['kernel']) == 4:
            return name, np.asarray(sub['kernel'])
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        if getattr(path[-1], 'key', None) == 'kernel' and np.ndim(leaf) == 4:
            name = str(getattr(path[0], 'key', path[0]))
            return name.removesuffix('_layer'), np.asarray(leaf)
    raise ValueError('the model has no 4-D convolution kernel')


def filter_grid(kernel: np.ndarray, pad: int = 1, cols: int | None = None) -> np.ndarray:
    """The filters of a conv kernel ``[kh, kw, cin, cout]`` as a uint8 grid of ``cout`` tiles.

    Each tile is one filter scaled on its own to [0, 255] (its min -> 0, max -> 255; a constant filter -> 0).
    ``cin == 3``: RGB tiles (``HxWx3``); ``cin == 1``: grey (``HxWx1``); otherwise the mean over input channels
    (grey). Tiles are ``pad`` white pixels apart and from the border, in a near-square grid (`images.tile`).
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 4:
        raise ValueError(f'filter_grid expects a [kh, kw, cin, cout] kernel, got shape {kernel.shape}')
    if kernel.shape[2] not in (1, 3):
        kernel = kernel.mean(axis=2, keepdims=True)
    tiles = [im.to_uint8(kernel[..., k]) for k in range(kernel.shape[-1])]
    return im.tile(tiles, cols=cols, pad=pad, pad_value=255)


def activation_summary(acts: dict[str, np.ndarray], mask: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Per-layer statistics of sown activations over a batch (rows with ``mask == 0`` left out).

    For each layer: shape (per example), mean, std, min, max, ``frac_zero`` (|a| <= 1e-6: dead ReLU units) and
    ``frac_saturated`` (|a| >= 0.95 max|a| over the layer: e.g. tanh units at their asymptote).
    """
    rows = []
    for name, a in acts.items():
        a = np.asarray(a, np.float64)
        if mask is not None:
            a = a[np.asarray(mask) > 0]
        peak = float(np.max(np.abs(a))) if a.size else 0.0
        rows.append({
            'layer': name, 'shape': tuple(int(d) for d in a.shape[1:]),
            'mean': float(a.mean()), 'std': float(a.std()), 'min': float(a.min()), 'max': float(a.max()),
            'frac_zero': float(np.mean(np.abs(a) <= 1e-6)),
            'frac_saturated': float(np.mean(np.abs(a) >= 0.95 * peak)) if peak > 0 else 0.0,
        })
    return rows


def feature_maps(act: np.ndarray, pad: int = 1, max_maps: int = 64) -> np.ndarray:
    """One example's feature maps ``[H, W, C]`` as a grey grid, each map scaled on its own (first ``max_maps``)."""
    act = np.asarray(act)
    return im.tile([im.to_uint8(act[..., k])[..., None] for k in range(min(act.shape[-1], max_maps))], pad=pad)


# --- Top-k activations (Zeiler and Fergus Fig. 4) and receptive fields ------------------------------------------


def top_activations(acts: np.ndarray, features: list[int], k: int = 9,
                    mask: np.ndarray | None = None) -> dict[int, list[tuple[int, int, int, float]]]:
    """For each feature map: the ``k`` images with the strongest activation (max over positions).

    ``acts``: one layer's activations over the images [N, H, W, C]. Returns ``{feature: [(image index, y, x,
    value), ...]}``, strongest first, with ``(y, x)`` the position of that image's maximum.
    """
    acts = np.asarray(acts)
    n, h, w, _ = acts.shape
    valid = np.ones(n, bool) if mask is None else np.asarray(mask) > 0
    out = {}
    for f in features:
        flat = acts[..., f].reshape(n, h * w)
        pos = np.argmax(flat, axis=1)
        best = np.where(valid, flat[np.arange(n), pos], -np.inf)
        order = [int(i) for i in np.argsort(-best, kind='stable')[:k] if valid[i]]
        out[f] = [(i, int(pos[i] // w), int(pos[i] % w), float(best[i])) for i in order]
    return out


def receptive_field(model: nn.Module, variables: Any, image_shape: tuple[int, int, int], layer: str,
                    num_probes: int = 16, seed: int = 0) -> dict[str, tuple[int, int]]:
    """Receptive field of ``layer``'s units by the gradient-support trick.

    The input pixels a unit depends on are the non-zero support of d(unit) / d(input). A single input can hide
    part of it (a max pool passes one pixel of its window, a dead ReLU none), so the support is the union over
    ``num_probes`` random inputs and over all feature maps (random cotangent). Measured at the centre unit and
    its lower-right neighbour (away from the borders) it gives ``size``, ``stride`` and ``offset`` per axis:
    unit ``(y, x)`` sees rows ``[y * stride[0] + offset[0], ... + size[0])`` (clip to the image).
    """
    h, w, c = image_shape
    shape = jax.eval_shape(lambda x: filter_intermediate(model, variables, x, layer), jnp.zeros((1, h, w, c)))
    oh, ow = shape.shape[1], shape.shape[2]
    keys = jax.random.split(jax.random.key(seed), 2)
    probes = jax.random.normal(keys[0], (num_probes, h, w, c))
    cot = jax.random.normal(keys[1], (num_probes, shape.shape[-1]))

    def support(y: int, x: int) -> np.ndarray:
        def unit(inp):
            return jnp.sum(filter_intermediate(model, variables, inp, layer)[:, y, x, :] * cot)
        return np.asarray(jnp.any(jax.grad(unit)(probes) != 0, axis=(0, 3)))

    def extent(sup: np.ndarray, axis: int) -> tuple[int, int]:
        idx = np.nonzero(np.any(sup, axis=1 - axis))[0]
        return (int(idx[0]), int(idx[-1]) + 1) if idx.size else (0, sup.shape[axis])

    cy, cx = oh // 2, ow // 2
    centre = support(cy, cx)
    nxt = support(min(cy + 1, oh - 1), min(cx + 1, ow - 1))
    size, stride, offset = [], [], []
    for axis, (pos, n_out) in enumerate(((cy, oh), (cx, ow))):
        lo, hi = extent(centre, axis)
        lo2, _ = extent(nxt, axis)
        s = max(1, lo2 - lo) if n_out > 1 else 1
        size.append(hi - lo)
        stride.append(s)
        offset.append(lo - pos * s)
    return {'size': tuple(size), 'stride': tuple(stride), 'offset': tuple(offset)}


def filter_intermediate(model: nn.Module, variables: Any, x: jax.Array, layer: str) -> jax.Array:
    """One sown layer's output (traceable, for gradients)."""
    _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    value = state['intermediates'][layer]
    return value[0] if isinstance(value, tuple) else value


def crop_field(image: np.ndarray, field: dict[str, tuple[int, int]], y: int, x: int,
               fill: float = 0.0) -> np.ndarray:
    """The receptive field of unit ``(y, x)`` cut from ``image`` [H, W, C]; parts outside the image are ``fill``."""
    (sh, sw), (th, tw), (oy, ox) = field['size'], field['stride'], field['offset']
    top, left = y * th + oy, x * tw + ox
    out = np.full((sh, sw, image.shape[-1]), fill, np.float32)
    r0, r1 = max(top, 0), min(top + sh, image.shape[0])
    c0, c1 = max(left, 0), min(left + sw, image.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0 - top:r1 - top, c0 - left:c1 - left] = image[r0:r1, c0:c1]
    return out
