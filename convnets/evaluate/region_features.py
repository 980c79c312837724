"""CNN features of every region of an image, on device with static shapes: what R-CNN's SVMs, box regressors and
test-time scoring read (Girshick et al. 2014, sec. 2.2 "Feature extraction", 2.3, appendix C).

Regions of an image: its proposals [P] followed by its ground-truth boxes [G] (R-CNN's roidb lists the gt boxes
first, roidb_from_voc.m; the order does not matter here). For each region the device returns:
- 'regions' [P + G, 4], 'valid' [P + G] (real proposals, usable gt boxes), 'is_gt' [P + G];
- 'overlap' [P + G, N]: the region's IoU with the usable ground truth of each class (the roidb's
  `overlap` matrix: per class, the max over that class's boxes), 0 for classes absent from the image;
- one array per requested layer, [P + G, D] (pool5 flattened row-major, fc6 and fc7 after their ReLU);
- with `softmax`, 'probs' [P + G, N + 1] (the fine-tuned network's own (N+1)-way output, Table 2's alternative);
- with `class_boxes` (Fast R-CNN only), 'class_boxes' [P + G, N, 4]: its class-specific regression of each region.

Networks:
- task 'rcnn' (a classifier on warped regions): the regions are warped (`convnets.models.detection.warp`) and
  pushed through the classifier `chunk` regions at a time (`lax.map`), reading the layers it sows ('pool5', 'fc6',
  'fc7' in AlexNet and VGG);
- task 'detection' (Fast R-CNN, for its "SVM instead of softmax" row, Table 8): one pass of the image with every
  region as a RoI, reading fc6 / fc7 after their ReLU ('pool5' there is the RoI-pooled map, not captured).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from ml_collections import ConfigDict

from convnets.models.detection import boxes as box_ops
from convnets.models.detection import warp
from convnets.train.precision import Policy

CLASSIFIER_LAYERS = ('pool5', 'fc6', 'fc7')
DETECTOR_LAYERS = ('fc6', 'fc7')


def class_overlaps(regions: jax.Array, gt: jax.Array, gt_classes: jax.Array, usable: jax.Array,
                   num_classes: int) -> jax.Array:
    """``[R, N]``: per class, the max IoU of each region with that class's usable gt boxes (0 if none)."""
    iou = box_ops.iou_matrix(regions, gt)  # [R, G]
    one_hot = jax.nn.one_hot(gt_classes, num_classes, dtype=bool) & usable[:, None]  # [G, N]
    return jnp.max(jnp.where(one_hot[None], iou[:, :, None], 0.0), axis=1, initial=0.0)


def _classifier_features(config: ConfigDict, model: nn.Module, variables: Any, batch: Mapping[str, jax.Array],
                         regions: jax.Array, layers: Sequence[str], softmax: bool, chunk: int) -> dict[str, jax.Array]:
    b, r = regions.shape[:2]
    total = b * r
    chunks = -(-total // chunk)
    flat = jnp.concatenate([regions.reshape(total, 4), jnp.zeros((chunks * chunk - total, 4), regions.dtype)])
    image_index = jnp.concatenate([jnp.repeat(jnp.arange(b), r), jnp.zeros((chunks * chunk - total,), jnp.int32)])

    def one(args):
        boxes, index = args
        crops = warp.warp_regions(batch['image'], boxes, index, crop_size=config.rcnn.warp_size,
                                  context_pad=config.rcnn.context_pad, mode=config.rcnn.warp_mode,
                                  image_sizes=batch.get('image_size'))
        logits, sown = Policy.from_config(config).apply(model, variables, crops, train=False, mutable=['intermediates'])
        out = {k: sown['intermediates'][k][0].reshape(chunk, -1).astype(jnp.float32) for k in layers}
        if softmax:
            out['probs'] = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        return out

    out = lax.map(one, (flat.reshape(chunks, chunk, 4), image_index.reshape(chunks, chunk)))
    return {k: v.reshape(chunks * chunk, -1)[:total].reshape(b, r, -1) for k, v in out.items()}


def _detector_features(config: ConfigDict, model: nn.Module, variables: Any, batch: Mapping[str, jax.Array],
                       regions: jax.Array, layers: Sequence[str], softmax: bool, class_boxes: bool
                       ) -> dict[str, jax.Array]:
    b, r = regions.shape[:2]
    # fc6 / fc7 before their ReLU: the layer itself, or its second half under truncated SVD (fc7_U_layer).
    names = {f'{k}{part}_layer' for k in layers for part in ('', '_U')}
    (logits, deltas), sown = Policy.from_config(config).apply(
        model, variables, batch['image'], regions, train=False, mutable=['intermediates'],
        capture_intermediates=lambda mdl, _: mdl.name in names)
    found = sown['intermediates']
    out = {k: jax.nn.relu(found[f'{k}_layer' if f'{k}_layer' in found else f'{k}_U_layer']['__call__'][0]
                          ).reshape(b, r, -1) for k in layers}
    if softmax:
        out['probs'] = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    if class_boxes:  # its class-specific regression of every region, [P + G, N, 4] (as the 'detection' evaluator)
        out['class_boxes'] = box_ops.decode(deltas.astype(jnp.float32), regions[:, :, None, :],
                                            tuple(config.detection.box_weights))
    return out


def extract(config: ConfigDict, model: nn.Module, variables: Any, batch: Mapping[str, jax.Array], *,
            layers: Sequence[str], softmax: bool, num_classes: int, chunk: int, with_proposals: bool = True,
            use_difficult: bool = False, class_boxes: bool = False) -> dict[str, jax.Array]:
    """The per-region outputs of the module docstring for one device's slice of the batch. Without
    `with_proposals` only the gt boxes are regions (the SVM positives: a pass that costs G, not P + G, regions).
    `use_difficult`: difficult gt boxes count as ground truth too (R-CNN's roidb keeps every annotated object)."""
    from convnets.tasks.detection import proposals  # the task module imports this package

    gt, gt_mask = batch['boxes'].astype(jnp.float32), batch['box_mask'].astype(bool)
    usable = gt_mask if use_difficult else gt_mask & ~batch['box_difficult'].astype(bool)
    if with_proposals:
        props, prop_mask = proposals(config, batch)
        regions = jnp.concatenate([props, gt], axis=1)
        valid = jnp.concatenate([prop_mask, usable], axis=1)
        is_gt = jnp.concatenate([jnp.zeros(prop_mask.shape, bool), jnp.ones(gt_mask.shape, bool)], axis=1)
    else:
        regions, valid, is_gt = gt, usable, jnp.ones(gt_mask.shape, bool)
    classes = batch['box_classes'].astype(jnp.int32)
    overlap = jax.vmap(lambda rg, g, c, u: class_overlaps(rg, g, c, u, num_classes))(regions, gt, classes, usable)
    if config.task == 'detection':
        feats = _detector_features(config, model, variables, batch, regions, layers, softmax, class_boxes)
    else:
        feats = _classifier_features(config, model, variables, batch, regions, layers, softmax, chunk)
    return {'regions': regions, 'valid': valid, 'is_gt': is_gt, 'overlap': overlap, **feats}
