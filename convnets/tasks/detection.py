"""Object detection with region-based networks (Fast R-CNN, Girshick 2015): the task the loop runs for detectors.

Batches hold 'image' [B, H, W, 3] and the ground truth padded to a fixed count: 'boxes' [B, G, 4] (edge boxes
(y1, x1, y2, x2) in the image's pixels), 'box_classes' [B, G] (0-based object classes), 'box_difficult' [B, G] and
'box_mask' [B, G] (the data ops `objects_to_boxes` and `pad_boxes` make them). Proposals (`config.detection`):
- 'grid': a fixed set of square and elongated windows on a regular grid (`grid_sizes`, `grid_ratios`,
  `grid_stride`), the same for every image: a stand-in for selective search on the embedded dataset, whose
  objects span a known range of sizes;
- 'batch': precomputed proposals in the batch ('proposals' [B, P, 4], 'proposal_mask' [B, P]), e.g. selective
  search boxes cached per image, as the paper used.

Training (sec. 2.3, "Mini-batch sampling"; py-faster-rcnn lib/roi_data_layer/minibatch.py): the ground-truth
boxes join the proposals as RoIs; each image contributes `rois_per_image` (64) RoIs, up to `fg_fraction` (25%)
foreground (IoU >= 0.5 with a non-difficult gt box) and background from IoU in [0.1, 0.5), sampled with static
shapes (random keys + top_k). Loss (eq. 1): log loss over K+1 classes + lambda [u >= 1] smooth-L1 (eq. 2-3) of the
true class's offsets against targets normalised as (10, 10, 5, 5) weights (= stds 0.1, 0.1, 0.2, 0.2). Both terms
are divided by the fixed number of RoI slots (images x rois_per_image), as Caffe's loss layers divide by the batch,
so the global loss does not depend on how the batch is split over devices.

Evaluators: 'detection' (VOC mAP, `convnets.evaluate.detection`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from ml_collections import ConfigDict

from convnets.evaluate import detection as detection_eval
from convnets.evaluate import proposal_recall, rcnn_svm
from convnets.models.detection import boxes as box_ops
from convnets.models.detection import losses, sampling
from convnets.tasks import base, sgd
from convnets.train.precision import Policy
from convnets.train.state import TrainState

NET = base.SingleNetwork.NET
PROPOSALS = ('grid', 'batch')


def grid_proposals(height: int, width: int, sizes: tuple[float, ...], ratios: tuple[float, ...],
                   stride: int) -> np.ndarray:
    """[P, 4] windows centred on a regular grid (every `stride` pixels, offset stride / 2), one per size and
    height:width ratio (area size^2), clipped to the canvas; duplicates after clipping removed."""
    cy, cx = np.meshgrid(np.arange(stride / 2, height, stride), np.arange(stride / 2, width, stride), indexing='ij')
    boxes = []
    for size in sizes:
        for ratio in ratios:
            h, w = size * np.sqrt(ratio), size / np.sqrt(ratio)
            boxes.append(np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=-1).reshape(-1, 4))
    boxes = np.concatenate(boxes)
    boxes = np.clip(boxes, 0, [height, width, height, width])
    keep = (boxes[:, 2] - boxes[:, 0] >= 2) & (boxes[:, 3] - boxes[:, 1] >= 2)
    return np.unique(np.round(boxes[keep], 2), axis=0).astype(np.float32)


def image_sizes(batch: Mapping[str, jax.Array]) -> jax.Array:
    """[B, 2] float (height, width) of each image inside its padded canvas ('image_size', else the canvas)."""
    b, h, w = batch['image'].shape[:3]
    if 'image_size' in batch:
        return batch['image_size'].astype(jnp.float32)
    return jnp.tile(jnp.array([[h, w]], jnp.float32), (b, 1))


def proposals(config: ConfigDict, batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array]:
    """The proposals [B, P, 4] of a batch and their mask [B, P]."""
    det = config.detection
    b, h, w = batch['image'].shape[:3]
    if det.proposals == 'grid':
        grid = jnp.asarray(grid_proposals(h, w, tuple(det.grid_sizes), tuple(det.grid_ratios), det.grid_stride))
        boxes = jnp.broadcast_to(grid, (b, *grid.shape))
        mask = jnp.ones(boxes.shape[:2], bool)
    else:
        boxes, mask = batch['proposals'], batch['proposal_mask'].astype(bool)
    if 'image_size' in batch:  # padded canvases: keep proposals inside the real image
        size = batch['image_size'].astype(jnp.float32)
        boxes = box_ops.clip(boxes, size[:, 0:1], size[:, 1:2])  # components [B, P] against [B, 1]
        mask &= box_ops.remove_small(boxes, 1.0)
    return boxes, mask


def sample_rois(config: ConfigDict, keys: jax.Array, props: jax.Array, prop_mask: jax.Array,
                batch: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
    """Per image (one PRNG key each, `keys` [B]): `rois_per_image` RoIs [B, R, 4], their class labels [B, R]
    (0 background), regression targets [B, R, 4] and validity [B, R] (see the module docstring)."""
    det = config.detection
    gt, gt_mask = batch['boxes'], batch['box_mask'].astype(bool)
    difficult = batch['box_difficult'].astype(bool)
    if det.include_gt_rois:  # py-faster-rcnn: the roidb's gt boxes are RoIs too (non-difficult ones)
        props = jnp.concatenate([props, gt], axis=1)
        prop_mask = jnp.concatenate([prop_mask, gt_mask & ~difficult], axis=1)

    def one(key, props, prop_mask, gt, gt_mask, difficult, classes):
        m = sampling.match(props, gt, gt_mask, fg_threshold=det.fg_iou, bg_low=det.bg_iou_low,
                           bg_high=det.bg_iou_high, proposal_mask=prop_mask, difficult=difficult)
        idx, ok = sampling.sample_balanced(m.labels, key, det.rois_per_image, det.fg_fraction)
        idx = jnp.maximum(idx, 0)
        fg = ok & (m.labels[idx] == sampling.FOREGROUND)
        labels = jnp.where(fg, classes[m.gt_index[idx]] + 1, 0)
        rois = props[idx]
        targets = box_ops.encode(m.matched_boxes[idx], rois, tuple(det.box_weights))
        return {'rois': rois, 'labels': labels, 'targets': targets, 'valid': ok, 'fg': fg}

    return jax.vmap(one)(keys, props, prop_mask, gt, gt_mask, difficult, batch['box_classes'].astype(jnp.int32))


def detection_loss(config: ConfigDict, logits: jax.Array, deltas: jax.Array, s: Mapping[str, jax.Array]
                   ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 1 over the sampled RoIs: log loss + lambda * smooth-L1 of the true class's offsets (foreground only),
    each summed over valid RoIs and divided by the number of RoI slots."""
    slots = float(np.prod(s['labels'].shape))
    valid, fg = s['valid'].astype(jnp.float32), s['fg'].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), s['labels'])
    cls_loss = jnp.sum(ce * valid) / slots
    cls_index = jnp.maximum(s['labels'] - 1, 0)[..., None, None]
    pred = jnp.take_along_axis(deltas.astype(jnp.float32), jnp.broadcast_to(cls_index, (*cls_index.shape[:2], 1, 4)),
                               axis=2)[..., 0, :]
    box_loss = jnp.sum(losses.smooth_l1(pred - s['targets']).sum(-1) * fg) / slots
    accuracy = jnp.sum((jnp.argmax(logits, -1) == s['labels']) * valid) / jnp.maximum(jnp.sum(valid), 1.0)
    loss = cls_loss + config.detection.box_loss_weight * box_loss
    return loss, {'cls_loss': cls_loss, 'box_loss': box_loss, 'roi_accuracy': accuracy,
                  'fg_rois': jnp.sum(fg) / slots}


def step_keys(state: TrainState, batch: Mapping[str, jax.Array], axis_name: str) -> tuple[jax.Array, jax.Array]:
    """(this device's dropout key, one key per local image [B]) of a region-based step. The image keys come from
    each image's GLOBAL index in the batch, so any number of devices samples (and mirrors) the same regions."""
    step_key = jax.random.fold_in(state.rng, state.step)
    dropout_key = jax.random.fold_in(jax.random.fold_in(step_key, 1), lax.axis_index(axis_name))
    local = batch['image'].shape[0]
    first = lax.axis_index(axis_name) * local
    image_keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.fold_in(step_key, 0), first + i))(
        jnp.arange(local))
    return dropout_key, image_keys


def make_train_step(config: ConfigDict, model: nn.Module, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, axis_name: str, loss_is_global: bool) -> base.StepFn:
    """One SGD step of a Fast R-CNN on one device's slice of the batch, in the compute dtype of `config.dtype`
    (the RoIs stay float32; class logits and box deltas come back float32)."""
    policy = Policy.from_config(config)

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, Any]]:
        dropout_key, sample_keys = step_keys(state, batch, axis_name)
        net = state.nets[NET]
        props, prop_mask = proposals(config, batch)
        s = sample_rois(config, sample_keys, props, prop_mask, batch)

        def loss_fn(params):
            logits, deltas = policy.apply(model, {'params': params}, batch['image'], lax.stop_gradient(s['rois']),
                                          train=True, rngs={'dropout': dropout_key})
            return detection_loss(config, logits, deltas, s)

        (loss, parts), grads = sgd.net_value_and_grad(loss_fn, net, axis_name=axis_name,
                                                      loss_is_global=loss_is_global, policy=policy)
        new_net = sgd.apply_gradients(net, grads, tx, ema_decay=config.ema_decay)
        metrics = {'loss': loss, **{k: lax.pmean(v, axis_name) for k, v in parts.items()},
                   **sgd.update_metrics(state.step, schedule, net, grads, new_net)}
        return state.replace(step=state.step + 1, nets={**state.nets, NET: new_net}), metrics

    return step


class Detection(base.SingleNetwork):
    """One region-based detector (`config.model`, e.g. 'fast_rcnn_vgg16'), SGD from `config.optimizer`, the
    sampling and loss of `config.detection`."""

    evaluators = {'detection': detection_eval.make_evaluator, 'rcnn_svm': rcnn_svm.make_evaluator,  # SVMs: Table 8
                  'proposal_recall': proposal_recall.make_evaluator}  # Faster R-CNN Fig. 4, proposal caches
    proposal_sources: tuple[str, ...] = PROPOSALS  # what detection.proposals may name (Faster R-CNN adds 'rpn')

    def run_config(self, config: ConfigDict) -> dict[str, Any]:
        keys = ('proposals', 'grid_sizes', 'grid_ratios', 'grid_stride', 'rois_per_image', 'fg_fraction', 'fg_iou',
                'bg_iou_low', 'bg_iou_high', 'box_weights', 'box_loss_weight', 'include_gt_rois')
        return super().run_config(config) | {'detection': {k: config.detection[k] for k in keys},
                                             'ema_decay': config.ema_decay}

    def validate(self, config: ConfigDict) -> None:
        super().validate(config)
        det = config.get('detection')
        if det is None:
            raise ValueError("task='detection' needs a config.detection section (see experiments/detection.py).")
        if det.proposals not in self.proposal_sources:
            raise ValueError(f'detection.proposals must be one of {self.proposal_sources}, got {det.proposals!r}')
        if not 0 < det.fg_fraction <= 1 or det.rois_per_image < 1:
            raise ValueError(f'detection.fg_fraction={det.fg_fraction} must be in (0, 1] and rois_per_image='
                             f'{det.rois_per_image} >= 1 (Fast R-CNN: 0.25 of 64).')
        if not 0 <= det.bg_iou_low <= det.bg_iou_high <= det.fg_iou <= 1:
            raise ValueError(f'detection IoU thresholds must satisfy 0 <= bg_iou_low ({det.bg_iou_low}) <= '
                             f'bg_iou_high ({det.bg_iou_high}) <= fg_iou ({det.fg_iou}) <= 1.')
        needed = {'image', 'boxes', 'box_classes', 'box_difficult', 'box_mask'}
        if det.proposals == 'batch':
            needed |= {'proposals', 'proposal_mask'}
        missing = needed - set(config.data.batch_keys)
        if missing:
            raise ValueError(f'data.batch_keys lacks {sorted(missing)}: a detection batch needs {sorted(needed)} '
                             f'(ops objects_to_boxes and pad_boxes(N) make the box keys).')

    def init_variables(self, model: nn.Module, rngs: dict[str, jax.Array], batch_spec: base.BatchSpec
                       ) -> dict[str, Any]:
        images = jnp.zeros((1, *batch_spec['image'].shape), jnp.float32)
        return model.init(rngs, images, jnp.zeros((1, 1, 4), jnp.float32), train=False)

    def make_train_step(self, config: ConfigDict, nets: Mapping[str, nn.Module],
                        optimizers: Mapping[str, base.Optimizer], *, axis_name: str, loss_is_global: bool
                        ) -> base.StepFn:
        return make_train_step(config, nets[NET], optimizers[NET].tx, optimizers[NET].schedule,
                               axis_name=axis_name, loss_is_global=loss_is_global)


TASK = Detection()
