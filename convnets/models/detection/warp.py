"""R-CNN's region warping (Girshick et al. 2014, sec. 2.1 and appendix A): every region becomes a fixed-size crop.

"Regardless of the size or aspect ratio of the candidate region, we warp all pixels in a tight bounding box around
it to the required size. Prior to warping, we dilate the tight bounding box so that at the warped size there are
exactly p pixels of warped image context around the original box (we use p = 16)" (sec. 2.1). The authors' code
(rbgirshick/rcnn rcnn_im_crop.m, and Caffe's WindowDataLayer used for fine-tuning) scales the box about its centre
by ``crop_size / (crop_size - 2 p)`` (227 / 195), crops the part inside the image, resizes it bilinearly (OpenCV /
``imresize`` without antialiasing) and pastes it into a ``crop_size`` square whose rest is the image mean (zero
after mean subtraction).

Modes (appendix A, Figure 7):
- ``'warp'`` (D): anisotropic scaling of the (dilated) box to the square, the paper's choice;
- ``'square'`` (B, "tightest square with context"): the box is first grown to the tightest enclosing square, so
  the scaling is isotropic and the content around the proposal fills the square;
- ``'square_no_context'`` (C, "tightest square without context"): as ``'square'``, but everything outside the
  original proposal is the mean (only the proposal's own pixels are shown).
``context_pad`` is p (16 in the paper; 0 gives the "p = 0" rows of appendix A).

Implementation: static shapes, on device, jit-able: each output pixel ``(i, j)`` samples the source at the centre of
its cell, ``y = Y1 + (i + 0.5) * H / S - 0.5`` (pixel-centre coordinates; OpenCV's INTER_LINEAR rule), with the
bilinear weights of its four neighbours, gathered directly from the batch tensor by image index. Sample positions
are clamped to the part of the window inside the image (OpenCV replicates the border of the cropped window) and
samples whose cell centre falls outside the image (or outside the proposal for 'square_no_context') take the fill
value. With ``context_pad = 0`` and ``'warp'`` this is exactly rcnn_im_crop's resize of the tight box; with
context the authors additionally round the dilated box to whole pixels and the pasted sub-window's size to whole
output pixels (at most one source / output pixel of difference at the border), which is not copied.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import Array

MODES = ('warp', 'square', 'square_no_context')


def context_boxes(boxes: Array, *, crop_size: int, context_pad: int, mode: str = 'warp') -> Array:
    """The source windows ``[..., 4]`` the crops show: boxes made square (square modes) and dilated about their centre
    by ``crop_size / (crop_size - 2 * context_pad)`` (rcnn_im_crop.m)."""
    if mode not in MODES:
        raise ValueError(f'warp mode must be one of {MODES}, got {mode!r}')
    if not 0 <= 2 * context_pad < crop_size:
        raise ValueError(f'context_pad={context_pad} must be >= 0 and leave room in crop_size={crop_size}')
    y1, x1, y2, x2 = (boxes[..., k] for k in range(4))
    cy, cx = (y1 + y2) / 2, (x1 + x2) / 2
    half_h, half_w = (y2 - y1) / 2, (x2 - x1) / 2
    if mode != 'warp':  # the tightest enclosing square
        half_h = half_w = jnp.maximum(half_h, half_w)
    scale = crop_size / (crop_size - 2 * context_pad)
    half_h, half_w = half_h * scale, half_w * scale
    return jnp.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1)


def _axis_samples(lo: Array, hi: Array, limit: Array, size: int) -> tuple[Array, Array, Array, Array]:
    """Along one axis, for windows [lo, hi) [R] on an image of `limit` [R] pixels: the lower neighbour index [R, S],
    the upper one, the weight of the upper one, and whether each cell centre lies inside the image."""
    centre = lo[:, None] + (jnp.arange(size, dtype=lo.dtype)[None, :] + 0.5) * ((hi - lo)[:, None] / size)
    inside = (centre >= 0) & (centre <= limit[:, None])
    # Pixel-centre coordinate, clamped to the pixels the window covers inside the image (border replicated).
    first = jnp.clip(jnp.floor(lo), 0, limit - 1)[:, None]
    last = jnp.clip(jnp.ceil(hi) - 1, 0, limit - 1)[:, None]
    u = jnp.clip(centre - 0.5, first, jnp.maximum(last, first))
    low = jnp.floor(u)
    frac = u - low
    low = low.astype(jnp.int32)
    high = jnp.minimum(low + 1, last.astype(jnp.int32))
    return low, jnp.maximum(high, low), frac, inside


def warp_regions(images: Array, boxes: Array, image_index: Array, *, crop_size: int, context_pad: int = 16,
                 mode: str = 'warp', image_sizes: Array | None = None, fill: float = 0.0) -> Array:
    """Crops ``[R, S, S, C]`` of regions ``boxes [R, 4]`` (edge boxes (y1, x1, y2, x2) in pixels) of
    ``images [B, H, W, C]``, region r from image ``image_index[r]``.

    ``image_sizes [B, 2]`` (height, width) is the real image inside a padded canvas (the pipeline's 'image_size');
    nothing outside it is sampled. ``fill`` is the value of context outside the image (0 = the mean after mean
    subtraction, as the authors' crops).
    """
    s = crop_size
    b, h, w = images.shape[:3]
    if image_sizes is None:
        image_sizes = jnp.tile(jnp.array([[h, w]], jnp.float32), (b, 1))
    sizes = image_sizes.astype(jnp.float32)[image_index]  # [R, 2]
    boxes = boxes.astype(jnp.float32)
    window = context_boxes(boxes, crop_size=s, context_pad=context_pad, mode=mode)
    y0, y1, fy, in_y = _axis_samples(window[:, 0], window[:, 2], sizes[:, 0], s)
    x0, x1, fx, in_x = _axis_samples(window[:, 1], window[:, 3], sizes[:, 1], s)
    n = image_index[:, None, None]

    def at(yi: Array, xi: Array) -> Array:
        return images[n, yi[:, :, None], xi[:, None, :]].astype(jnp.float32)  # [R, S, S, C]

    fy, fx = fy[:, :, None, None], fx[:, None, :, None]
    top = at(y0, x0) * (1 - fx) + at(y0, x1) * fx
    bottom = at(y1, x0) * (1 - fx) + at(y1, x1) * fx
    crops = top * (1 - fy) + bottom * fy
    keep = in_y[:, :, None] & in_x[:, None, :]
    if mode == 'square_no_context':  # appendix A (C): only the proposal's own pixels
        cy = window[:, 0:1] + (jnp.arange(s)[None, :] + 0.5) * ((window[:, 2] - window[:, 0])[:, None] / s)
        cx = window[:, 1:2] + (jnp.arange(s)[None, :] + 0.5) * ((window[:, 3] - window[:, 1])[:, None] / s)
        keep &= ((cy >= boxes[:, 0:1]) & (cy <= boxes[:, 2:3]))[:, :, None]
        keep &= ((cx >= boxes[:, 1:2]) & (cx <= boxes[:, 3:4]))[:, None, :]
    return jnp.where(keep[..., None], crops, jnp.asarray(fill, jnp.float32)).astype(images.dtype)


def flip_crops(crops: Array, flip: Array) -> Array:
    """Crops ``[R, S, S, C]`` mirrored left-right where ``flip [R]`` (Caffe's WindowDataLayer ``mirror: true``, used
    by R-CNN's fine-tuning: each window flipped with probability 0.5)."""
    return jnp.where(flip[:, None, None, None], crops[:, :, ::-1, :], crops)


def random_flips(key: Array, count: int) -> Array:
    """``count`` fair coin flips from ``key``."""
    return jax.random.bernoulli(key, 0.5, (count,))
