"""The CIFAR-10 ResNets (He et al., 2015, "Deep residual learning for image recognition", Sec. 4.2, Table 6) and
their plain counterparts (Fig. 6).

Sec. 4.2: "The first layer is 3x3 convolutions. Then we use a stack of 6n layers with 3x3 convolutions on the
feature maps of sizes {32, 16, 8} respectively, with 2n layers for each feature map size. The numbers of filters
are {16, 32, 64} respectively. The subsampling is performed by convolutions with a stride of 2. The network ends
with a global average pooling, a 10-way fully-connected layer, and softmax. There are totally 6n+2 stacked
weighted layers."

output map size     32x32                 16x16                 8x8
# layers            1 + 2n                2n                    2n
# filters           16                    32                    64
layers              conv 3x3 16 -> BN -> ReLU, then n basic blocks per size; global average pool -> fc 10

name        n     depth 6n+2   parameters (option A)   Table 6
resnet20    3     20              269,722              0.27M
resnet32    5     32              464,154              0.46M
resnet44    7     44              658,586              0.66M
resnet56    9     56              853,018              0.85M
resnet110   18    110           1,727,962              1.7M
resnet1202  200   1202         19,421,274              19.4M

Shortcuts (Sec. 4.2): "we use identity shortcuts in all cases (i.e., option A), so our residual models have
exactly the same depth, width, and number of parameters as the plain counterparts": where the map size halves
and the width doubles, the shortcut subsamples with stride 2 and appends zero channels
(:func:`~convnets.models.resnet.zero_pad_shortcut`). ``shortcut='B'``/``'C'`` are available as for ImageNet.
``plain20`` ... ``plain56`` (``residual=False``) are Fig. 6's plain nets, with the same parameters (``plain110``
also registered).

Blocks, BN (after every conv, before the ReLU; momentum 0.9, epsilon 1e-5), bias-free convs with padding 1, He
initialisation ("we adopt the weight initialization in [13] and BN [16] but with no dropout"; ``init_mode`` as in
:mod:`convnets.models.resnet`) and the ``zero_init_last_bn`` option are those of the ImageNet ResNets.

Intermediates sown (collection ``'intermediates'``): ``conv1`` (after BN and ReLU, (N,32,32,16)), ``stage1``
(N,32,32,16), ``stage2`` (N,16,16,32), ``stage3`` (N,8,8,64), ``avgpool`` (N,64), ``fc`` (the logits); each block
``stage{s}_block{b}`` sows ``conv1``, ``conv2`` and ``shortcut``. Parameter submodules: ``conv1_layer``,
``bn1_layer``, ``stage{s}_block{b}``, ``fc_layer``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models.layers import param_name
from convnets.models.registry import register
from convnets.models.resnet import batch_norm, conv, residual_stages

Array = jax.Array

STAGE_STRIDES = (1, 2, 2)  # map sizes 32, 16, 8: "subsampling is performed by convolutions with a stride of 2"
DEPTHS = (20, 32, 44, 56, 110, 1202)  # Table 6 (n = 3, 5, 7, 9, 18, 200)
PLAIN_DEPTHS = (20, 32, 44, 56, 110)  # Fig. 6 left shows plain-20 ... plain-56; 110 for the same comparison


def blocks_per_stage(depth: int) -> int:
    """n for a 6n+2-layer network."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"A CIFAR ResNet has 6n+2 layers (20, 32, 44, 56, 110, ...), got depth={depth}")
    return (depth - 2) // 6


@register("resnet_cifar")
class CifarResNet(nn.Module):
    """A 6n+2-layer CIFAR-10 ResNet (Sec. 4.2). Returns logits ``[N, num_classes]``."""

    depth: int = 20
    num_classes: int = 10
    shortcut: str = "A"  # Sec. 4.2: option A in all cases
    stride_on: str = "3x3"  # unused by basic blocks (kept so the blocks read the same fields as ResNet's)
    zero_init_last_bn: bool = False
    residual: bool = True  # False: Fig. 6's plain network
    width: int = 16  # filters {16, 32, 64}
    init_mode: str = "fan_in"
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        n = blocks_per_stage(self.depth)
        if x.ndim != 4:
            raise ValueError(f"CifarResNet expects NHWC images, got shape {x.shape}")
        # "The first layer is 3x3 convolutions" (16 filters, stride 1, size preserved), then BN and ReLU.
        x = conv(self.width, 3, 1, self.init_mode, name=param_name("conv1"))(x)
        x = nn.relu(batch_norm(train, self.bn_axis_name, param_name("bn1"))(x))
        self.sow("intermediates", "conv1", x)
        widths = tuple(self.width * 2**i for i in range(len(STAGE_STRIDES)))  # 16, 32, 64
        x = residual_stages(self, x, train, (n,) * len(STAGE_STRIDES), widths, STAGE_STRIDES, bottleneck=False)
        # "The network ends with a global average pooling, a 10-way fully-connected layer, and softmax."
        x = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "avgpool", x)
        x = nn.Dense(self.num_classes, name=param_name("fc"))(x)
        self.sow("intermediates", "fc", x)
        return x


for _depth in DEPTHS:
    register(f"resnet{_depth}", functools.partial(CifarResNet, depth=_depth))
for _depth in PLAIN_DEPTHS:
    register(f"plain{_depth}", functools.partial(CifarResNet, depth=_depth, residual=False))
