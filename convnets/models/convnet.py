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
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from convnets.models.layers import param_name
from convnets.models.registry import register

Array = jax.Array


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
            self.num_filters, (k, k), strides=(1, 1), padding="SAME", use_bias=not self.batch_norm,
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
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="VALID")
        self.sow("intermediates", "pool1", x)
        # FC: every pooled activation to each class score [1x1x10] (section 0).
        x = x.reshape((x.shape[0], -1))
        x = nn.Dense(self.num_classes, name=param_name("fc"))(x)
        self.sow("intermediates", "fc", x)
        return x


# Variant for the device-equivalence tests: CONV -> BN -> RELU -> POOL -> FC.
register("convnet_bn", functools.partial(ConvNet, batch_norm=True))
