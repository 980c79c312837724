"""Fast R-CNN (Girshick, 2015, "Fast R-CNN", sec. 2, Fig. 1): the conv layers run once over the whole image, RoI
max pooling (sec. 2.1) turns each region of interest into a fixed grid, and fc6 / fc7 feed two sibling heads, a
(K+1)-way softmax over the K object classes and background, and 4K class-specific box offsets (sec. 2.3).

Backbone: VGG's conv layers (``convnets.models.vgg``: configuration ``vgg_config``, widths ``stage_widths``) with a
max pool after each of the first ``num_pools`` stages; the last stage's conv output is the shared feature map
(VGG16: conv5_3, stride 16, ``spatial_scale`` 1/16; "the last max pooling layer is replaced by a RoI pooling
layer", sec. 2.2). Layers are named as in :class:`~convnets.models.vgg.VGG` (``conv{s}_{i}_layer``, ``fc6_layer``,
``fc7_layer``), and fc6 reads the RoI grid flattened in (h, w, c) order as VGG's fc6 reads pool5, so a VGG16
checkpoint of this project (trained, or imported from torchvision / Keras) initialises the detector by name
(``config.init_from``; only VGG's fc8 is left out, sec. 2.2: "the network's last fully connected layer and softmax
are replaced with the two sibling layers"). Smaller ``stage_widths`` / ``fc_features`` / ``num_pools`` give the
CPU-sized detector of the quickstart.

Heads: ``cls_score_layer`` (K+1 logits) initialised N(0, 0.01), ``bbox_pred_layer`` (4K offsets, normalised
targets; sec. 2.3 and the authors' prototxts) N(0, 0.001), biases 0. Dropout 0.5 after fc6 and fc7 in training.

Call: ``model.apply(variables, images [B, H, W, 3], rois [B, R, 4], train=...)`` with RoIs in input-image pixels
(edge boxes (y1, x1, y2, x2)); returns ``(class_logits [B, R, K+1], box_deltas [B, R, K, 4])``; the deltas of class
k (1..K) are ``box_deltas[..., k - 1, :]``, ordered (dy, dx, dh, dw) as :mod:`convnets.models.detection.boxes`.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models import vgg
from convnets.models.detection.roi_pool import roi_max_pool
from convnets.models.layers import max_pool, param_name
from convnets.models.registry import register

Array = jax.Array


@register('fast_rcnn')
class FastRCNN(nn.Module):
    """Fast R-CNN on a VGG-style conv body (see the module docstring)."""

    num_classes: int = 20  # K object classes (VOC: 20); the softmax has K + 1 outputs (0 = background)
    vgg_config: str = 'D'  # VGG16 (the paper's large model L)
    stage_widths: tuple[int, ...] = vgg.STAGE_WIDTHS
    num_pools: int = 4  # pools after the first 4 stages: conv5_3 at stride 16
    roi_size: int = 7  # 7x7 for VGG16 (sec. 2.1: "H = W = 7 for VGG16"), 6x6 for CaffeNet-sized nets
    fc_features: int = 4096
    dropout_rate: float = 0.5
    # 'paper': conv N(0, 0.01), fc N(0, 0.005) as the authors' VGG16 prototxt (the layers come from ImageNet
    # training anyway); 'he': He et al. 2015 N(0, 2 / fan_in) for conv and fc layers, for training from scratch
    # (with N(0, 0.01) a deep net without BN passes almost no signal and learns nothing).
    weight_init: str = 'paper'

    @property
    def spatial_scale(self) -> float:
        """Feature-map pixels per image pixel (1/16 for VGG16)."""
        return 1.0 / 2 ** self.num_pools

    def _init(self, paper_std: float) -> nn.initializers.Initializer:
        if self.weight_init == 'paper':
            return nn.initializers.normal(paper_std)
        if self.weight_init == 'he':
            return nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
        raise ValueError(f"FastRCNN.weight_init must be 'paper' or 'he', got {self.weight_init!r}")

    def features(self, x: Array) -> Array:
        """The shared conv feature map [B, h, w, C] of images [B, H, W, 3]."""
        kernels = vgg.CONFIGS[self.vgg_config][: len(self.stage_widths)]
        for s, (ks, width) in enumerate(zip(kernels, self.stage_widths, strict=True), start=1):
            for i, k in enumerate(ks, start=1):
                conv = nn.Conv(width, (k, k), strides=vgg.CONV_STRIDES, padding=vgg.conv_padding(k),
                               kernel_init=self._init(0.01), name=param_name(vgg.conv_name(s, i)))
                x = nn.relu(conv(x))
            if s <= self.num_pools:
                x = max_pool(x, vgg.POOL_WINDOW, vgg.POOL_STRIDE, ceil_mode=True)  # Caffe rounds pool sizes up
        self.sow('intermediates', 'features', x)
        return x

    @nn.compact
    def __call__(self, images: Array, rois: Array, train: bool = False) -> tuple[Array, Array]:
        if vgg.CONFIGS.get(self.vgg_config) is None:
            raise ValueError(f'FastRCNN.vgg_config must be one of {", ".join(vgg.CONFIGS)}, got {self.vgg_config!r}')
        if not 0 <= self.num_pools <= len(self.stage_widths):
            raise ValueError(f'FastRCNN.num_pools={self.num_pools} must be in [0, {len(self.stage_widths)}]')
        if images.ndim != 4 or rois.ndim != 3 or rois.shape[0] != images.shape[0] or rois.shape[-1] != 4:
            raise ValueError(f'FastRCNN expects images [B, H, W, 3] and rois [B, R, 4], got {images.shape}, '
                             f'{rois.shape}')
        fmap = self.features(images)
        b, r = rois.shape[:2]
        pooled = roi_max_pool(fmap, rois.reshape(b * r, 4), batch_indices=jnp.repeat(jnp.arange(b), r),
                              output_size=(self.roi_size, self.roi_size), spatial_scale=self.spatial_scale)
        x = pooled.reshape((b * r, -1))  # row-major (h, w, c), as VGG's fc6 reads pool5
        for name in ('fc6', 'fc7'):
            x = nn.relu(nn.Dense(self.fc_features, kernel_init=self._init(0.005), name=param_name(name))(x))
            x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        k = self.num_classes
        logits = nn.Dense(k + 1, kernel_init=nn.initializers.normal(0.01), name=param_name('cls_score'))(x)
        deltas = nn.Dense(4 * k, kernel_init=nn.initializers.normal(0.001), name=param_name('bbox_pred'))(x)
        return logits.reshape((b, r, k + 1)), deltas.reshape((b, r, k, 4))


# The paper's large model L (sec. 4): VGG16's conv layers, stride 16, 7x7 RoIs.
register('fast_rcnn_vgg16', functools.partial(FastRCNN, vgg_config='D'))
