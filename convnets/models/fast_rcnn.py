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

Backbone ``'zf'`` (Faster R-CNN's small net, Ren et al. 2015 sec. 4.1 and py-faster-rcnn's ZF prototxts): ZF Net's
conv1-conv5 (``convnets.models.zfnet``: same layer names, kernel shapes and contrast normalisation after pool1 /
pool2, so a ZF Net checkpoint of this project initialises it by name) without pool5: conv5 at stride 16, 6x6 RoIs.
Conv paddings are py-faster-rcnn's (conv1 3, conv2 2, conv3-5 1) rather than the classifier's (1, 0, 1), so the
maps stay aligned with the image at stride 16 (600 x 1000 px -> 37 x 62); the weights do not change.

Heads: ``cls_score_layer`` (K+1 logits) initialised N(0, 0.01), ``bbox_pred_layer`` (4K offsets, normalised
targets; sec. 2.3 and the authors' prototxts) N(0, 0.001), biases 0. Dropout 0.5 after fc6 and fc7 in training.

Call: ``model.apply(variables, images [B, H, W, 3], rois [B, R, 4], train=...)`` with RoIs in input-image pixels
(edge boxes (y1, x1, y2, x2)); returns ``(class_logits [B, R, K+1], box_deltas [B, R, K, 4])``; the deltas of class
k (1..K) are ``box_deltas[..., k - 1, :]``, ordered (dy, dx, dh, dw) as :mod:`convnets.models.detection.boxes`.
The parts are methods too (``method='features'``, ``'pool'``, ``'head'``): ``__call__`` is
``head(pool(features(images), rois))``, and ``'multiscale'`` runs the test-time image pyramid
(:mod:`convnets.models.detection.pyramid`).

Truncated SVD (sec. 3.1, "Truncated SVD for faster detection"; the authors' tools/compress_net.py and
models/VGG16/compressed/test.prototxt): with ``svd_ranks=(t6, t7)`` fc6 / fc7 are each two fully connected layers,
``fc6_L`` (t6 outputs, no bias: Sigma_t V_t^T) then ``fc6_U`` (U_t and fc6's bias), with no nonlinearity between
them; a rank 0 keeps that layer whole. Parameters come from a trained uncompressed network through
:func:`convnets.models.detection.svd.compress_params`; the paper keeps 1024 (fc6) and 256 (fc7) for VGG16.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models import vgg, zfnet
from convnets.models.detection import pyramid
from convnets.models.detection.roi_pool import roi_max_pool
from convnets.models.layers import LocalResponseNorm, max_pool, param_name
from convnets.models.registry import register

Array = jax.Array
FC_LAYERS = ('fc6', 'fc7')
BACKBONES = ('vgg', 'zf')
# ZF Net's conv layers in a detector (py-faster-rcnn models/pascal_voc/ZF): (features, kernel, stride, padding).
ZF_CONVS = {'conv1': (96, 7, 2, 3), 'conv2': (256, 5, 2, 2), 'conv3': (384, 3, 1, 1), 'conv4': (384, 3, 1, 1),
            'conv5': (256, 3, 1, 1)}


@register('fast_rcnn')
class FastRCNN(nn.Module):
    """Fast R-CNN on a VGG-style conv body (see the module docstring)."""

    num_classes: int = 20  # K object classes (VOC: 20); the softmax has K + 1 outputs (0 = background)
    backbone: str = 'vgg'  # 'vgg' (vgg_config, stage_widths, num_pools) or 'zf' (ZF Net's conv1-conv5, stride 16)
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
    # Test-time truncated SVD of (fc6, fc7) (sec. 3.1): None = the trained layers; (1024, 256) = the paper's VGG16.
    svd_ranks: tuple[int, int] | None = None

    @property
    def spatial_scale(self) -> float:
        """Feature-map pixels per image pixel (1/16 for VGG16)."""
        return 1.0 / self.stride

    @property
    def stride(self) -> int:
        """Image pixels per feature-map pixel (16 for VGG16 and ZF Net)."""
        return 16 if self.backbone == 'zf' else 2 ** self.num_pools

    def _init(self, paper_std: float) -> nn.initializers.Initializer:
        if self.weight_init == 'paper':
            return nn.initializers.normal(paper_std)
        if self.weight_init == 'he':
            return nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')
        raise ValueError(f"FastRCNN.weight_init must be 'paper' or 'he', got {self.weight_init!r}")

    def setup(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f'FastRCNN.backbone must be one of {BACKBONES}, got {self.backbone!r}')
        if self.backbone == 'zf':
            self._setup_zf()
        else:
            self._setup_vgg()
        self._setup_head()

    def _setup_zf(self) -> None:
        for name, (features, k, stride, pad) in ZF_CONVS.items():
            setattr(self, param_name(name), nn.Conv(features, (k, k), strides=(stride, stride),
                                                    padding=((pad, pad), (pad, pad)), kernel_init=self._init(0.01)))
        self.norm = LocalResponseNorm()  # ZF Net's contrast normalisation (the project's constants, zfnet.py)

    def _setup_vgg(self) -> None:
        if vgg.CONFIGS.get(self.vgg_config) is None:
            raise ValueError(f'FastRCNN.vgg_config must be one of {", ".join(vgg.CONFIGS)}, got {self.vgg_config!r}')
        if not 0 <= self.num_pools <= len(self.stage_widths):
            raise ValueError(f'FastRCNN.num_pools={self.num_pools} must be in [0, {len(self.stage_widths)}]')
        # Layers are attributes named exactly as the compact VGG names them, so parameter trees (and checkpoints)
        # are VGG's; setup (rather than @compact) lets the parts be applied on their own (method=...).
        kernels = vgg.CONFIGS[self.vgg_config][: len(self.stage_widths)]
        for s, (ks, width) in enumerate(zip(kernels, self.stage_widths, strict=True), start=1):
            for i, k in enumerate(ks, start=1):
                setattr(self, param_name(vgg.conv_name(s, i)), nn.Conv(
                    width, (k, k), strides=vgg.CONV_STRIDES, padding=vgg.conv_padding(k),
                    kernel_init=self._init(0.01)))

    def _setup_head(self) -> None:
        ranks = tuple(self.svd_ranks) if self.svd_ranks is not None else (0, 0)
        if len(ranks) != 2 or any(r < 0 for r in ranks):
            raise ValueError(f'FastRCNN.svd_ranks must be None or two ranks >= 0 (fc6, fc7; 0 = not compressed), '
                             f'got {self.svd_ranks!r}')
        for name, rank in zip(FC_LAYERS, ranks, strict=True):
            if rank:  # compress_net.py: fc_L has no bias; fc_U holds U_t and the layer's bias
                setattr(self, param_name(f'{name}_L'), nn.Dense(rank, use_bias=False))
                setattr(self, param_name(f'{name}_U'), nn.Dense(self.fc_features))
            else:
                setattr(self, param_name(name), nn.Dense(self.fc_features, kernel_init=self._init(0.005)))
        # The names of the compact version's dropout layers (same PRNG streams as before the split into methods).
        self.Dropout_0 = nn.Dropout(self.dropout_rate)
        self.Dropout_1 = nn.Dropout(self.dropout_rate)
        k = self.num_classes
        self.cls_score_layer = nn.Dense(k + 1, kernel_init=nn.initializers.normal(0.01))
        self.bbox_pred_layer = nn.Dense(4 * k, kernel_init=nn.initializers.normal(0.001))

    def features(self, x: Array) -> Array:
        """The shared conv feature map [B, h, w, C] of images [B, H, W, 3]."""
        if self.backbone == 'zf':
            for name in ZF_CONVS:
                x = nn.relu(getattr(self, param_name(name))(x))
                if name in zfnet.POOLED_CONVS:  # zfnet.py: pool, then normalise (Fig. 3); no pool5 here
                    x = self.norm(max_pool(x, zfnet.POOL_WINDOW, zfnet.POOL_STRIDE, ceil_mode=zfnet.POOL_CEIL_MODE))
            self.sow('intermediates', 'features', x)
            return x
        kernels = vgg.CONFIGS[self.vgg_config][: len(self.stage_widths)]
        for s, ks in enumerate(kernels, start=1):
            for i in range(1, len(ks) + 1):
                x = nn.relu(getattr(self, param_name(vgg.conv_name(s, i)))(x))
            if s <= self.num_pools:
                x = max_pool(x, vgg.POOL_WINDOW, vgg.POOL_STRIDE, ceil_mode=True)  # Caffe rounds pool sizes up
        self.sow('intermediates', 'features', x)
        return x

    def pool(self, fmap: Array, rois: Array) -> Array:
        """RoI max pooling (sec. 2.1) of rois [B, R, 4] (image pixels) on fmap [B, h, w, C]: [B, R, H, W, C]."""
        b, r = rois.shape[:2]
        pooled = roi_max_pool(fmap, rois.reshape(b * r, 4), batch_indices=jnp.repeat(jnp.arange(b), r),
                              output_size=(self.roi_size, self.roi_size), spatial_scale=self.spatial_scale)
        return pooled.reshape((b, r, *pooled.shape[1:]))

    def _fc(self, index: int, x: Array) -> Array:
        name = FC_LAYERS[index]
        if self.svd_ranks is not None and self.svd_ranks[index]:  # no nonlinearity between fc_L and fc_U
            return getattr(self, param_name(f'{name}_U'))(getattr(self, param_name(f'{name}_L'))(x))
        return getattr(self, param_name(name))(x)

    def head(self, pooled: Array, train: bool = False) -> tuple[Array, Array]:
        """fc6, fc7 and the sibling layers on pooled RoIs [B, R, H, W, C]: (logits [B, R, K+1], deltas [B, R, K, 4])."""
        b, r = pooled.shape[:2]
        x = pooled.reshape((b * r, -1))  # row-major (h, w, c), as VGG's fc6 reads pool5
        for index, dropout in enumerate((self.Dropout_0, self.Dropout_1)):
            x = dropout(nn.relu(self._fc(index, x)), deterministic=not train)
        k = self.num_classes
        logits, deltas = self.cls_score_layer(x), self.bbox_pred_layer(x)
        return logits.reshape((b, r, k + 1)), deltas.reshape((b, r, k, 4))

    def __call__(self, images: Array, rois: Array, train: bool = False) -> tuple[Array, Array]:
        _check_inputs(images, rois)
        return self.head(self.pool(self.features(images), rois), train)

    def multiscale(self, images: Array, image_size: Array, rois: Array, scales: tuple[int, ...], max_size: int,
                   data_scale: int, target_area: float = pyramid.TARGET_AREA) -> tuple[Array, Array]:
        """Test on an image pyramid (sec. 2.4 / 5.2 and the authors' ``test.py``): the conv body runs on each
        pyramid level, each RoI is pooled from the level where its area is closest to ``target_area`` (224^2, see
        :mod:`convnets.models.detection.pyramid`), then the head. RoIs stay in the input image's pixels."""
        _check_inputs(images, rois)
        levels = pyramid.pyramid_levels(images.shape[1:3], scales, max_size, data_scale)
        factors = pyramid.level_factors(image_size, levels)  # [B, S]
        assigned = pyramid.assign_levels(rois, factors, target_area)  # [B, R]
        pooled = None
        for s, level in enumerate(levels):
            fmap = self.features(pyramid.resize_images(images, factors[:, s], level.canvas))
            here = self.pool(fmap, rois * factors[:, s, None, None])
            mine = (assigned == s)[:, :, None, None, None]
            pooled = here if pooled is None else jnp.where(mine, here, pooled)
        return self.head(pooled, train=False)


def _check_inputs(images: Array, rois: Array) -> None:
    if images.ndim != 4 or rois.ndim != 3 or rois.shape[0] != images.shape[0] or rois.shape[-1] != 4:
        raise ValueError(f'FastRCNN expects images [B, H, W, 3] and rois [B, R, 4], got {images.shape}, '
                         f'{rois.shape}')


# The paper's large model L (sec. 4): VGG16's conv layers, stride 16, 7x7 RoIs.
register('fast_rcnn_vgg16', functools.partial(FastRCNN, vgg_config='D'))
