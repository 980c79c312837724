"""Faster R-CNN RPN training targets and loss: anchor labels, the 256-anchor minibatch, eq. 1 (static shapes).

Ren et al. 2015, sec. 3.1.2 "Loss Function" and sec. 3.1.3 "Training RPNs"; the authors' py-faster-rcnn
``lib/rpn/anchor_target_layer.py``. Labels: 1 object, 0 background, -1 ignored (``sampling.FOREGROUND`` etc.).

* Anchors crossing the image boundary are ignored in training (sec. 3.3 "Implementation Details"): an anchor is
  inside when ``x1 >= -allowed_border`` and ``x2 < width + allowed_border`` in the inclusive convention
  (``_allowed_border = 0``), i.e. ``x2_edge < width + allowed_border + 1`` on edge boxes.
* Positive: the anchor(s) with the highest IoU with a gt box (every anchor reaching that gt's maximum, ties
  included, as ``gt_argmax_overlaps``), or IoU >= 0.7 with any gt box. The paper's text says "higher than 0.7";
  we follow the code (``max_overlaps >= RPN_POSITIVE_OVERLAP``), which only differs at exactly 0.7. Unlike the code,
  a gt box that overlaps no inside anchor at all (max IoU 0) makes no anchor positive: py-faster-rcnn's
  ``overlaps == gt_max_overlaps`` would then mark every anchor with IoU 0 to it positive.
* Negative: max IoU < 0.3 with every gt box (and not positive; the best-anchor rule wins, as
  ``RPN_CLOBBER_POSITIVES = False``). An image without (usable) gt boxes has max IoU 0: all inside anchors are
  negative, nothing is NaN.
* Minibatch: 256 anchors per image, up to 128 (``RPN_FG_FRACTION = 0.5``) positives, filled with negatives; the
  rest are disabled (-1). Drawn by ``sampling.sample_balanced`` (random keys + ``lax.top_k``).
* Loss (eq. 1): ``(1 / N_cls) sum_i L_cls(p_i, p*_i) + lambda (1 / N_reg) sum_i p*_i L_reg(t_i, t*_i)``, L_cls the
  log loss over the sampled anchors, L_reg smooth L1 (Fast R-CNN eq. 3) on the positives, ``N_cls = 256``,
  ``N_reg ~ 2400`` (the number of anchor locations), ``lambda = 10``. py-faster-rcnn instead averages L_cls over the
  sampled anchors, uses lambda 1 with 1/N_sampled weights and smooth L1 with sigma 3 (``beta = 1/9`` here);
  ``n_cls=None`` and ``beta`` select those.

Regression targets use ``boxes.encode`` with unit weights (RPN targets are not normalised in py-faster-rcnn).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import Array

from convnets.models.detection import boxes as box_ops
from convnets.models.detection import sampling
from convnets.models.detection.losses import smooth_l1

FOREGROUND, BACKGROUND, IGNORE = sampling.FOREGROUND, sampling.BACKGROUND, sampling.IGNORE


def inside_image(
    anchors: Array, image_height: float | Array, image_width: float | Array, allowed_border: float = 0
) -> Array:
    """Mask ``[N]``: anchors (edge boxes) that do not cross the image border by more than ``allowed_border`` pixels."""
    y1, x1, y2, x2 = anchors[:, 0], anchors[:, 1], anchors[:, 2], anchors[:, 3]
    # Inclusive x2 = x2_edge - 1 must be < width + allowed_border (anchor_target_layer's inds_inside).
    return (
        (y1 >= -allowed_border)
        & (x1 >= -allowed_border)
        & (y2 - 1 < image_height + allowed_border)
        & (x2 - 1 < image_width + allowed_border)
    )


def label_anchors(
    anchors: Array,
    gt_boxes: Array,
    gt_mask: Array,
    image_height: float | Array,
    image_width: float | Array,
    *,
    pos_iou: float = 0.7,
    neg_iou: float = 0.3,
    allowed_border: float = 0,
) -> tuple[Array, Array]:
    """``(labels [N] int32 in {1, 0, -1}, gt_index [N] int32)`` for ``anchors [N, 4]`` and ``gt_boxes [G, 4]``.

    ``gt_mask [G]`` is True for real gt rows (padding rows are never matched). ``gt_index`` is the highest-IoU gt
    box of each anchor (0 where the image has none); ``regression_targets`` turns it into the t* of eq. 1.
    See the module docstring for the rules.
    """
    n = anchors.shape[0]
    inside = inside_image(anchors, image_height, image_width, allowed_border)
    if gt_boxes.shape[0] == 0:
        return jnp.where(inside, BACKGROUND, IGNORE).astype(jnp.int32), jnp.zeros((n,), jnp.int32)
    usable = gt_mask.astype(bool)
    iou = box_ops.iou_matrix(anchors, gt_boxes)  # [N, G]
    # Outside anchors and padding gt rows take no part (py-faster-rcnn computes overlaps on inds_inside only).
    iou = jnp.where(inside[:, None] & usable[None, :], iou, -1.0)
    gt_index = jnp.argmax(iou, axis=1).astype(jnp.int32)
    max_iou = jnp.max(iou, axis=1)  # -1 for outside anchors or an image without usable gt
    has_gt = jnp.any(usable)
    gt_index = jnp.where(has_gt, gt_index, 0)
    max_iou = jnp.where(has_gt, max_iou, 0.0)
    gt_max = jnp.max(iou, axis=0)  # [G] best inside-anchor IoU of each gt box
    best_for_some_gt = jnp.any((iou == gt_max[None, :]) & (gt_max[None, :] > 0) & usable[None, :], axis=1)
    labels = jnp.full((n,), IGNORE, jnp.int32)
    labels = jnp.where(max_iou < neg_iou, BACKGROUND, labels)
    labels = jnp.where(best_for_some_gt | (max_iou >= pos_iou), FOREGROUND, labels)
    labels = jnp.where(inside, labels, IGNORE)
    return labels, gt_index


def regression_targets(anchors: Array, gt_boxes: Array, gt_index: Array) -> Array:
    """t* ``[N, 4] = (dy, dx, dh, dw)`` moving each anchor onto its matched gt box (finite; mask by the labels)."""
    if gt_boxes.shape[0] == 0:
        return jnp.zeros(anchors.shape, anchors.dtype)
    return box_ops.encode(gt_boxes[gt_index], anchors)


def sample_anchors(labels: Array, key: Array, batch_size: int = 256, fg_fraction: float = 0.5) -> Array:
    """The minibatch as labels ``[N]``: up to ``round(fg_fraction * batch_size)`` positives, negatives filling the
    rest of ``batch_size``, every other anchor -1 (disabled), as py-faster-rcnn's subsampling in
    ``anchor_target_layer.py``. Static shapes: ``sampling.sample_balanced`` draws with random keys + top-k.
    """
    n = labels.shape[0]
    indices, ok = sampling.sample_balanced(labels, key, batch_size, fg_fraction)
    # Invalid slots scatter to index n, out of bounds, and are dropped.
    target = jnp.where(ok, indices, n)
    picked = labels[jnp.clip(indices, 0, max(n - 1, 0))] if n else jnp.zeros_like(indices)
    return jnp.full((n,), IGNORE, jnp.int32).at[target].set(picked.astype(jnp.int32), mode='drop')


class RPNLoss(NamedTuple):
    total: Array  # cls + lam * reg
    cls: Array  # (1 / N_cls) sum L_cls over the sampled anchors
    reg: Array  # (1 / N_reg) sum p* L_reg (before lambda)


def rpn_loss(
    logits: Array,
    deltas: Array,
    labels: Array,
    targets: Array,
    *,
    n_cls: float | None = 256,
    n_reg: float,
    lam: float = 10.0,
    beta: float = 1.0,
) -> RPNLoss:
    """Faster R-CNN eq. 1 for one image; ``labels [N]`` are the sampled labels (1 / 0 / -1 ignored).

    ``logits`` are ``[N, 2]`` (softmax over background / object, the paper's 2k scores) or ``[N]`` (a sigmoid
    logit, the paper's footnote alternative). ``deltas`` and ``targets`` are ``[N, 4]``. ``n_cls=None`` divides by
    the number of sampled anchors instead of a constant (py-faster-rcnn's SoftmaxWithLoss normalisation).
    """
    sampled = labels >= 0
    positive = (labels == FOREGROUND).astype(deltas.dtype)
    y = jnp.where(sampled, labels, 0)
    if logits.ndim == 2:
        log_p = jax.nn.log_softmax(logits, axis=-1)
        nll = -jnp.take_along_axis(log_p, y[:, None], axis=-1)[:, 0]
    else:
        # log loss of a sigmoid: -log sigmoid(z) for 1, -log sigmoid(-z) for 0
        nll = -jnp.where(y == 1, jax.nn.log_sigmoid(logits), jax.nn.log_sigmoid(-logits))
    denom_cls = jnp.maximum(jnp.sum(sampled), 1).astype(nll.dtype) if n_cls is None else n_cls
    cls = jnp.sum(jnp.where(sampled, nll, 0.0)) / denom_cls
    reg = jnp.sum(positive[:, None] * smooth_l1(deltas - targets, beta)) / n_reg
    return RPNLoss(total=cls + lam * reg, cls=cls, reg=reg)
