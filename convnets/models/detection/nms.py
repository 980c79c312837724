"""Greedy non-maximum suppression with static output shapes (jit-able, vmap-able).

The greedy rule is the authors' (py-faster-rcnn lib/nms/py_cpu_nms.py, the R-CNN and Fast R-CNN test code):
visit boxes by decreasing score, keep a box unless a kept box overlaps it with IoU > ``iou_threshold`` (strictly
greater). Equal scores are visited lower index first (``lax.top_k`` order; the authors' ``argsort()[::-1]``
leaves ties in an unspecified order).

Implementation: one ``lax.while_loop`` iteration per KEPT box: take the first still-unsuppressed candidate in score
order, record it, and suppress every candidate it overlaps. The loop ends after ``max_output`` boxes or when no
candidate is left, so the work is O(kept x N) and no N x N IoU matrix is formed (12000 x 12000 would be 576 MB).
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
from jax import Array, lax

from convnets.models.detection import boxes as box_ops

PAD = -1  # index of the unused output slots


def _order(scores: Array, valid: Array, k: int) -> tuple[Array, Array]:
    """The ``k`` best candidates by score (invalid ones last, never selected): (indices [k], valid [k])."""
    key = jnp.where(valid, scores, -jnp.inf)
    _, order = lax.top_k(key, k)
    return order, valid[order]


def _greedy(
    boxes: Array,
    classes: Array | None,
    candidates: Array,
    *,
    iou_threshold: float,
    max_output: int,
    pixel_offset: float,
) -> tuple[Array, Array]:
    """Greedy NMS over ``boxes`` already in visiting order; ``candidates`` [K] marks the selectable ones.

    Returns positions (into the sorted arrays) [max_output] padded with PAD, and the count. With ``classes``,
    a box only suppresses boxes of its own class.
    """
    k = boxes.shape[0]
    # Derived from the data (adds 0), so that under shard_map the carry has the data's (device-varying) type.
    zero = jnp.zeros((), jnp.int32) * jnp.any(candidates).astype(jnp.int32)
    positions = jnp.full((max_output,), PAD, jnp.int32) + zero

    def cond(state):
        count, remaining, _ = state
        return (count < max_output) & jnp.any(remaining)

    def body(state):
        count, remaining, positions = state
        i = jnp.argmax(remaining)  # the first remaining candidate: the best score left
        iou = box_ops.iou_matrix(boxes[i][None], boxes, pixel_offset=pixel_offset)[0]
        suppress = iou > iou_threshold
        if classes is not None:
            suppress &= classes == classes[i]
        remaining = remaining & ~suppress & (jnp.arange(k) != i)
        positions = positions.at[count].set(i.astype(jnp.int32))
        return count + 1, remaining, positions

    count, _, positions = lax.while_loop(cond, body, (zero, candidates, positions))
    return positions, count


def nms(
    boxes: Array,
    scores: Array,
    *,
    iou_threshold: float,
    max_output: int,
    valid: Array | None = None,
    pre_nms_top_n: int | None = None,
    classes: Array | None = None,
    pixel_offset: float = 0.0,
) -> tuple[Array, Array]:
    """Greedy NMS of ``boxes [N, 4]`` with ``scores [N]``: ``(indices [max_output] int32, valid_count)``.

    ``indices`` are positions in ``boxes`` by decreasing score, the first ``valid_count`` real, the rest ``PAD``
    (-1; ``boxes[indices]`` then reads the last box, so mask with ``jnp.arange(max_output) < valid_count``).
    ``valid [N]`` (bool) excludes boxes (padding, too small, below a score threshold): they are never selected and
    suppress nothing; NaN scores count as invalid. ``pre_nms_top_n`` keeps only the best that many by score before
    NMS (Faster R-CNN: 12000 train / 6000 test, then NMS 0.7 to 2000 / 300), with ``lax.top_k``. With
    ``classes [N]`` (int) a box suppresses only boxes of its class: per-class NMS in one pass, whose kept set is
    exactly the union of the per-class NMS results truncated to the ``max_output`` best scores.
    """
    n = boxes.shape[0]
    valid = jnp.ones((n,), bool) if valid is None else valid.astype(bool)
    valid = valid & ~jnp.isnan(scores)
    k = n if pre_nms_top_n is None else min(pre_nms_top_n, n)
    if n == 0 or max_output == 0:
        return jnp.full((max_output,), PAD, jnp.int32), jnp.int32(0)
    order, candidates = _order(scores, valid, k)
    sorted_classes = None if classes is None else classes[order]
    positions, count = _greedy(
        boxes[order],
        sorted_classes,
        candidates,
        iou_threshold=iou_threshold,
        max_output=max_output,
        pixel_offset=pixel_offset,
    )
    indices = jnp.where(positions >= 0, order[jnp.maximum(positions, 0)], PAD).astype(jnp.int32)
    return indices, count


def batched_nms(
    boxes: Array,
    scores: Array,
    classes: Array,
    *,
    iou_threshold: float,
    max_output: int,
    valid: Array | None = None,
    pre_nms_top_n: int | None = None,
    pixel_offset: float = 0.0,
) -> tuple[Array, Array]:
    """Per-class NMS of ``boxes [N, 4]``, ``scores [N]``, ``classes [N]``: ``(indices [max_output], valid_count)``.

    Boxes of different classes never suppress each other (the same as torchvision's class-offset trick, but exact:
    no coordinate offsets that would perturb IoUs in float32). Output in decreasing score over all classes.
    """
    return nms(
        boxes,
        scores,
        iou_threshold=iou_threshold,
        max_output=max_output,
        valid=valid,
        pre_nms_top_n=pre_nms_top_n,
        classes=classes,
        pixel_offset=pixel_offset,
    )


class Detections(NamedTuple):
    """A fixed number of detections of one image; rows ``>= count`` are padding (zero boxes, score 0, class -1)."""

    boxes: Array  # [D, 4]
    scores: Array  # [D]
    classes: Array  # [D] int32, in 1..K-1 (0 is background)
    count: Array  # int32 scalar


def detect(
    boxes: Array,
    scores: Array,
    *,
    iou_threshold: float = 0.3,
    max_detections: int = 100,
    score_threshold: float = 0.05,
    valid: Array | None = None,
    background_class: int = 0,
    pre_nms_top_n: int | None = None,
    pixel_offset: float = 0.0,
) -> Detections:
    """Fast R-CNN test-time detections of one image, from class scores ``[R, K]`` and boxes ``[R, K, 4]`` or ``[R, 4]``.

    As py-faster-rcnn's ``test_net`` (lib/fast_rcnn/test.py): for every class but the background, the RoIs with
    score > ``score_threshold`` (0.05 there; R-CNN and the original fast-rcnn code used none: pass -inf) go
    through greedy NMS at ``iou_threshold`` (``TEST.NMS = 0.3``), then only the ``max_detections`` (100) best
    detections over all classes are kept. ``test_net`` keeps every detection scoring at least the 100th best, so
    it can keep more than 100 on exact ties; here it is exactly at most ``max_detections``. ``valid [R]`` masks
    padded RoIs. Class-agnostic boxes ``[R, 4]`` (no box regression) are shared by every class.
    """
    r, k = scores.shape
    if boxes.ndim == 2:
        boxes = jnp.broadcast_to(boxes[:, None, :], (r, k, 4))
    class_ids = jnp.broadcast_to(jnp.arange(k, dtype=jnp.int32)[None, :], (r, k))
    roi_valid = jnp.ones((r,), bool) if valid is None else valid.astype(bool)
    ok = roi_valid[:, None] & (scores > score_threshold) & (class_ids != background_class)
    flat_boxes, flat_scores = boxes.reshape(r * k, 4), scores.reshape(r * k)
    flat_classes, flat_ok = class_ids.reshape(r * k), ok.reshape(r * k)
    indices, count = nms(
        flat_boxes,
        flat_scores,
        iou_threshold=iou_threshold,
        max_output=max_detections,
        valid=flat_ok,
        pre_nms_top_n=pre_nms_top_n,
        classes=flat_classes,
        pixel_offset=pixel_offset,
    )
    real = jnp.arange(max_detections) < count
    safe = jnp.maximum(indices, 0)
    return Detections(
        boxes=jnp.where(real[:, None], flat_boxes[safe], 0.0),
        scores=jnp.where(real, flat_scores[safe], 0.0),
        classes=jnp.where(real, flat_classes[safe], -1),
        count=count,
    )


