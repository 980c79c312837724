"""Box geometry and the R-CNN box parametrisation, as pure jit-able JAX functions.

Boxes are float ``[..., 4]`` rows ``(y1, x1, y2, x2)`` in pixels, measured at pixel EDGES like the data pipeline's
``features['boxes']`` (``convnets/data/ops/boxes.py``): width ``x2 - x1``. The authors' code (rbgirshick/rcnn,
fast-rcnn, py-faster-rcnn) and the VOC devkit use inclusive 0-based pixel indices instead, with widths
``x2 - x1 + 1``. The two agree exactly: a devkit box ``(x1, x2)`` is the edge box ``(x1, x2 + 1)``, so IoUs and box
deltas computed on edge boxes with ``pixel_offset=0`` equal the authors' values on devkit boxes with
``pixel_offset=1``. Use ``pixel_offset=1`` only for boxes that really are in the inclusive convention.

Deltas are ordered ``(dy, dx, dh, dw)``, like the boxes (torchvision and py-faster-rcnn order them
``(dx, dy, dw, dh)``; swap columns when importing their regressors).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
from jax import Array

# torchvision's and Detectron's ``bbox_xform_clip``: exp(dh) is capped at 1000/16, so a wild regressor output
# cannot overflow to inf. py-faster-rcnn's bbox_transform_inv does not clamp (exp of a large delta is inf there).
DEFAULT_CLAMP = math.log(1000.0 / 16)

# Heights and widths are floored at this many pixels before log() and division in ``encode``: degenerate
# (zero-area) reference or target boxes, e.g. padding rows, then give large but finite deltas instead of inf/NaN.
_MIN_SIZE = 1e-6


def _split(boxes: Array) -> tuple[Array, Array, Array, Array]:
    return boxes[..., 0], boxes[..., 1], boxes[..., 2], boxes[..., 3]


def area(boxes: Array, *, pixel_offset: float = 0.0) -> Array:
    """Areas ``[...]`` of boxes ``[..., 4]``; boxes with ``y2 < y1`` or ``x2 < x1`` have area 0."""
    y1, x1, y2, x2 = _split(boxes)
    return jnp.maximum(y2 - y1 + pixel_offset, 0) * jnp.maximum(x2 - x1 + pixel_offset, 0)


def iou_matrix(a: Array, b: Array, *, pixel_offset: float = 0.0) -> Array:
    """Intersection over union ``[N, M]`` of boxes ``a [N, 4]`` and ``b [M, 4]``.

    0 where the union is empty (two zero-area boxes), never NaN, and its gradient is finite there too.
    ``pixel_offset=1`` is the VOC devkit / R-CNN convention (inclusive pixel indices, ``w = x2 - x1 + 1``), as in
    py-faster-rcnn's ``bbox_overlaps`` (lib/utils/bbox.pyx).
    """
    ay1, ax1, ay2, ax2 = (v[:, None] for v in _split(a))
    by1, bx1, by2, bx2 = (v[None, :] for v in _split(b))
    ih = jnp.maximum(jnp.minimum(ay2, by2) - jnp.maximum(ay1, by1) + pixel_offset, 0)
    iw = jnp.maximum(jnp.minimum(ax2, bx2) - jnp.maximum(ax1, bx1) + pixel_offset, 0)
    inter = ih * iw
    union = area(a, pixel_offset=pixel_offset)[:, None] + area(b, pixel_offset=pixel_offset)[None, :] - inter
    positive = union > 0
    # Double where: the untaken branch must not divide by zero either, or its NaN leaks into the gradient.
    return jnp.where(positive, inter / jnp.where(positive, union, 1.0), 0.0)


def _centre_size(boxes: Array, pixel_offset: float) -> tuple[Array, Array, Array, Array]:
    y1, x1, y2, x2 = _split(boxes)
    h = y2 - y1 + pixel_offset
    w = x2 - x1 + pixel_offset
    # Centres as in R-CNN appendix C / py-faster-rcnn bbox_transform: x1 + 0.5 * w.
    return y1 + 0.5 * h, x1 + 0.5 * w, h, w


def encode(
    boxes: Array, reference: Array, weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0), *, pixel_offset: float = 0.0
) -> Array:
    """Regression targets ``[..., 4] = (dy, dx, dh, dw)`` that move ``reference`` (proposals / anchors) onto ``boxes``.

    R-CNN appendix C (and Fast R-CNN sec. 2.3): ``dy = (gy - py) / ph``, ``dx = (gx - px) / pw``,
    ``dh = log(gh / ph)``, ``dw = log(gw / pw)``, each multiplied by its entry of ``weights = (wy, wx, wh, ww)``.
    Fast R-CNN normalises the targets by stds (0.1, 0.1, 0.2, 0.2) (py-faster-rcnn ``BBOX_NORMALIZE_STDS``), which is
    ``weights=(10, 10, 5, 5)``, torchvision's default for its box head. ``boxes`` and ``reference`` broadcast.
    Heights and widths are floored at 1e-6 pixels, so zero-area inputs give finite (large) targets, never inf/NaN;
    mask such rows out of the loss.
    """
    wy, wx, wh, ww = weights
    gy, gx, gh, gw = _centre_size(boxes, pixel_offset)
    py, px, ph, pw = _centre_size(reference, pixel_offset)
    ph, pw = jnp.maximum(ph, _MIN_SIZE), jnp.maximum(pw, _MIN_SIZE)
    gh, gw = jnp.maximum(gh, _MIN_SIZE), jnp.maximum(gw, _MIN_SIZE)
    return jnp.stack(
        [wy * (gy - py) / ph, wx * (gx - px) / pw, wh * jnp.log(gh / ph), ww * jnp.log(gw / pw)], axis=-1
    )


def decode(
    deltas: Array,
    reference: Array,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    *,
    clamp: float | None = DEFAULT_CLAMP,
    pixel_offset: float = 0.0,
) -> Array:
    """Boxes ``[..., 4]`` from deltas ``(dy, dx, dh, dw)`` applied to ``reference`` boxes: the inverse of ``encode``.

    ``dh`` and ``dw`` (after dividing by their weights) are capped at ``clamp`` (default ``log(1000/16)``, as
    torchvision and Detectron do; ``None`` for py-faster-rcnn's unclamped ``bbox_transform_inv``). Zero-size
    references give zero-size boxes at their centre (no division happens here). With ``pixel_offset=1`` the far
    corner is ``centre + size / 2 - 1``, the exact inverse of ``encode`` (Detectron's convention);
    py-faster-rcnn omits that ``- 1`` (lib/fast_rcnn/bbox_transform.py), a one-pixel asymmetry not copied here.
    Class-specific deltas ``[R, K, 4]`` decode against ``reference[:, None, :]``.
    """
    wy, wx, wh, ww = weights
    py, px, ph, pw = _centre_size(reference, pixel_offset)
    ph, pw = jnp.maximum(ph, 0), jnp.maximum(pw, 0)
    dy, dx = deltas[..., 0] / wy, deltas[..., 1] / wx
    dh, dw = deltas[..., 2] / wh, deltas[..., 3] / ww
    if clamp is not None:
        dh, dw = jnp.minimum(dh, clamp), jnp.minimum(dw, clamp)
    cy, cx = py + dy * ph, px + dx * pw
    h, w = ph * jnp.exp(dh), pw * jnp.exp(dw)
    return jnp.stack(
        [cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h - pixel_offset, cx + 0.5 * w - pixel_offset], axis=-1
    )


def clip(boxes: Array, height: float | Array, width: float | Array, *, pixel_offset: float = 0.0) -> Array:
    """Boxes clipped to the image: ``y`` to ``[0, height - pixel_offset]``, ``x`` to ``[0, width - pixel_offset]``.

    Edge boxes (offset 0) clip to ``[0, height]``; devkit boxes (offset 1) to the last pixel index ``height - 1``,
    as py-faster-rcnn's ``clip_boxes``. Boxes wholly outside become zero-area boxes on the border.
    """
    y1, x1, y2, x2 = _split(boxes)
    ymax = jnp.asarray(height, boxes.dtype) - pixel_offset
    xmax = jnp.asarray(width, boxes.dtype) - pixel_offset
    return jnp.stack(
        [jnp.clip(y1, 0, ymax), jnp.clip(x1, 0, xmax), jnp.clip(y2, 0, ymax), jnp.clip(x2, 0, xmax)], axis=-1
    )


def remove_small(boxes: Array, min_size: float, *, pixel_offset: float = 0.0) -> Array:
    """Keep mask ``[...]`` (bool): True for boxes whose height and width are both at least ``min_size`` pixels.

    A mask rather than boolean indexing, so shapes stay static under jit: AND it into the validity mask that
    ``nms`` and the samplers take. py-faster-rcnn's ``_filter_boxes`` (RPN proposals, ``RPN_MIN_SIZE = 16`` times
    the image scale) is ``remove_small(boxes, 16 * scale, pixel_offset=1)`` on devkit boxes, or offset 0 on edge
    boxes. ``min_size=0`` keeps every box with non-negative sides; NaN boxes are never kept.
    """
    y1, x1, y2, x2 = _split(boxes)
    return (y2 - y1 + pixel_offset >= min_size) & (x2 - x1 + pixel_offset >= min_size)
