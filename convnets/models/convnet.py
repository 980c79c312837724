"""The lecture's basic ConvNet (papers.md section 0).

    INPUT [32x32x3] -> CONV [32x32x12] -> RELU -> POOL [16x16x12] -> FC [1x1x10]

The lecture gives only the architecture: 12 filters whose convolution preserves the spatial size, a ReLU,
a 2x2 max pool that halves the size, and a fully-connected layer producing the class scores (the "score
function"). Filter size 3 and 'SAME' padding with stride 1 are our choices (any odd size with 'SAME'
padding preserves the size). Input size and channels are taken from ``x``.

Optional BatchNorm (``batch_norm=True``, registered as ``convnet_bn``) between the convolution and the ReLU
is not in the lecture's net; it exists so that the training code can test that batch statistics are
synchronised across devices (``bn_axis_name``). With BatchNorm the convolution has no bias (BN's shift
makes it redundant).

Intermediates sown (collection ``'intermediates'``): ``conv1``, ``bn1`` (if any), ``relu1``, ``pool1``,
``fc`` (the logits). Parameter submodules: ``conv1_layer``, ``bn1_layer``, ``fc_layer``.

``deconv_stages()`` describes CONV -> RELU -> POOL to the DeconvNet from the same geometry constants.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from convnets.models.deconv_stages import Conv, MaxPool, ReLU, Stage
from convnets.models.layers import param_name
from convnets.models.registry import register

Array = jax.Array

# Shared by __call__ and deconv_stages (section 0): a size-preserving convolution, then a 2x2 max pool, stride 2.
CONV_STRIDES = (1, 1)
CONV_PADDING = "SAME"
POOL_WINDOW = 2
POOL_STRIDE = 2


@register("convnet")
class ConvNet(nn.Module):
    """CONV -> (BN) -> RELU -> POOL -> FC. Returns logits ``[N, num_classes]``."""

    num_classes: int = 10
    num_filters: int = 12
    kernel_size: int = 3
    batch_norm: bool = False
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        k = self.kernel_size
        # CONV: size-preserving ('SAME', stride 1), 12 filters [32x32x12] (section 0).
        x = nn.Conv(
            self.num_filters, (k, k), strides=CONV_STRIDES, padding=CONV_PADDING, use_bias=not self.batch_norm,
            name=param_name("conv1"),
        )(x)
        self.sow("intermediates", "conv1", x)
        if self.batch_norm:
            # Our addition (not in the lecture): BN with cross-device statistics when bn_axis_name is set.
            x = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=1e-5, axis_name=self.bn_axis_name,
                name=param_name("bn1"),
            )(x)
            self.sow("intermediates", "bn1", x)
        # RELU: elementwise max(0, x), size unchanged (section 0).
        x = nn.relu(x)
        self.sow("intermediates", "relu1", x)
        # POOL: 2x2 max, stride 2, halves the size [16x16x12] (section 0).
        x = nn.max_pool(x, (POOL_WINDOW,) * 2, strides=(POOL_STRIDE,) * 2, padding="VALID")
        self.sow("intermediates", "pool1", x)
        # FC: every pooled activation to each class score [1x1x10] (section 0).
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.num_classes, name=param_name("fc"))(x)
        self.sow("intermediates", "fc", x)
        return x

    @nn.nowrap  # a description of the architecture: callable on an unbound module
    def deconv_stages(self) -> list[Stage]:
        """The DeconvNet stages up to conv1: CONV -> RELU -> POOL (``NotImplementedError`` with BatchNorm)."""
        if self.batch_norm:
            # The ZF DeconvNet (Zeiler and Fergus 2013, Sec. 2.1) has no step for BatchNorm: refuse, don't guess.
            raise NotImplementedError("DeconvNet: ConvNet with batch_norm=True (convnet_bn) is not supported")
        return [
            Conv("conv1", CONV_STRIDES, CONV_PADDING, sown="conv1"),
            ReLU("relu1"),
            MaxPool(POOL_WINDOW, POOL_STRIDE, sown="pool1"),
        ]


# Variant for the device-equivalence tests: CONV -> BN -> RELU -> POOL -> FC.
register("convnet_bn", functools.partial(ConvNet, batch_norm=True))
