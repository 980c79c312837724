"""The VOC devkit's arithmetic, transcribed: box IoU as VOCevaldet.m computes it and average precision (VOC
2007's 11-point method, VOC 2010+'s area under the precision envelope, VOCap.m). `convnets.evaluate.voc_map`
matches detections and builds the curves; this module holds the two formulas it applies.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from convnets.evaluate.voc_devkit import as_boxes

Method = Literal['11point', 'area']
METHODS = ('11point', 'area')

# MATLAB's `0:0.1:1` (VOC 2007 devkit, VOCevaldet.m: `for t=0:0.1:1`). MATLAB's colon operator computes the first
# half of a range as a + k*d and the second half as b - (n-k)*d, so these are the devkit's exact doubles; only the
# level 0.3 (3 * 0.1 = 0.30000000000000004) differs from the double nearest k/10.
ELEVEN_POINT_RECALLS: tuple[float, ...] = tuple(0.1 * k for k in range(6)) + tuple(
    1.0 - 0.1 * (10 - k) for k in range(6, 11)
)


def iou_matrix(a: np.ndarray, b: np.ndarray, pixel_offset: float = 0.0) -> np.ndarray:
    """IoU of every box of ``a`` [N, 4] with every box of ``b`` [M, 4] (edge boxes), as the devkit computes it.

    Returns float64 [N, M]; pairs that do not intersect (intersection width or height <= 0) are ``-inf``, as
    ``ovmax`` stays ``-inf`` in VOCevaldet.m, so no threshold accepts them. ``pixel_offset`` is added to every
    width, height and intersection side (see the module docstring).
    """
    a, b = as_boxes(a, 'a'), as_boxes(b, 'b')
    return overlaps(a[:, None, :], b[None, :, :], float(pixel_offset))


def overlaps(a: np.ndarray, b: np.ndarray, offset: float) -> np.ndarray:
    """Elementwise devkit IoU of broadcastable edge boxes ``a`` and ``b`` (-inf where they do not intersect).

    The arithmetic follows VOCevaldet.m term by term (``(max - min) + offset``), so index-coordinate boxes with
    ``offset=1`` give the devkit's doubles.
    """
    iw = (np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])) + offset
    ih = (np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])) + offset
    hit = (iw > 0) & (ih > 0)
    inter = iw * ih
    area_a = ((a[..., 3] - a[..., 1]) + offset) * ((a[..., 2] - a[..., 0]) + offset)
    area_b = ((b[..., 3] - b[..., 1]) + offset) * ((b[..., 2] - b[..., 0]) + offset)
    union = area_a + area_b - inter
    # Where the boxes intersect, both have positive sides, so union >= inter > 0.
    out = np.full(np.broadcast(iw, ih).shape, -np.inf)
    np.divide(inter, union, out=out, where=hit)
    return out


# ----------------------------------------------------------------------------- average precision


def average_precision(recall: np.ndarray, precision: np.ndarray, method: Method = 'area') -> float:
    """AP of a precision/recall curve (points in order of decreasing score).

    ``'11point'``: VOC 2007, mean over :data:`ELEVEN_POINT_RECALLS` of the best precision at recall >= the level
    (0 if none). ``'area'``: VOC 2010+ (VOCap.m), area under the monotone precision envelope, recall from 0 to 1.
    An empty curve (no detections) has AP 0, as in the devkit.
    """
    check_method(method)
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if recall.shape != precision.shape or recall.ndim != 1:
        raise ValueError(f'recall and precision must be 1-D of the same length, got {recall.shape}, {precision.shape}')
    # Sums are exact then rounded once (math.fsum): the devkit's running sums (`ap=ap+p/11`, `sum(...)`) can end an
    # ulp above 1 for a perfect detector (11 * (1/11) = 1.0000000000000002); the difference is below 1e-15.
    if method == '11point':
        best = []
        for level in ELEVEN_POINT_RECALLS:
            reached = precision[recall >= level]
            best.append(float(reached.max()) if reached.size else 0.0)
        return math.fsum(best) / 11
    if recall.size == 0:
        return 0.0
    # Envelope: the best precision at this or any later point (VOCap.m's backward max; its sentinel 0 at recall 1
    # changes nothing). Each rise of recall contributes its width times the envelope at the point it reaches.
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    widths = np.diff(recall, prepend=0.0)
    return math.fsum((widths * envelope).tolist())


def check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
