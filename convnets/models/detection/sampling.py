"""Training targets with static shapes: match proposals to ground truth, sample balanced minibatches of RoIs.

Labels: 1 foreground, 0 background, -1 ignored (neither). Fast R-CNN (sec. 2.3 "Mini-batch sampling";
py-faster-rcnn lib/roi_data_layer/minibatch.py ``_sample_rois``): foreground IoU >= 0.5, background IoU in
[0.1, 0.5), 25% foreground in 64 RoIs per image. R-CNN fine-tuning: foreground IoU >= 0.5, every other proposal
background (``bg_low=0``), 32 of 128 foreground; R-CNN SVMs: negatives IoU < 0.3 (``bg_high=0.3``), positives the
ground-truth boxes only. Faster R-CNN's RPN labels (IoU > 0.7, best anchor per gt) belong to its own module.

``difficult`` ground truth: py-faster-rcnn drops difficult objects from the training annotations by default
(``use_diff: False`` in lib/datasets/pascal_voc.py), so a proposal on a difficult object is matched to nothing
there. ``match`` does the same unless ``use_difficult=True``. An image whose gt boxes are all difficult (or that
has none) has max IoU 0 everywhere: every proposal is background if ``bg_low <= 0`` (R-CNN) and ignored
otherwise (Fast R-CNN's [0.1, 0.5) band; py-faster-rcnn's ``filter_roidb`` drops such images, and here they simply
contribute no sampled RoI). Either way nothing is NaN.

Fast R-CNN also counts the gt boxes themselves as RoIs (its roidb appends them to the proposals): concatenate them
to ``proposals`` (with their mask) before calling ``match``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array, lax

from convnets.models.detection import boxes as box_ops

FOREGROUND, BACKGROUND, IGNORE = 1, 0, -1
PAD = -1


class Match(NamedTuple):
    """Per proposal: best gt index, its IoU, label (1 / 0 / -1) and the matched gt box."""

    gt_index: Array  # [N] int32, 0 where the image has no usable gt box
    max_iou: Array  # [N] float, 0 where the image has no usable gt box
    labels: Array  # [N] int32: FOREGROUND, BACKGROUND or IGNORE
    matched_boxes: Array  # [N, 4]: gt_boxes[gt_index], or the proposal itself where there is no usable gt box


def match(
    proposals: Array,
    gt_boxes: Array,
    gt_mask: Array,
    *,
    fg_threshold: float = 0.5,
    bg_low: float = 0.1,
    bg_high: float = 0.5,
    proposal_mask: Array | None = None,
    difficult: Array | None = None,
    use_difficult: bool = False,
    pixel_offset: float = 0.0,
) -> Match:
    """Matches ``proposals [N, 4]`` to ``gt_boxes [G, 4]`` (``gt_mask [G]`` True for real rows).

    Foreground: max IoU >= ``fg_threshold``; background: ``bg_low <= max IoU < bg_high``; the rest (and proposals
    with ``proposal_mask`` False) IGNORE. Ties in IoU go to the lower gt index (``argmax``). ``matched_boxes``
    falls back to the proposal itself where the image has no usable gt box, so ``encode(matched_boxes, proposals)``
    is finite (zero) for every row. ``difficult [G]`` gt boxes are left out unless ``use_difficult`` (see the
    module docstring).
    """
    usable = gt_mask.astype(bool)
    if difficult is not None and not use_difficult:
        usable &= ~difficult.astype(bool)
    iou = box_ops.iou_matrix(proposals, gt_boxes, pixel_offset=pixel_offset)  # [N, G]
    iou = jnp.where(usable[None, :], iou, -1.0)
    if gt_boxes.shape[0] == 0:
        gt_index = jnp.zeros((proposals.shape[0],), jnp.int32)
        max_iou = jnp.zeros((proposals.shape[0],), proposals.dtype)
        has_gt = jnp.bool_(False)
        matched = proposals
    else:
        gt_index = jnp.argmax(iou, axis=1).astype(jnp.int32)
        has_gt = jnp.any(usable)
        max_iou = jnp.where(has_gt, jnp.max(iou, axis=1), 0.0)
        gt_index = jnp.where(has_gt, gt_index, 0)
        matched = jnp.where(has_gt, gt_boxes[gt_index], proposals)
    labels = jnp.full(max_iou.shape, IGNORE, jnp.int32)
    labels = jnp.where((max_iou >= bg_low) & (max_iou < bg_high), BACKGROUND, labels)
    labels = jnp.where(max_iou >= fg_threshold, FOREGROUND, labels)
    if proposal_mask is not None:
        labels = jnp.where(proposal_mask.astype(bool), labels, IGNORE)
    return Match(gt_index=gt_index, max_iou=max_iou, labels=labels, matched_boxes=matched)


def num_positives(num_samples: int, positive_fraction: float) -> int:
    """The most foreground samples: ``round(fraction * num)`` as py-faster-rcnn (``np.round(FG_FRACTION * ...)``)."""
    return int(round(positive_fraction * num_samples))


def sample_balanced(
    labels: Array, key: Array, num_samples: int, positive_fraction: float, *, valid: Array | None = None
) -> tuple[Array, Array]:
    """A random minibatch of ``labels [N]`` (1 / 0 / -1): ``(indices [num_samples] int32, valid [num_samples])``.

    As py-faster-rcnn's ``_sample_rois``: up to ``round(positive_fraction * num_samples)`` foreground entries drawn
    uniformly without replacement, then background entries, without replacement, to fill ``num_samples``; when
    either pool is short, fewer samples are valid (no duplicates, no ignored entries). The draw is uniform random
    keys + ``lax.top_k``, never boolean indexing. Valid slots come first, foreground before background; the rest
    are PAD (-1). ``valid [N]`` excludes entries like an IGNORE label.
    """
    n = labels.shape[0]
    if n == 0 or num_samples == 0:
        return jnp.full((num_samples,), PAD, jnp.int32), jnp.zeros((num_samples,), bool)
    if valid is not None:
        labels = jnp.where(valid.astype(bool), labels, IGNORE)
    max_fg = min(num_positives(num_samples, positive_fraction), n, num_samples)
    rand = jax.random.uniform(key, (n,))
    k_fg, k_bg = min(max_fg, n), min(num_samples, n)
    slot = jnp.arange(num_samples)
    if k_fg > 0:
        fg_keys, fg_idx = lax.top_k(jnp.where(labels == FOREGROUND, rand, -1.0), k_fg)
        num_fg = jnp.sum(fg_keys >= 0).astype(jnp.int32)
    else:
        fg_idx, num_fg = jnp.zeros((1,), jnp.int32), jnp.int32(0)
    bg_keys, bg_idx = lax.top_k(jnp.where(labels == BACKGROUND, rand, -1.0), k_bg)
    num_bg = jnp.minimum(jnp.sum(bg_keys >= 0), num_samples - num_fg).astype(jnp.int32)
    is_fg = slot < num_fg
    bg_slot = jnp.clip(slot - num_fg, 0, k_bg - 1)
    indices = jnp.where(is_fg, fg_idx[jnp.clip(slot, 0, fg_idx.shape[0] - 1)], bg_idx[bg_slot])
    ok = slot < num_fg + num_bg
    return jnp.where(ok, indices, PAD).astype(jnp.int32), ok
