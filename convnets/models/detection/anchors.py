"""Faster R-CNN anchors: the k reference boxes at one position and their grid over a feature map (static shapes).

Ren et al. 2015, "Faster R-CNN", sec. 3.1.1 "Anchors": at each sliding-window position of the shared feature map
the RPN predicts k proposals relative to k reference boxes; by default 3 scales (box areas 128^2, 256^2, 512^2)
times 3 aspect ratios (1:1, 1:2, 2:1), k = 9, on VGG16's / ZF Net's conv5 at stride 16.

``base_anchors`` reproduces the authors' py-faster-rcnn ``lib/rpn/generate_anchors.py`` exactly, including its
integer rounding: start from the 16x16 box ``[0, 0, 15, 15]`` (inclusive pixels), for each ratio keep the area
16 * 16 with ``w = round(sqrt(256 / ratio))``, ``h = round(w * ratio)`` (ratio = h / w), then multiply both sides by
each scale (8, 16, 32 -> 128, 256, 512 pixels), always around the base box's centre (7.5, 7.5). Ratio-major order:
the 3 scales of ratio 0.5 first. The results are integer inclusive-pixel boxes; here they are returned in the
project's ``(y1, x1, y2, x2)`` pixel-EDGE convention (``convnets/models/detection/boxes.py``): ``y2_edge = y2 + 1``,
so IoUs with ``pixel_offset=0`` equal py-faster-rcnn's ``bbox_overlaps`` values. The areas are only approximately
128^2 etc. (e.g. 184 x 96 = 17664 for 128^2 at ratio 0.5), because of that rounding.

``grid_anchors`` shifts them over the feature map as py-faster-rcnn's ``anchor_target_layer.py`` / ``proposal_layer.py``
do: shifts ``(x * stride, y * stride)`` in row-major order (y outer, x inner), and for each shift the k anchors, so
row ``(y * W + x) * k + a`` is anchor ``a`` at feature cell ``(y, x)``: the order of an RPN head output
``[H, W, k, ...]`` reshaped to ``[H * W * k, ...]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _whctr(box: np.ndarray) -> tuple[float, float, float, float]:
    # Inclusive-pixel width, height and centre, as generate_anchors' _whctrs.
    w = box[2] - box[0] + 1
    h = box[3] - box[1] + 1
    return w, h, box[0] + 0.5 * (w - 1), box[1] + 0.5 * (h - 1)


def _boxes_around(ws: np.ndarray, hs: np.ndarray, x_ctr: float, y_ctr: float) -> np.ndarray:
    # Inclusive (x1, y1, x2, y2) boxes of widths ws and heights hs centred at (x_ctr, y_ctr), as _mkanchors.
    ws, hs = ws[:, None], hs[:, None]
    return np.hstack([x_ctr - 0.5 * (ws - 1), y_ctr - 0.5 * (hs - 1), x_ctr + 0.5 * (ws - 1), y_ctr + 0.5 * (hs - 1)])


def base_anchors_xyxy_inclusive(
    stride: int = 16, scales: Sequence[float] = (8, 16, 32), ratios: Sequence[float] = (0.5, 1, 2)
) -> np.ndarray:
    """The k = len(ratios) * len(scales) anchors ``[k, 4]`` exactly as py-faster-rcnn: inclusive ``(x1, y1, x2, y2)``.

    ``ratios`` are height / width. ``np.round`` (round half to even) as the authors' code.
    """
    if stride <= 0 or not scales or not ratios:
        raise ValueError(f'anchors need stride > 0 and at least one scale and ratio, got {stride}, {scales}, {ratios}')
    if min(scales) <= 0 or min(ratios) <= 0:
        raise ValueError(f'anchor scales and ratios must be positive, got scales={scales}, ratios={ratios}')
    base = np.array([0, 0, stride - 1, stride - 1], np.float64)
    w, h, x_ctr, y_ctr = _whctr(base)
    ratios_a = np.asarray(ratios, np.float64)
    ws = np.round(np.sqrt(w * h / ratios_a))
    hs = np.round(ws * ratios_a)
    by_ratio = _boxes_around(ws, hs, x_ctr, y_ctr)
    scales_a = np.asarray(scales, np.float64)
    rows = []
    for box in by_ratio:
        bw, bh, bx, by = _whctr(box)
        rows.append(_boxes_around(bw * scales_a, bh * scales_a, bx, by))
    return np.vstack(rows)


def base_anchors(
    stride: int = 16, scales: Sequence[float] = (8, 16, 32), ratios: Sequence[float] = (0.5, 1, 2)
) -> np.ndarray:
    """The k anchors ``[k, 4]`` float32 ``(y1, x1, y2, x2)`` at pixel edges, centred on the first stride x stride cell.

    Defaults: Faster R-CNN's 3 scales x 3 ratios (sec. 3.1.1); same values and order as py-faster-rcnn's
    ``generate_anchors()`` (the first is its ``[-84, -40, 99, 55]``, here ``[-40, -84, 56, 100]``).
    """
    x1, y1, x2, y2 = base_anchors_xyxy_inclusive(stride, scales, ratios).T
    return np.stack([y1, x1, y2 + 1, x2 + 1], axis=1).astype(np.float32)


def grid_anchors(feature_height: int, feature_width: int, stride: int, base: np.ndarray) -> np.ndarray:
    """All anchors ``[H * W * k, 4]`` float32 of a ``feature_height x feature_width`` map (static numpy constants).

    Row ``(y * W + x) * k + a`` is ``base[a]`` shifted by ``(y * stride, x * stride)``: py-faster-rcnn's order
    (shifts outer, anchors inner). Anchors crossing the image border are kept; the labelling ignores them.
    """
    if feature_height <= 0 or feature_width <= 0:
        raise ValueError(f'grid_anchors needs a non-empty feature map, got {feature_height}x{feature_width}')
    base = np.asarray(base, np.float32)
    if base.ndim != 2 or base.shape[1] != 4:
        raise ValueError(f'grid_anchors: base anchors must be [k, 4], got shape {base.shape}')
    sy, sx = np.meshgrid(
        np.arange(feature_height, dtype=np.float32) * stride,
        np.arange(feature_width, dtype=np.float32) * stride,
        indexing='ij',
    )
    shifts = np.stack([sy, sx, sy, sx], axis=-1).reshape(-1, 1, 4)  # [H*W, 1, 4], row-major (y outer, x inner)
    return (shifts + base[None]).reshape(-1, 4)
