"""The Faster R-CNN proposal layer: RPN outputs on anchors -> a fixed number of object proposals (jit-able).

Ren et al. 2015 ("Faster R-CNN"), sec. 3.1.2-3.3, and py-faster-rcnn's ``lib/rpn/proposal_layer.py``, in the same
order: (1) apply the predicted deltas to the anchors (``bbox_transform_inv``), (2) clip the boxes to the image,
(3) drop boxes with height or width below ``min_size`` (``RPN_MIN_SIZE = 16``), (4) keep the ``pre_nms_top_n``
best by objectness (``RPN_PRE_NMS_TOP_N``: 12000 train / 6000 test), (5) greedy NMS at IoU 0.7
(``RPN_NMS_THRESH``), (6) keep the ``post_nms_top_n`` best (``RPN_POST_NMS_TOP_N``: 2000 train / 300 test).

Static shapes: step (3) is a validity mask, not boolean indexing; (4)-(6) are the project's fixed-size ``nms``
(``valid`` + ``pre_nms_top_n`` via ``lax.top_k``, invalid boxes ranked last and never kept, which equals the
authors' filter-then-sort). The output always has ``post_nms_top_n`` rows; rows past the kept count are padding
(zero boxes, score 0, ``valid`` False). py-faster-rcnn returns fewer rows instead.

Differences from py-faster-rcnn, all deliberate:

* ``min_size`` is in PIXELS of the (resized) input image. py-faster-rcnn multiplies ``RPN_MIN_SIZE = 16`` by the
  image's resize factor ``im_info[2]``; a caller porting that passes ``min_size=16 * scale``.
* Boxes use the project's edge convention (``boxes.py``: width ``x2 - x1``, clip to ``[0, width]``) and deltas are
  ``(dy, dx, dh, dw)``. py-faster-rcnn uses inclusive pixel indices (width ``x2 - x1 + 1``, clip to
  ``width - 1``, keep ``w + 1 >= min_size``) and ``(dx, dy, dw, dh)``; ``pixel_offset=1`` reproduces its widths,
  clipping and size test (its ``bbox_transform_inv`` also omits the ``- 1`` on the far corner; see ``boxes.decode``).
* ``dh`` and ``dw`` are clamped at ``log(1000 / 16)`` before ``exp`` (``boxes.DEFAULT_CLAMP``, as torchvision and
  Detectron) so a wild RPN output cannot give inf boxes; ``clamp=None`` is py-faster-rcnn's unclamped decode.
* Equal scores are visited lower anchor index first (``lax.top_k``); numpy's ``argsort()[::-1]`` there does not
  define the order of ties.

Gradients: the layer has no backward pass in py-faster-rcnn (``backward`` is a no-op), and the paper's approximate
joint training (sec. 3.2) "ignores the derivative w.r.t. the proposal boxes' coordinates". ``propose`` therefore
applies ``lax.stop_gradient`` to its inputs itself: callers need not (and cannot) differentiate through it; the RPN
learns only from its own loss on the anchors.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from convnets.models.detection import boxes as box_ops
from convnets.models.detection import nms as nms_ops


class Proposals(NamedTuple):
    """``post_nms_top_n`` proposals of one image (or ``[B, ...]`` from ``propose_batch``) by decreasing score."""

    boxes: Array  # [P, 4] (y1, x1, y2, x2) pixel edges; padding rows are zeros
    scores: Array  # [P] the objectness the proposal was ranked by; padding rows are 0
    valid: Array  # [P] bool: True for the first ``count`` rows


def _check_shapes(anchors: Array, scores: Array, deltas: Array) -> None:
    n = anchors.shape[0]
    if anchors.ndim != 2 or anchors.shape[1] != 4:
        raise ValueError(f"proposal layer: anchors must be [N, 4], got shape {tuple(anchors.shape)}")
    if scores.shape != (n,):
        raise ValueError(
            f"proposal layer: scores must be [N] = [{n}] (one foreground objectness per anchor; take the "
            f"foreground column of a 2-way softmax), got shape {tuple(scores.shape)}"
        )
    if deltas.shape != (n, 4):
        raise ValueError(f"proposal layer: deltas must be [N, 4] = [{n}, 4], got shape {tuple(deltas.shape)}")


def propose(
    anchors: Array,
    scores: Array,
    deltas: Array,
    image_height: float | Array,
    image_width: float | Array,
    *,
    pre_nms_top_n: int = 12000,
    post_nms_top_n: int = 2000,
    nms_iou: float = 0.7,
    min_size: float = 16.0,
    box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clamp: float | None = box_ops.DEFAULT_CLAMP,
    pixel_offset: float = 0.0,
) -> Proposals:
    """Proposals of one image from anchors ``[N, 4]``, objectness ``scores [N]`` and RPN ``deltas [N, 4]``.

    Defaults are the training values (py-faster-rcnn ``TRAIN.RPN_PRE_NMS_TOP_N = 12000``,
    ``RPN_POST_NMS_TOP_N = 2000``); at test time pass 6000 / 300. ``min_size`` is in pixels of the network's input
    image (already multiplied by the resize factor). ``image_height`` / ``image_width`` are the real (unpadded)
    image size, Python numbers or traced scalars. NaN scores are never proposed. No gradient flows out of this
    function (see the module docstring). Returns ``Proposals(boxes [P, 4], scores [P], valid [P])`` with
    ``P = post_nms_top_n``.
    """
    _check_shapes(anchors, scores, deltas)
    anchors, scores, deltas = (lax.stop_gradient(jnp.asarray(v)) for v in (anchors, scores, deltas))
    boxes = box_ops.decode(deltas, anchors, box_weights, clamp=clamp, pixel_offset=pixel_offset)
    boxes = box_ops.clip(boxes, image_height, image_width, pixel_offset=pixel_offset)
    keep = box_ops.remove_small(boxes, min_size, pixel_offset=pixel_offset)
    indices, count = nms_ops.nms(
        boxes,
        scores,
        iou_threshold=nms_iou,
        max_output=post_nms_top_n,
        valid=keep,
        pre_nms_top_n=pre_nms_top_n,
        pixel_offset=pixel_offset,
    )
    valid = jnp.arange(post_nms_top_n) < count
    safe = jnp.maximum(indices, 0)  # PAD (-1) rows read row 0, then are zeroed
    return Proposals(
        boxes=jnp.where(valid[:, None], boxes[safe], 0.0),
        scores=jnp.where(valid, scores[safe], 0.0),
        valid=valid,
    )


def propose_batch(
    anchors: Array,
    scores: Array,
    deltas: Array,
    image_height: float | Array,
    image_width: float | Array,
    **kwargs,
) -> Proposals:
    """``propose`` over a batch: ``scores [B, N]``, ``deltas [B, N, 4]``; ``anchors`` ``[N, 4]`` (shared, the
    usual case: one feature-map shape per batch) or ``[B, N, 4]``; image sizes scalars or ``[B]`` (each image's
    real size inside the padded batch). Keyword arguments as ``propose``. Returns ``[B, P, ...]`` proposals.
    """
    anchors, scores, deltas = jnp.asarray(anchors), jnp.asarray(scores), jnp.asarray(deltas)
    image_height, image_width = jnp.asarray(image_height), jnp.asarray(image_width)
    if scores.ndim != 2 or deltas.ndim != 3:
        raise ValueError(
            f"proposal layer: propose_batch takes scores [B, N] and deltas [B, N, 4], got shapes "
            f"{tuple(scores.shape)} and {tuple(deltas.shape)}; use propose for one image"
        )
    in_axes = (
        None if anchors.ndim == 2 else 0,
        0,
        0,
        None if image_height.ndim == 0 else 0,
        None if image_width.ndim == 0 else 0,
    )

    def one(a, s, d, h, w):
        return propose(a, s, d, h, w, **kwargs)

    return jax.vmap(one, in_axes=in_axes)(anchors, scores, deltas, image_height, image_width)
