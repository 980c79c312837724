"""RoI pooling: Fast R-CNN's RoI max pooling (sec. 2.1) and Mask R-CNN's RoIAlign, jit-able and vmap-able.

Features are channels-last: one image ``[H, W, C]``, or a batch ``[B, H, W, C]`` with ``batch_indices [R]`` naming
the image of each RoI (or ``jax.vmap`` over images with per-image RoIs ``[B, R, 4]``). RoIs ``[R, 4]`` are boxes
``(y1, x1, y2, x2)`` in input-image pixels (pixel edges, as everywhere in ``convnets.models.detection``);
``spatial_scale`` maps them onto the feature map (1/16 for VGG16's conv5_3 and AlexNet's conv5).

RoI max pooling follows the authors' Caffe layer (rbgirshick/caffe-fast-rcnn, src/caffe/layers/
roi_pooling_layer.cpp, Forward_cpu / Backward_cpu), in float32 like it:

* RoI corners ``round(x * spatial_scale)`` with C's round (halves away from zero) on the layer's inclusive pixel
  indices (``x2`` = last pixel; an edge box's ``x2 - 1``, see ``pixel_offset``);
* RoI size ``max(end - start + 1, 1)`` cells (malformed RoIs become 1x1), bin size ``size / pooled``;
* bin ``p`` spans cells ``[floor(p * bin), ceil((p + 1) * bin))`` from the RoI start, clipped to the map; an empty
  bin (wholly outside the map) outputs 0 and passes no gradient;
* the output is the maximum of the bin; its gradient goes entirely to the FIRST maximal cell in row-major order
  (Caffe scans rows then columns and replaces only on a strictly greater value). ``jnp.max``'s own gradient would
  split ties evenly, hence the custom VJP; RoIs get no gradient (they are quantised).

How: a 2D sparse table of (max, first argmax) over ``2^a x 2^b`` windows of the map, built once per image
(levels up to the map size, so any bin is covered exactly), answers every bin with 4 overlapping windows. The work
is O(H W C log H log W) per image plus O(R C) per bin, instead of O(R H W C) for masked maxima over the map.
Without differentiation (test time) only the table of maxima is built, not the argmax one. Memory: the tables
hold (floor(log2 h) + 1) x (floor(log2 w) + 1) copies of the map (values, int32 indices): 2 x 176 MB per image at
VGG16's 38x63x512 conv5_3 (600x1000), 2 x 1.6 GB for a 125x125 map (a 2000-pixel pyramid canvas).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array, lax


def _caffe_round(x: Array) -> Array:
    """C's ``round``: halves away from zero (``jnp.round`` rounds halves to even)."""
    return jnp.sign(x) * jnp.floor(jnp.abs(x) + 0.5)


def _quantise(start: Array, end: Array, scale: float, pooled: int, size: int) -> tuple[Array, Array]:
    """Bin starts and ends ``[R, pooled]`` (cells, clipped to ``[0, size]``) of RoIs ``[start, end]`` (inclusive px)."""
    f32 = jnp.float32
    scale = f32(scale)
    # Clip before the int cast: absurd coordinates must not overflow int32 (the Caffe layer would).
    lo = jnp.clip(_caffe_round(start.astype(f32) * scale), -(2**24), 2**24).astype(jnp.int32)
    hi = jnp.clip(_caffe_round(end.astype(f32) * scale), -(2**24), 2**24).astype(jnp.int32)
    length = jnp.maximum(hi - lo + 1, 1)
    # The barrier keeps XLA from rewriting ``/ pooled`` as ``* (1 / pooled)``, which rounds differently in float32
    # and then moves bin edges that fall on integers (e.g. 7 * fl(6 / 7) is exactly 6 in Caffe's arithmetic).
    bin_size = length.astype(f32) / lax.optimization_barrier(jnp.full(length.shape, pooled, f32))
    p = jnp.arange(pooled, dtype=f32)
    bin_start = jnp.floor(p[None, :] * bin_size[:, None]).astype(jnp.int32) + lo[:, None]
    bin_end = jnp.ceil((p[None, :] + 1) * bin_size[:, None]).astype(jnp.int32) + lo[:, None]
    return jnp.clip(bin_start, 0, size), jnp.clip(bin_end, 0, size)


def _combine(va: Array, ia: Array, vb: Array, ib: Array) -> tuple[Array, Array]:
    """Larger value; on equal values the smaller flat index (the first maximum in Caffe's scan order)."""
    take_b = (vb > va) | ((vb == va) & (ib < ia))
    return jnp.where(take_b, vb, va), jnp.where(take_b, ib, ia)


def _shift(x: Array, d: int, axis: int, fill) -> Array:
    """``x`` moved ``d`` places towards index 0 along ``axis``, filled with ``fill`` at the end."""
    pad = [(0, 0)] * x.ndim
    pad[axis] = (0, d)
    return jnp.pad(lax.slice_in_dim(x, d, x.shape[axis], axis=axis), pad, constant_values=fill)


def _levels(n: int) -> int:
    return int(np.floor(np.log2(n))) + 1


def _first_max(va: Array, ia: Array, vb: Array, ib: Array) -> tuple[Array, Array]:
    """Larger value; on equal values ``a``, correct when every cell of ``a`` precedes every cell of ``b``."""
    take_b = vb > va
    return jnp.where(take_b, vb, va), jnp.where(take_b, ib, ia)


def _max_table(features: Array) -> Array:
    """Values only of :func:`_sparse_table` ``[B, Lh, Lw, H, W, C]``: the forward pass without the argmax (a
    maximum does not depend on which of equal cells is first), half the memory and work."""
    _, h, w, _ = features.shape
    low = jnp.array(-jnp.inf, features.dtype)
    values = [features]
    for kw in range(1, _levels(w)):
        values.append(jnp.maximum(values[-1], _shift(values[-1], 2 ** (kw - 1), 2, low)))
    values = [jnp.stack(values, axis=1)]  # [B, Lw, H, W, C]
    for kh in range(1, _levels(h)):
        values.append(jnp.maximum(values[-1], _shift(values[-1], 2 ** (kh - 1), 2, low)))
    return jnp.stack(values, axis=1)


def _sparse_table(features: Array) -> tuple[Array, Array]:
    """Values and first-argmax flat indices ``[B, Lh, Lw, H, W, C]`` of the ``2^kh x 2^kw`` windows at each cell.

    Built along W first (windows within one row: the left half's cells come first), then along H (the top half's
    rows come first), so each doubling step breaks ties towards its first operand, which is Caffe's first maximum.
    """
    b, h, w, c = features.shape
    flat = (jnp.arange(b)[:, None, None] * h + jnp.arange(h)[None, :, None]) * w + jnp.arange(w)[None, None, :]
    flat = jnp.broadcast_to(flat[..., None].astype(jnp.int32), features.shape)
    low = jnp.array(-jnp.inf, features.dtype)
    values, indices = [features], [flat]
    for kw in range(1, _levels(w)):
        d = 2 ** (kw - 1)
        v, i = _first_max(values[-1], indices[-1], _shift(values[-1], d, 2, low), _shift(indices[-1], d, 2, -1))
        values.append(v)
        indices.append(i)
    values, indices = [jnp.stack(values, axis=1)], [jnp.stack(indices, axis=1)]  # [B, Lw, H, W, C]
    for kh in range(1, _levels(h)):
        d = 2 ** (kh - 1)
        v, i = _first_max(values[-1], indices[-1], _shift(values[-1], d, 2, low), _shift(indices[-1], d, 2, -1))
        values.append(v)
        indices.append(i)
    return jnp.stack(values, axis=1), jnp.stack(indices, axis=1)


def _windows(
    features: Array, rois: Array, batch_indices: Array, output_size: tuple[int, int], spatial_scale: float,
    pixel_offset: float,
) -> tuple[Array, Array]:
    """Flat row indices ``[R * oh * ow * 4]`` of each bin's 4 table windows, and the empty bins ``[R, oh, ow]``."""
    b, h, w, c = features.shape
    oh, ow = output_size
    end_shift = 1.0 - pixel_offset  # edge boxes -> the layer's inclusive last-pixel indices
    hs, he = _quantise(rois[:, 0], rois[:, 2] - end_shift, spatial_scale, oh, h)  # [R, oh]
    ws, we = _quantise(rois[:, 1], rois[:, 3] - end_shift, spatial_scale, ow, w)  # [R, ow]
    empty = (he <= hs)[:, :, None] | (we <= ws)[:, None, :]  # [R, oh, ow]
    log2 = jnp.asarray([0] + [int(np.floor(np.log2(n))) for n in range(1, max(h, w) + 1)], jnp.int32)
    kh = log2[jnp.clip(he - hs, 1, h)]
    kw = log2[jnp.clip(we - ws, 1, w)]
    # Two overlapping windows per axis cover [start, end) exactly: at start and at end - 2^k.
    rows = jnp.stack([hs, he - 2**kh], axis=-1).clip(0, h - 1)  # [R, oh, 2]
    cols = jnp.stack([ws, we - 2**kw], axis=-1).clip(0, w - 1)  # [R, ow, 2]
    level = kh[:, :, None] * _levels(w) + kw[:, None, :]  # [R, oh, ow]
    img = batch_indices.astype(jnp.int32)[:, None, None, None, None]
    num_levels = _levels(h) * _levels(w)
    flat = (
        ((img * num_levels + level[:, :, :, None, None]) * h + rows[:, :, None, :, None]) * w
        + cols[:, None, :, None, :]
    ).reshape(-1)  # [R * oh * ow * 4]
    return flat, empty


def _pool_values(
    features: Array, rois: Array, batch_indices: Array, output_size: tuple[int, int], spatial_scale: float,
    pixel_offset: float,
) -> Array:
    """Pooled values ``[R, oh, ow, C]`` alone (the primal, e.g. at test time): no argmax table."""
    c = features.shape[-1]
    oh, ow = output_size
    flat, empty = _windows(features, rois, batch_indices, output_size, spatial_scale, pixel_offset)
    v = _max_table(features).reshape(-1, c)[flat].reshape(-1, oh, ow, 4, c)
    return jnp.where(empty[..., None], 0, jnp.max(v, axis=3)).astype(features.dtype)


def _pool_forward(
    features: Array, rois: Array, batch_indices: Array, output_size: tuple[int, int], spatial_scale: float,
    pixel_offset: float,
) -> tuple[Array, Array]:
    """Pooled values ``[R, oh, ow, C]`` and flat argmax indices into ``features [B, H, W, C]`` (-1: empty bin)."""
    c = features.shape[-1]
    oh, ow = output_size
    flat, empty = _windows(features, rois, batch_indices, output_size, spatial_scale, pixel_offset)
    values, indices = _sparse_table(features)
    v = values.reshape(-1, c)[flat].reshape(-1, oh, ow, 4, c)
    i = indices.reshape(-1, c)[flat].reshape(-1, oh, ow, 4, c)
    v01, i01 = _combine(v[..., 0, :], i[..., 0, :], v[..., 1, :], i[..., 1, :])
    v23, i23 = _combine(v[..., 2, :], i[..., 2, :], v[..., 3, :], i[..., 3, :])
    v, i = _combine(v01, i01, v23, i23)
    return jnp.where(empty[..., None], 0, v).astype(features.dtype), jnp.where(empty[..., None], -1, i)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def _roi_max_pool(features, rois, batch_indices, output_size, spatial_scale, pixel_offset):
    # Without differentiation only the maxima are needed (4x faster on CPU at VGG16's 38x63x512 map, 0.9 -> 0.22 s).
    return _pool_values(features, rois, batch_indices, output_size, spatial_scale, pixel_offset)


def _roi_max_pool_fwd(features, rois, batch_indices, output_size, spatial_scale, pixel_offset):
    out, argmax = _pool_forward(features, rois, batch_indices, output_size, spatial_scale, pixel_offset)
    return out, (argmax, features)


def _roi_max_pool_bwd(output_size, spatial_scale, pixel_offset, residuals, g):
    # Backward_cpu of the Caffe layer: each output's gradient is added to its argmax cell (one per channel).
    argmax, features = residuals
    shape, c = features.shape, features.shape[-1]
    size = int(np.prod(shape))
    # Empty bins point past the end, where mode="drop" discards them (a -1 would wrap to the last cell).
    target = jnp.where(argmax >= 0, argmax * c + jnp.arange(c), size).reshape(-1)
    grad = jnp.zeros((size,), g.dtype).at[target].add(g.reshape(-1), mode="drop")
    return grad.reshape(shape).astype(features.dtype), None, None


_roi_max_pool.defvjp(_roi_max_pool_fwd, _roi_max_pool_bwd)


def _batched(features: Array, rois: Array, batch_indices: Array | None) -> tuple[Array, Array, bool]:
    if features.ndim == 3:
        if batch_indices is not None:
            raise ValueError("batch_indices needs batched features [B, H, W, C]")
        return features[None], jnp.zeros((rois.shape[0],), jnp.int32), True
    if features.ndim != 4 or batch_indices is None:
        raise ValueError(f"features must be [H, W, C], or [B, H, W, C] with batch_indices; got {features.shape}")
    return features, batch_indices, False


def roi_max_pool(
    features: Array,
    rois: Array,
    *,
    batch_indices: Array | None = None,
    output_size: tuple[int, int] = (7, 7),
    spatial_scale: float = 1.0 / 16,
    pixel_offset: float = 0.0,
) -> Array:
    """Fast R-CNN RoI max pooling: ``[R, out_h, out_w, C]`` from ``features`` and ``rois [R, 4]`` (image pixels).

    ``output_size`` 7x7 for VGG16, 6x6 for AlexNet / CaffeNet (Fast R-CNN sec. 2.1 and its prototxts). ``rois``
    are edge boxes (``pixel_offset=0``): the layer's ``x2`` is the last pixel index, ``x2_edge - 1``. Pass
    ``pixel_offset=1`` for boxes already in the authors' inclusive convention (py-faster-rcnn's roidb), which the
    layer then sees unchanged. Quantisation and gradient exactly as the Caffe layer (module docstring).
    """
    features, batch_indices, single = _batched(features, rois, batch_indices)
    del single  # the output is per RoI either way
    return _roi_max_pool(
        features, rois.astype(jnp.float32), batch_indices, tuple(output_size), float(spatial_scale),
        float(pixel_offset),
    )


def _align_weights(start: Array, bin_size: Array, pooled: int, ratio: int, size: int) -> Array:
    """``[R, pooled, size]``: the mean over a bin's ``ratio`` sample points of their linear-interpolation weights.

    As torchvision's roi_align kernel (``bilinear_interpolate``): a point below -1 or beyond ``size`` contributes
    0 (but still counts in the mean); otherwise it is clamped to ``[0, size - 1]``. Bilinear weights are the
    product of two such 1D weights, so RoIAlign is two small matrix products.
    """
    p = jnp.arange(pooled, dtype=jnp.float32)[None, :, None]
    i = jnp.arange(ratio, dtype=jnp.float32)[None, None, :]
    coord = start[:, None, None] + p * bin_size[:, None, None] + (i + 0.5) * bin_size[:, None, None] / ratio
    inside = (coord >= -1.0) & (coord <= size)
    coord = jnp.maximum(coord, 0.0)
    low = jnp.floor(coord).astype(jnp.int32)
    at_end = low >= size - 1
    low = jnp.where(at_end, size - 1, low)
    high = jnp.where(at_end, size - 1, low + 1)
    frac = jnp.where(at_end, 0.0, coord - low)
    weights = jax.nn.one_hot(low, size) * (1 - frac)[..., None] + jax.nn.one_hot(high, size) * frac[..., None]
    return jnp.mean(jnp.where(inside[..., None], weights, 0.0), axis=2)


def _roi_align_one(
    features: Array, rois: Array, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int,
    aligned: bool,
) -> Array:
    h, w, _ = features.shape
    oh, ow = output_size
    offset = 0.5 if aligned else 0.0
    y1, x1 = rois[:, 0] * spatial_scale - offset, rois[:, 1] * spatial_scale - offset
    rh, rw = rois[:, 2] * spatial_scale - offset - y1, rois[:, 3] * spatial_scale - offset - x1
    if not aligned:  # the legacy (Detectron / Mask R-CNN paper) version forces RoIs to at least 1x1
        rh, rw = jnp.maximum(rh, 1.0), jnp.maximum(rw, 1.0)
    wy = _align_weights(y1, rh / oh, oh, sampling_ratio, h)  # [R, oh, H]
    wx = _align_weights(x1, rw / ow, ow, sampling_ratio, w)  # [R, ow, W]
    hi = lax.Precision.HIGHEST
    cols = jnp.einsum("rqw,hwc->rqhc", wx, features, precision=hi)
    return jnp.einsum("rph,rqhc->rpqc", wy, cols, precision=hi).astype(features.dtype)


def roi_align(
    features: Array,
    rois: Array,
    *,
    batch_indices: Array | None = None,
    output_size: tuple[int, int] = (7, 7),
    spatial_scale: float = 1.0 / 16,
    sampling_ratio: int = 2,
    aligned: bool = True,
) -> Array:
    """RoIAlign (He et al. 2017, Mask R-CNN sec. 3): ``[R, out_h, out_w, C]``, the mean of bilinear samples per bin.

    ``sampling_ratio`` x ``sampling_ratio`` regularly spaced points per bin (the paper uses 4 points, i.e. 2);
    it must be static here (torchvision's adaptive ``ceil(roi / bin)`` for ``sampling_ratio <= 0`` is not
    supported). ``aligned=True`` shifts by half a pixel so that edge coordinates map onto pixel centres (Detectron2
    / torchvision ``aligned=True``, the right choice for this project's edge boxes); ``aligned=False`` is the paper's
    original version. Differentiable in ``features`` (and in ``rois``) by ordinary autodiff. With batched
    features each image's result is computed for every RoI and selected (B times the work): prefer ``jax.vmap``
    over images with per-image RoIs.
    """
    if sampling_ratio < 1:
        raise ValueError(f"sampling_ratio must be a static integer >= 1, got {sampling_ratio}")
    features, batch_indices, single = _batched(features, rois, batch_indices)
    args = (tuple(output_size), float(spatial_scale), int(sampling_ratio), bool(aligned))
    rois = rois.astype(jnp.float32)
    if single:
        return _roi_align_one(features[0], rois, *args)
    out = 0
    for b in range(features.shape[0]):
        mine = (batch_indices == b)[:, None, None, None]
        out = out + jnp.where(mine, _roi_align_one(features[b], rois, *args), 0)
    return out
