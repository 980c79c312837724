"""Faster R-CNN (Ren et al. 2015): the 'faster_rcnn' task, a Region Proposal Network and a Fast R-CNN detector
sharing conv layers, trained by the one loop under either of the paper's schemes.

What a step trains (`config.rpn.train`):
- 'joint': approximate joint training (sec. 3.2 (ii)): one network, one loss sum: the RPN loss (eq. 1) on sampled
  anchors plus the Fast R-CNN loss on RoIs sampled from the RPN's own proposals; the proposal coordinates are
  constants (no derivative w.r.t. the proposal boxes: the proposal layer stops gradients, and RoI pooling receives
  `stop_gradient` RoIs), while both losses reach the shared conv layers.
- 'rpn': the RPN loss only (4-step alternating training, steps 1 and 3); the detection head is frozen.
- 'detector': the Fast R-CNN loss only (steps 2 and 4), on `detection.proposals` ('batch': a cache written by an
  RPN stage, as py-faster-rcnn's rpn_generate; 'rpn': the network's own, frozen RPN); the RPN layers are frozen.
The 4-step scheme chains four such stages (`convnets.train.stages`, the experiments' ':alternating' variant): layers
a stage does not train are frozen by the task on top of `optimizer.frozen` (which freezes the shared convs in steps
3 and 4), so weight decay never touches them.

RPN targets per image (sec. 3.1.2-3.1.3; `convnets.models.detection.rpn_targets`): anchors labelled positive at
IoU >= `rpn.positive_iou` (0.7) or best for a gt box, negative below `rpn.negative_iou` (0.3), boundary-crossing
anchors (beyond `rpn.allowed_border` pixels of the real image inside the padded canvas) ignored; `rpn.batch_size`
(256) sampled, up to `rpn.fg_fraction` (1:1) positive. Loss: (1 / N_cls) sum L_cls + lambda (1 / N_reg) sum p* L_reg
with N_cls = `rpn.cls_normaliser` (256; 0 = the number of sampled anchors, py-faster-rcnn's normalisation),
N_reg = the number of anchor locations of the image (`rpn.reg_normaliser` 0: ceil(h / 16) x ceil(w / 16) of its
real size, ~2400 for 600 x 1000) or a fixed number, lambda = `rpn.loss_weight` (10; Table IX's 0.1 / 1 / 10 / 100).
Ground truth for training excludes VOC's 'difficult' boxes (py-faster-rcnn's roidb `use_diff=False`).

Proposals (sec. 3.3; `convnets.models.detection.proposal_layer`): objectness softmax, deltas decoded on the
anchors, clipped to the real image, boxes smaller than `rpn.min_size` (16) ORIGINAL pixels dropped (times
'image_scale' when the batch has it, as py-faster-rcnn's im_info), top `rpn.train_pre_nms_top_n` (12000) /
`test_pre_nms_top_n` (6000) by score, NMS at `rpn.nms_iou` (0.7), top `train_post_nms_top_n` (2000) /
`test_post_nms_top_n` (300) kept; Table 2's test-time ablations are `rpn.test_nms_iou`, `rpn.test_objectness` and
`rpn.test_regression` (see `propose`). The Fast R-CNN part samples `detection.rois_per_image` RoIs among them and the
gt boxes (py-faster-rcnn proposal_target_layer: 128 per image, 25% foreground) and is tested on them with
per-class NMS 0.3 (the 'detection' evaluator).

Batches: one image per device slice row; the global batch is `batch_size` images split over the devices (the
paper: 1 image per SGD step on one GPU; batch_size 1 needs one device, batch_size 8 on 8 devices is the paper's step
8 times over, with the losses averaged over the images). Sampling keys come from each image's global index in the
batch (`tasks.detection.step_keys`), so 1 and 8 devices draw the same anchors and RoIs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from jax import lax
from ml_collections import ConfigDict

from convnets.models.detection import proposal_layer, rpn_targets
from convnets.models.fast_rcnn import FC_LAYERS
from convnets.models.faster_rcnn import RPN_LAYERS
from convnets.tasks import base, detection, sgd
from convnets.train import optim
from convnets.train.precision import Policy
from convnets.train.state import TrainState

NET = base.SingleNetwork.NET
TRAIN_MODES = ('joint', 'rpn', 'detector')
# Parameters of each part, as `optimizer.frozen` patterns ('/'-joined parameter paths).
HEAD_PATTERNS = tuple(f'^{name}(_[LU])?_layer/' for name in FC_LAYERS) + ('^cls_score_layer/', '^bbox_pred_layer/')
RPN_PATTERNS = tuple(f'^{name}_layer/' for name in RPN_LAYERS)


def min_sizes(config: ConfigDict, batch: Mapping[str, jax.Array]) -> jax.Array:
    """[B] smallest proposal side in input pixels: `rpn.min_size` original pixels times the image's resize factor."""
    b = batch['image'].shape[0]
    if 'image_scale' in batch:
        return config.rpn.min_size * jnp.min(batch['image_scale'].astype(jnp.float32), axis=-1)
    return jnp.full((b,), float(config.rpn.min_size), jnp.float32)


def propose(config: ConfigDict, anchors: jax.Array, logits: jax.Array, deltas: jax.Array, sizes: jax.Array,
            min_size: jax.Array, *, pre_nms_top_n: int, post_nms_top_n: int, test: bool = False
            ) -> proposal_layer.Proposals:
    """Proposals [B, post_nms_top_n] from RPN outputs (logits [B, N, 2], deltas [B, N, 4]) on `anchors` [N, 4].

    `test`: the test-time settings of `config.rpn`, including Table 2's ablations (`test_nms_iou`; without the cls
    layer, `test_objectness` False: N proposals drawn at random from the regressed anchors, no NMS, no ranking;
    without the reg layer, `test_regression` False: the anchors themselves)."""
    r = config.rpn
    scores = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)[..., 1]
    deltas = deltas.astype(jnp.float32)
    nms_iou = r.nms_iou
    if test:
        nms_iou = r.get('test_nms_iou', r.nms_iou)
        if not r.get('test_objectness', True):  # fixed key: the same draw for an image at every evaluation
            scores = jax.random.uniform(jax.random.PRNGKey(0), scores.shape)
            nms_iou = 1.0  # "no NMS / ranking is used" without scores: nothing has IoU > 1
        if not r.get('test_regression', True):
            deltas = jnp.zeros_like(deltas)
    pre = anchors.shape[0] if pre_nms_top_n <= 0 else min(int(pre_nms_top_n), anchors.shape[0])
    post = min(int(post_nms_top_n), pre)

    def one(s, d, size, m):
        return proposal_layer.propose(anchors, s, d, size[0], size[1], pre_nms_top_n=pre, post_nms_top_n=post,
                                      nms_iou=nms_iou, min_size=m)

    return jax.vmap(one)(scores, deltas, sizes, min_size)


def _test_proposals(config: ConfigDict, m: nn.Module, fmap: jax.Array, sizes: jax.Array, mins: jax.Array,
                    pre: int, post: int) -> proposal_layer.Proposals:
    """Inside `apply`: the RPN of bound model `m` on its feature map, proposals with the test settings."""
    logits, deltas = m.rpn(fmap)
    anchors = jnp.asarray(m.anchors(fmap.shape[1], fmap.shape[2]))
    return propose(config, anchors, logits, deltas, sizes, mins, pre_nms_top_n=pre, post_nms_top_n=post, test=True)


def rpn_proposals(config: ConfigDict, model: nn.Module, variables: Mapping[str, Any], images: jax.Array,
                  image_size: jax.Array, *, pre_nms_top_n: int | None = None, post_nms_top_n: int | None = None,
                  image_scale: jax.Array | None = None) -> proposal_layer.Proposals:
    """The RPN's proposals of `images` [B, H, W, 3] (real sizes `image_size` [B, 2]): boxes [B, P, 4] in input
    pixels, ranked by objectness, with validity. Test settings of `config.rpn` unless given (<= 0 pre-NMS: all)."""
    pre = config.rpn.test_pre_nms_top_n if pre_nms_top_n is None else pre_nms_top_n
    post = config.rpn.test_post_nms_top_n if post_nms_top_n is None else post_nms_top_n
    batch = {'image': images} | ({'image_scale': image_scale} if image_scale is not None else {})

    sizes, mins = image_size.astype(jnp.float32), min_sizes(config, batch)
    return Policy.from_config(config).apply(
        model, variables, images, method=lambda m, x: _test_proposals(config, m, m.features(x), sizes, mins, pre, post))


def detect_outputs(config: ConfigDict, model: nn.Module, variables: Mapping[str, Any],
                   batch: Mapping[str, jax.Array]) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Test-time Faster R-CNN in one conv pass: (proposals [B, P, 4], their mask, class logits [B, P, K+1], box
    deltas [B, P, K, 4]) with the RPN's test settings (6000 / 300)."""
    sizes, mins = detection.image_sizes(batch), min_sizes(config, batch)

    def run(m, x):
        fmap = m.features(x)
        props = _test_proposals(config, m, fmap, sizes, mins, config.rpn.test_pre_nms_top_n,
                                config.rpn.test_post_nms_top_n)
        cls_logits, box_deltas = m.head(m.pool(fmap, props.boxes), train=False)
        return props.boxes, props.valid, cls_logits, box_deltas

    return Policy.from_config(config).apply(model, variables, batch['image'], method=run)


def anchor_targets(config: ConfigDict, anchors: jax.Array, keys: jax.Array, batch: Mapping[str, jax.Array]
                   ) -> tuple[jax.Array, jax.Array]:
    """Per image: sampled anchor labels [B, N] (1 / 0 / -1) and regression targets [B, N, 4] (sec. 3.1.2)."""
    r = config.rpn
    gt = batch['boxes'].astype(jnp.float32)
    usable = batch['box_mask'].astype(bool) & ~batch['box_difficult'].astype(bool)
    sizes = detection.image_sizes(batch)

    def one(key, gt, usable, size):
        labels, gt_index = rpn_targets.label_anchors(anchors, gt, usable, size[0], size[1], pos_iou=r.positive_iou,
                                                     neg_iou=r.negative_iou, allowed_border=r.allowed_border)
        sampled = rpn_targets.sample_anchors(labels, key, r.batch_size, r.fg_fraction)
        return sampled, rpn_targets.regression_targets(anchors, gt, gt_index)

    return jax.vmap(one)(keys, gt, usable, sizes)


def rpn_loss(config: ConfigDict, logits: jax.Array, deltas: jax.Array, labels: jax.Array, targets: jax.Array,
             sizes: jax.Array, stride: int) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Eq. 1 averaged over the images of the slice, and its parts."""
    r = config.rpn
    if r.reg_normaliser > 0:
        n_reg = jnp.full(sizes.shape[:1], float(r.reg_normaliser))
    else:  # anchor locations of each image's real extent (sec. 3.1.2: N_reg ~ 2400)
        n_reg = jnp.ceil(sizes[:, 0] / stride) * jnp.ceil(sizes[:, 1] / stride)
    n_cls = float(r.cls_normaliser) if r.cls_normaliser > 0 else None

    def one(lg, d, lab, t, nr):
        out = rpn_targets.rpn_loss(lg.astype(jnp.float32), d.astype(jnp.float32), lab, t, n_cls=n_cls, n_reg=nr,
                                   lam=r.loss_weight, beta=r.smooth_l1_beta)
        correct = (jnp.argmax(lg, -1) == lab) & (lab >= 0)
        return out.total, out.cls, out.reg, jnp.sum(correct) / jnp.maximum(jnp.sum(lab >= 0), 1)

    total, cls, reg, accuracy = jax.vmap(one)(logits, deltas, labels, targets, n_reg)
    return jnp.mean(total), {'rpn_cls_loss': jnp.mean(cls), 'rpn_box_loss': jnp.mean(reg),
                             'rpn_accuracy': jnp.mean(accuracy),
                             'rpn_fg_anchors': jnp.mean(jnp.sum(labels == rpn_targets.FOREGROUND, -1))}


def loss_and_parts(config: ConfigDict, model: nn.Module, params: Any, batch: Mapping[str, jax.Array],
                   dropout_key: jax.Array, image_keys: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The loss of `config.rpn.train` on one device's slice (see the module docstring) and its named parts. The
    network runs in the compute dtype of `config.dtype`; its outputs, the anchors and the boxes are float32."""
    policy = Policy.from_config(config)
    mode, det_proposals = config.rpn.train, config.detection.proposals
    anchor_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(image_keys)
    roi_keys = jax.vmap(lambda k: jax.random.fold_in(k, 2))(image_keys)
    sizes = detection.image_sizes(batch)
    variables = {'params': params}
    fmap = policy.apply(model, variables, batch['image'], method='features')
    loss, parts = jnp.zeros((), jnp.float32), {}
    props = None
    if mode in ('joint', 'rpn') or det_proposals == 'rpn':
        logits, deltas = policy.apply(model, variables, fmap, method='rpn')
        anchors = jnp.asarray(model.anchors(fmap.shape[1], fmap.shape[2]))
        if mode in ('joint', 'rpn'):
            labels, targets = anchor_targets(config, anchors, anchor_keys, batch)
            loss, parts = rpn_loss(config, logits, deltas, labels, targets, sizes, model.stride)
        if mode in ('joint', 'detector'):  # the proposal layer stops gradients itself
            p = propose(config, anchors, logits, deltas, sizes, min_sizes(config, batch),
                        pre_nms_top_n=config.rpn.train_pre_nms_top_n, post_nms_top_n=config.rpn.train_post_nms_top_n)
            props = (p.boxes, p.valid)
    if mode in ('joint', 'detector'):
        if props is None:
            props = detection.proposals(config, batch)
        s = detection.sample_rois(config, roi_keys, *props, batch)
        # No derivative w.r.t. the RoI coordinates (approximate joint training, sec. 3.2).
        pooled = policy.apply(model, variables, fmap, lax.stop_gradient(s['rois']), method='pool')
        cls_logits, box_deltas = policy.apply(model, variables, pooled, train=True, rngs={'dropout': dropout_key},
                                              method='head')
        det_loss, det_parts = detection.detection_loss(config, cls_logits, box_deltas, s)
        loss = loss + det_loss
        parts = parts | {'det_loss': det_loss, **det_parts}
    return loss, parts


def make_train_step(config: ConfigDict, model: nn.Module, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, axis_name: str, loss_is_global: bool) -> base.StepFn:
    """One SGD step of a Faster R-CNN (`config.rpn.train`: joint, rpn or detector) on one device's slice."""

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, Any]]:
        dropout_key, image_keys = detection.step_keys(state, batch, axis_name)
        net = state.nets[NET]
        (loss, parts), grads = sgd.net_value_and_grad(
            lambda p: loss_and_parts(config, model, p, batch, dropout_key, image_keys), net,
            axis_name=axis_name, loss_is_global=loss_is_global, policy=Policy.from_config(config))
        new_net = sgd.apply_gradients(net, grads, tx, ema_decay=config.ema_decay)
        metrics = {'loss': loss, **{k: lax.pmean(v, axis_name) for k, v in parts.items()},
                   **sgd.update_metrics(state.step, schedule, net, grads, new_net)}
        return state.replace(step=state.step + 1, nets={**state.nets, NET: new_net}), metrics

    return step


def frozen_patterns(config: ConfigDict) -> tuple[str, ...]:
    """`optimizer.frozen` plus the parts the step does not train ('rpn': the head; 'detector': the RPN)."""
    extra = {'joint': (), 'rpn': HEAD_PATTERNS, 'detector': RPN_PATTERNS}[config.rpn.train]
    if config.rpn.train == 'rpn' and config.model.get('svd_ranks'):
        extra = ()  # a compressed head is a test-time model; validate() refuses to train it anyway
    return tuple(config.optimizer.frozen) + tuple(p for p in extra if p not in config.optimizer.frozen)


class FasterRCNNTask(detection.Detection):
    """A Faster R-CNN (`config.model`, e.g. 'faster_rcnn_vgg16'): RPN and detector, `config.rpn` and
    `config.detection`, trained jointly or one part at a time (see the module docstring)."""

    proposal_sources = ('rpn', *detection.PROPOSALS)

    def run_config(self, config: ConfigDict) -> dict[str, Any]:
        # Test-time settings (rpn.test_*) may change between evaluations of one run, like the evaluators.
        return super().run_config(config) | {'rpn': {k: v for k, v in config.rpn.to_dict().items()
                                                     if not k.startswith('test_')}}

    def validate(self, config: ConfigDict) -> None:
        r = config.get('rpn')
        if r is None:
            raise ValueError("task='faster_rcnn' needs a config.rpn section (see experiments/faster_rcnn.py).")
        if r.train not in TRAIN_MODES:
            raise ValueError(f'rpn.train must be one of {TRAIN_MODES} (joint: approximate joint training; rpn / '
                             f'detector: one part, the 4-step scheme), got {r.train!r}')
        if r.train == 'joint' and config.detection.proposals != 'rpn':
            raise ValueError("rpn.train='joint' trains the detector on the RPN's own proposals: set "
                             "detection.proposals='rpn' (or rpn.train='detector' to train on cached proposals).")
        if not 0 <= r.negative_iou <= r.positive_iou <= 1 or not 0 < r.fg_fraction <= 1 or r.batch_size < 1:
            raise ValueError(f'rpn: need 0 <= negative_iou ({r.negative_iou}) <= positive_iou ({r.positive_iou}) '
                             f'<= 1, 0 < fg_fraction ({r.fg_fraction}) <= 1 and batch_size ({r.batch_size}) >= 1 '
                             f'(the paper: 0.3, 0.7, 0.5, 256).')
        if min(r.train_post_nms_top_n, r.test_post_nms_top_n) < 1:
            raise ValueError('rpn.train_post_nms_top_n and test_post_nms_top_n must be >= 1 (the paper: 2000 / 300).')
        super().validate(config)

    def init_variables(self, model: nn.Module, rngs: dict[str, jax.Array], batch_spec: base.BatchSpec
                       ) -> dict[str, Any]:
        images = jnp.zeros((1, *batch_spec['image'].shape), jnp.float32)
        return model.init(rngs, images, jnp.zeros((1, 1, 4), jnp.float32), method='init_all')

    def make_optimizers(self, config: ConfigDict, *, steps_per_epoch: int, total_steps: int
                        ) -> dict[str, base.Optimizer]:
        opt = ConfigDict(config.optimizer.to_dict())
        opt.frozen = frozen_patterns(config)
        schedule = optim.make_schedule(opt, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
        return {NET: base.Optimizer(optim.make_optimizer(opt, schedule), schedule)}

    def make_train_step(self, config: ConfigDict, nets: Mapping[str, nn.Module],
                        optimizers: Mapping[str, base.Optimizer], *, axis_name: str, loss_is_global: bool
                        ) -> base.StepFn:
        return make_train_step(config, nets[NET], optimizers[NET].tx, optimizers[NET].schedule,
                               axis_name=axis_name, loss_is_global=loss_is_global)


TASK = FasterRCNNTask()
