"""Faster R-CNN (Ren, He, Girshick and Sun, 2015, "Faster R-CNN: Towards Real-Time Object Detection with Region
Proposal Networks"): a Region Proposal Network (RPN, sec. 3.1) on the conv feature map that Fast R-CNN's detection
head (:mod:`convnets.models.fast_rcnn`) shares.

RPN (sec. 3.1, Fig. 3; py-faster-rcnn models/pascal_voc/*/faster_rcnn_end2end/train.prototxt): a 3x3 conv
(``rpn_conv_3x3_layer``: 512 channels on VGG16, 256 on ZF Net) with ReLU slides over the shared map, then two
sibling 1x1 convs: ``rpn_cls_score_layer`` (2k scores: background / object per anchor, a two-class softmax) and
``rpn_bbox_pred_layer`` (4k offsets (dy, dx, dh, dw) per anchor, unnormalised targets); all N(0, 0.01), biases 0.
k = len(anchor_sizes) x len(anchor_ratios) anchors per position (sec. 3.1.1: 3 scales 128^2, 256^2, 512^2 x 3
ratios 1:2, 1:1, 2:1, k = 9), at stride 16, ordered as py-faster-rcnn (``convnets.models.detection.anchors``):
output row ``(y * w + x) * k + a`` belongs to anchor ``a`` at feature position (y, x). Anchors follow from the
static feature-map shape, so the whole network is traced once per input shape.

Everything else is the Fast R-CNN of this project: the same backbone (``backbone='vgg'`` with ``vgg_config='D'``
for VGG16, or ``'zf'``), layer names and head, so ImageNet checkpoints (VGG16 or ZF Net, trained here or imported)
initialise the detector by name, and a Fast R-CNN checkpoint initialises its part of a Faster R-CNN. Methods:
``features`` (shared map), ``rpn`` (objectness logits [B, N, 2], deltas [B, N, 4]), ``anchors`` (the [N, 4] numpy
anchors of a feature-map shape), ``pool`` / ``head`` / ``__call__`` (Fast R-CNN on given RoIs) and ``init_all``
(touches every layer: what ``init`` runs). Proposals, losses and the training schemes are the task's
(``convnets.tasks.faster_rcnn``).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import numpy as np

from convnets.models.detection import anchors as anchor_ops
from convnets.models.fast_rcnn import FastRCNN
from convnets.models.registry import register

Array = jax.Array
RPN_LAYERS = ('rpn_conv_3x3', 'rpn_cls_score', 'rpn_bbox_pred')


@register('faster_rcnn')
class FasterRCNN(FastRCNN):
    """Faster R-CNN: Fast R-CNN (the parent) plus a Region Proposal Network on its feature map."""

    rpn_channels: int = 512  # the 3x3 conv's width: 512 for VGG16, 256 for ZF Net (sec. 3.1)
    anchor_sizes: tuple[float, ...] = (128.0, 256.0, 512.0)  # sqrt of the anchor areas, in input pixels (sec. 3.1.1)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)  # height : width

    @property
    def num_anchors(self) -> int:
        """k, the anchors per feature-map position."""
        return len(self.anchor_sizes) * len(self.anchor_ratios)

    def setup(self) -> None:
        super().setup()
        if not self.anchor_sizes or not self.anchor_ratios or min(self.anchor_sizes) <= 0 \
                or min(self.anchor_ratios) <= 0:
            raise ValueError(f'FasterRCNN.anchor_sizes / anchor_ratios must be non-empty and positive, got '
                             f'{self.anchor_sizes} / {self.anchor_ratios} (sec. 3.1.1: (128, 256, 512) / '
                             f'(0.5, 1, 2)).')
        init = nn.initializers.normal(0.01)  # py-faster-rcnn: gaussian std 0.01 for the three RPN layers
        k = self.num_anchors
        self.rpn_conv_3x3_layer = nn.Conv(self.rpn_channels, (3, 3), padding=((1, 1), (1, 1)), kernel_init=init)
        self.rpn_cls_score_layer = nn.Conv(2 * k, (1, 1), kernel_init=init)
        self.rpn_bbox_pred_layer = nn.Conv(4 * k, (1, 1), kernel_init=init)

    def rpn(self, fmap: Array) -> tuple[Array, Array]:
        """Objectness logits [B, h*w*k, 2] (background, object) and box deltas [B, h*w*k, 4] on fmap [B, h, w, C]."""
        x = nn.relu(self.rpn_conv_3x3_layer(fmap))
        b, h, w = x.shape[:3]
        k = self.num_anchors
        logits = self.rpn_cls_score_layer(x).reshape((b, h * w * k, 2))
        deltas = self.rpn_bbox_pred_layer(x).reshape((b, h * w * k, 4))
        return logits, deltas

    @nn.nowrap
    def anchors(self, feature_height: int, feature_width: int) -> np.ndarray:
        """The [h*w*k, 4] anchors (edge boxes in input pixels) of an h x w feature map, in `rpn`'s row order."""
        scales = tuple(s / self.stride for s in self.anchor_sizes)  # generate_anchors' scales: multiples of 16
        base = anchor_ops.base_anchors(self.stride, scales, self.anchor_ratios)
        return anchor_ops.grid_anchors(feature_height, feature_width, self.stride, base)

    def init_all(self, images: Array, rois: Array) -> tuple[Array, Array]:
        """Runs every layer once (for ``init``): the RPN and the Fast R-CNN head on ``rois``."""
        fmap = self.features(images)
        logits, _ = self.rpn(fmap)
        cls_logits, _ = self.head(self.pool(fmap, rois))
        return logits, cls_logits


# The paper's two networks (sec. 4.1): VGG16 (conv5_3, 7x7 RoIs, 512-d RPN) and ZF Net (conv5, 6x6 RoIs, 256-d RPN).
register('faster_rcnn_vgg16', functools.partial(FasterRCNN, vgg_config='D'))
register('faster_rcnn_zf', functools.partial(FasterRCNN, backbone='zf', roi_size=6, rpn_channels=256))
