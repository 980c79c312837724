"""R-CNN (Girshick, Donahue, Darrell, Malik 2014): fine-tuning a classifier on warped regions, through the one loop.

The network is an ordinary classifier (`config.model`, e.g. 'alexnet' with `input_size=227` or a VGG) with N+1
outputs: "we continue stochastic gradient descent (SGD) training of the CNN parameters using only warped region
proposals ... replacing the CNN's ImageNet-specific 1000-way classification layer with a randomly initialized
(N + 1)-way classification layer (for the N object classes, plus 1 for background)" (sec. 2.3, "Domain-specific
fine-tuning"). Start it from an ImageNet run with `config.init_from` and `init_from_skip=('params/fc8_layer/',)`.

Batches are detection batches (as the 'detection' task: 'image', 'boxes', 'box_classes', 'box_difficult',
'box_mask', optional 'image_size', and 'proposals' / 'proposal_mask' with `config.detection.proposals='batch'`).
Each step, on device and with static shapes:
1. regions are sampled per image with Fast R-CNN's sampler (`convnets.tasks.detection.sample_rois`, keys from
   each image's GLOBAL index, so any device count samples the same regions) under R-CNN's labels: "all region
   proposals with >= 0.5 IoU overlap with a ground-truth box [are] positives for that box's class and the rest
   as negatives" (fg_iou 0.5, bg_iou_low 0, bg_iou_high 0.5), the ground-truth boxes among the regions (the window
   file of rcnn_make_window_file.m lists them); "we uniformly sample 32 positive windows (over all classes) and
   96 background windows to construct a mini-batch of size 128". The authors' Caffe WindowDataLayer drew the 128
   windows over images at random; here each of the B images of a batch contributes `rois_per_image` = 128 / B
   regions with `fg_fraction` 0.25 (the same 25% foreground, drawn per image);
2. each region is warped to `config.rcnn.warp_size` (227) with `context_pad` (16) pixels of context
   (`convnets.models.detection.warp`, sec. 2.1 / appendix A) and mirrored with probability 0.5 (`flip`: the
   WindowDataLayer's `mirror: true`, finetuning/voc_2007_prototxt/pascal_finetune_train.prototxt);
3. the classifier's (N+1)-way softmax log loss, summed over valid regions and divided by the number of region
   slots (a fixed count, so 1 and 8 devices minimise the same loss).
The solver (pascal_finetune_solver.prototxt: base_lr 0.001, momentum 0.9, weight_decay 0.0005, step x0.1 every
20,000 iterations) lives in the experiment configs.

Evaluators: 'rcnn_svm' (`convnets.evaluate.rcnn_svm`: per-class linear SVMs with hard negative mining on pool5 /
fc6 / fc7 features, ridge box regression, and the network's own softmax as the Table 2 alternative).
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

from convnets.evaluate import rcnn_svm
from convnets.models.detection import warp
from convnets.tasks import base, detection, sgd
from convnets.train.precision import Policy
from convnets.train.state import TrainState

NET = base.SingleNetwork.NET


def warp_rois(config: ConfigDict, batch: Mapping[str, jax.Array], rois: jax.Array) -> jax.Array:
    """Regions ``rois [B, R, 4]`` of the batch's images warped to crops ``[B * R, S, S, 3]`` (image-major)."""
    r = config.rcnn
    b, n = rois.shape[:2]
    return warp.warp_regions(batch['image'], rois.reshape(b * n, 4), jnp.repeat(jnp.arange(b), n),
                             crop_size=r.warp_size, context_pad=r.context_pad, mode=r.warp_mode,
                             image_sizes=batch.get('image_size'))


def make_train_step(config: ConfigDict, model: nn.Module, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, *, axis_name: str, loss_is_global: bool) -> base.StepFn:
    """One SGD step of R-CNN fine-tuning on one device's slice of the batch (see the module docstring); the
    regions are warped in float32 and classified in the compute dtype of `config.dtype`."""
    policy = Policy.from_config(config)

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, Any]]:
        dropout_key, image_keys = detection.step_keys(state, batch, axis_name)
        props, prop_mask = detection.proposals(config, batch)
        s = detection.sample_rois(config, image_keys, props, prop_mask, batch)
        crops = warp_rois(config, batch, s['rois'])
        if config.rcnn.flip:  # per-image keys again, so the mirroring does not depend on the device count
            flips = jax.vmap(lambda k: warp.random_flips(jax.random.fold_in(k, 1), s['rois'].shape[1]))(image_keys)
            crops = warp.flip_crops(crops, flips.reshape(-1))
        labels, valid = s['labels'].reshape(-1), s['valid'].reshape(-1).astype(jnp.float32)
        slots = float(labels.shape[0])
        net = state.nets[NET]
        crops = lax.stop_gradient(crops)

        has_bn = bool(net.batch_stats)  # e.g. a VGG with batch_norm (statistics synchronised over devices)

        def loss_fn(params):
            variables = {'params': params, 'batch_stats': net.batch_stats} if has_bn else {'params': params}
            logits, new_vars = policy.apply(model, variables, crops, train=True, rngs={'dropout': dropout_key},
                                            mutable=['batch_stats'] if has_bn else [])
            ce = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
            loss = jnp.sum(ce * valid) / slots
            accuracy = jnp.sum((jnp.argmax(logits, -1) == labels) * valid) / jnp.maximum(jnp.sum(valid), 1.0)
            return loss, ({'region_accuracy': accuracy, 'fg_regions': jnp.sum(s['fg']) / slots}, new_vars)

        (loss, (parts, new_vars)), grads = sgd.net_value_and_grad(loss_fn, net, axis_name=axis_name,
                                                                  loss_is_global=loss_is_global, policy=policy)
        new_net = sgd.apply_gradients(net, grads, tx, ema_decay=config.ema_decay,
                                      batch_stats=new_vars['batch_stats'] if has_bn else None)
        metrics = {'loss': loss, **{k: lax.pmean(v, axis_name) for k, v in parts.items()},
                   **sgd.update_metrics(state.step, schedule, net, grads, new_net)}
        return state.replace(step=state.step + 1, nets={**state.nets, NET: new_net}), metrics

    return step


class RCNN(base.SingleNetwork):
    """An (N+1)-way classifier (`config.model`) fine-tuned on warped regions (`config.detection` sampling,
    `config.rcnn` warping)."""

    evaluators = {'rcnn_svm': rcnn_svm.make_evaluator}

    def run_config(self, config: ConfigDict) -> dict[str, Any]:
        return detection.Detection().run_config(config) | {'rcnn': config.rcnn.to_dict()}

    def validate(self, config: ConfigDict) -> None:
        detection.Detection().validate(config)
        r = config.get('rcnn')
        if r is None:
            raise ValueError("task='rcnn' needs a config.rcnn section (see experiments/rcnn.py).")
        if r.warp_mode not in warp.MODES:
            raise ValueError(f'rcnn.warp_mode must be one of {warp.MODES}, got {r.warp_mode!r}')
        if not 0 <= 2 * r.context_pad < r.warp_size:
            raise ValueError(f'rcnn.context_pad={r.context_pad} must be >= 0 and below half of rcnn.warp_size='
                             f'{r.warp_size} (the paper: 16 of 227).')
        size = config.model.get('input_size')
        if size is not None and size != r.warp_size:
            raise ValueError(f'model.input_size={size} must equal rcnn.warp_size={r.warp_size}: the network sees the '
                             f'warped regions (AlexNet: 227).')

    def init_variables(self, model: nn.Module, rngs: dict[str, jax.Array], batch_spec: base.BatchSpec
                       ) -> dict[str, Any]:
        del batch_spec  # the network sees warped regions, not the images
        size = model.input_size if hasattr(model, 'input_size') else None
        if size is None:
            raise ValueError('task rcnn needs a classifier with an input_size field (alexnet, vgg, ...).')
        return model.init(rngs, jnp.zeros((1, size, size, 3), jnp.float32), train=False)

    def make_train_step(self, config: ConfigDict, nets: Mapping[str, nn.Module],
                        optimizers: Mapping[str, base.Optimizer], *, axis_name: str, loss_is_global: bool
                        ) -> base.StepFn:
        return make_train_step(config, nets[NET], optimizers[NET].tx, optimizers[NET].schedule,
                               axis_name=axis_name, loss_is_global=loss_is_global)


TASK = RCNN()
