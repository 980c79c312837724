"""ResNet (He, Zhang, Ren, Sun, 2015, "Deep residual learning for image recognition", Sec. 3, Table 1), the
ImageNet networks with basic and bottleneck blocks, shortcut options A/B/C, the paper's and torchvision's stride
placement, zero-initialised last BN and the paper's "plain" (shortcut-free) counterparts.

Table 1 (output sizes at 224; [k x k, W] a conv with W output maps; "x n" blocks per stage):

stage (Table 1 name)  output  18-layer          34-layer          50-layer             101-layer   152-layer
stem  (conv1)         112     7x7, 64, stride 2 -> BN -> ReLU
      (pool1)         56      3x3 max pool, stride 2
stage1 (conv2_x)      56      [3x3, 64]  x2 x2  [3x3, 64]  x2 x3  [1x1,64 3x3,64 1x1,256]    x3   x3    x3
stage2 (conv3_x)      28      [3x3, 128] x2 x2  [3x3, 128] x2 x4  [1x1,128 3x3,128 1x1,512]  x4   x4    x8
stage3 (conv4_x)      14      [3x3, 256] x2 x2  [3x3, 256] x2 x6  [1x1,256 3x3,256 1x1,1024] x6   x23   x36
stage4 (conv5_x)      7       [3x3, 512] x2 x2  [3x3, 512] x2 x3  [1x1,512 3x3,512 1x1,2048] x3   x3    x3
head                  1x1     global average pool -> fc num_classes (1000) logits
parameters (option B)         11,689,512        21,797,672        25,557,032           44,549,160  60,192,808
FLOPs (Table 1)               1.8e9             3.6e9             3.8e9                7.6e9       11.3e9

The parameter counts equal torchvision's resnet18/34/50/101/152 (option B shortcuts, convs without bias, BN scale
and shift; batch statistics are not parameters).

Faithful details (Sec. 3.3-3.4): "We adopt batch normalization (BN) right after each convolution and before
activation"; the shortcut is added to the branch's BN output and the sum goes through the block's final ReLU
(Fig. 2, Fig. 5); downsampling "directly by convolutional layers that have a stride of 2" at the first block of
stages 2-4; convolutions have no bias (BN's shift makes one redundant); explicit (symmetric) paddings 3 / 1 / 0
for 7x7 / 3x3 / 1x1 convs and 1 for the 3x3/2 max pool, as Caffe and torchvision pad (not 'SAME', which pads
asymmetrically at stride 2); no dropout. BatchNorm: momentum 0.9, epsilon 1e-5, batch statistics shared across
devices when ``bn_axis_name`` is set.

Options (fields):

- ``shortcut`` (Sec. 3.3, Table 3): ``'A'`` identity everywhere; where dimensions change, stride-``s``
  subsampling ``x[:, ::s, ::s]`` and zero channels appended (:func:`zero_pad_shortcut`), no parameters. ``'B'``
  (default) a projection (1x1 conv, stride s, + BN) only where dimensions change, identity elsewhere. ``'C'`` a
  projection on every block.
- ``stride_on``: ``'1x1'`` (default: the paper's v1, the stride of a downsampling bottleneck on its first 1x1
  conv) or ``'3x3'`` (torchvision's "ResNet v1.5", the stride on the 3x3 conv; alias ``resnet50_v1_5`` etc.).
  Only strides move, so the parameter counts are the same. Basic blocks put the stride on their first 3x3
  either way.
- ``zero_init_last_bn``: the scale of the last BN of each residual branch starts at 0 (Goyal et al., 2017), so
  every block starts as relu(shortcut(x)). Not in the paper. (In a plain net it zeroes every block's output.)
- ``residual=False``: the paper's plain network (Sec. 4.1, Table 2, Fig. 4 left): the same layers and strides, no
  shortcut and no projection parameters (alias ``plain18``, ``plain34``).
- ``width``: the first stage's base width (64); stages double it. ``init_mode``: see below.
- ``conv_bias`` (default False) and ``bn_epsilon`` (default 1e-5): for the Keras applications' ResNet50 weights
  (alias ``resnet50_keras``: v1 strides, option B, ``conv_bias=True``, ``bn_epsilon=1.001e-5``). Keras builds
  every convolution, projections included, with a bias and every BN with epsilon 1.001e-5
  (keras/src/applications/resnet.py). A bias right before a BN is redundant in function (the BN subtracts the
  mean, bias included, and adds its own shift), but the released file holds those biases and the BN's running
  mean was measured with them, so they are kept as parameters rather than folded into the BN: the file then
  loads tensor for tensor and the logits equal Keras'. 53 conv biases: 25,583,592 parameters instead of
  25,557,032.

Registered names: ``resnet`` (the class; 18-layer defaults), ``resnet18``/``34``/``50``/``101``/``152`` (Table 1,
option B, the paper's v1 strides), ``resnet50_v1_5``/``101_v1_5``/``152_v1_5`` (torchvision's stride placement),
``plain18``, ``plain34`` (Table 2's plain nets), ``resnet18_a``, ``resnet34_a`` (Table 2's option-A ResNets),
``resnet34_c`` (Table 3), ``resnet50_keras`` (Keras' ResNet50, see ``conv_bias``).

Initialisation (Sec. 3.4: "We initialize the weights as in [13]", He et al. 2015, "Delving deep into
rectifiers"): conv kernels N(0, 2/n). ``init_mode='fan_in'`` (default) takes n = k*k*c_in, [13]'s forward-pass
derivation and Caffe's MSRA filler; ``'fan_out'`` takes n = k*k*c_out, [13]'s backward-pass form (which [13] says
works as well), used by fb.resnet.torch and torchvision. BN scale 1, shift 0 (or scale 0, see
above); the fc layer keeps flax's default (LeCun normal kernel, zero bias).

Intermediates sown (collection ``'intermediates'``): ``conv1`` (stem conv after BN and ReLU, (N,112,112,64)),
``pool1`` (N,56,56,64), ``stage1`` ... ``stage4`` (block outputs of each stage: 56, 28, 14, 7), ``avgpool`` (the
pooled features (N, C)), ``fc`` (the logits). Each block ``stage{s}_block{b}`` (1-based) sows ``conv1``,
``conv2`` (, ``conv3``) -- each conv's output after its BN (and ReLU, except the last of the branch) -- and
``shortcut`` (what is added; residual nets only). Parameter submodules: ``conv1_layer``, ``bn1_layer``,
``stage{s}_block{b}`` (holding ``conv{i}_layer``, ``bn{i}_layer`` and, for projections, ``proj_layer`` and
``proj_bn_layer``), ``fc_layer``. The CIFAR-10 ResNets of Sec. 4.2 are in :mod:`convnets.models.resnet_cifar`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models.layers import param_name
from convnets.models.registry import register

Array = jax.Array

BLOCKS = ("basic", "bottleneck")
SHORTCUTS = ("A", "B", "C")
STRIDE_ON = ("3x3", "1x1")
INIT_MODES = ("fan_in", "fan_out")
BOTTLENECK_EXPANSION = 4  # Fig. 5 right: 1x1 reduces to the base width, 1x1 restores 4x that width
STAGE_STRIDES = (1, 2, 2, 2)  # Table 1: conv3_1, conv4_1 and conv5_1 downsample with a stride of 2


def he_normal(mode: str = "fan_in") -> nn.initializers.Initializer:
    """He et al. (2015, "Delving deep into rectifiers") initialisation: N(0, 2/n), n the fan-in or fan-out."""
    if mode not in INIT_MODES:
        raise ValueError(f"init_mode must be one of {INIT_MODES}, got {mode!r}")
    return nn.initializers.variance_scaling(2.0, mode, "normal")  # untruncated normal, as [13] and torchvision


def batch_norm(train: bool, axis_name: str | None, name: str, zero_scale: bool = False, epsilon: float = 1e-5
               ) -> nn.BatchNorm:
    """Sec. 3.4: BN "right after each convolution and before activation"; momentum 0.9, epsilon 1e-5 (Keras'
    released ResNet50 used 1.001e-5: ``ResNet.bn_epsilon``)."""
    return nn.BatchNorm(
        use_running_average=not train, momentum=0.9, epsilon=epsilon, axis_name=axis_name,
        scale_init=nn.initializers.zeros_init() if zero_scale else nn.initializers.ones_init(), name=name,
    )


def conv(features: int, k: int, strides: int, mode: str, name: str, use_bias: bool = False) -> nn.Conv:
    """A k x k convolution with the symmetric padding (k - 1) / 2 of Caffe and torchvision; bias-free unless
    ``use_bias`` (only for weights that were trained with one: ``ResNet.conv_bias``). A bias starts at 0."""
    pad = (k - 1) // 2
    return nn.Conv(
        features, (k, k), strides=(strides, strides), padding=((pad, pad), (pad, pad)), use_bias=use_bias,
        kernel_init=he_normal(mode), name=name,
    )


def zero_pad_shortcut(x: Array, out_channels: int, strides: int = 1) -> Array:
    """Option A (Sec. 3.3): identity "with extra zero entries padded for increasing dimensions", "performed with a
    stride of 2" across feature maps of two sizes: ``x[:, ::s, ::s]`` with zero channels appended. No parameters."""
    if strides > 1:
        x = x[:, ::strides, ::strides, :]
    extra = out_channels - x.shape[-1]
    if extra < 0:
        raise ValueError(f"Option A shortcut cannot reduce {x.shape[-1]} channels to {out_channels}")
    return jnp.pad(x, ((0, 0),) * (x.ndim - 1) + ((0, extra),)) if extra else x


class ResidualBlock(nn.Module):
    """A basic (two 3x3 convs, Fig. 5 left) or bottleneck (1x1, 3x3, 1x1, Fig. 5 right) block.

    ``y = relu(F(x) + shortcut(x))`` with F ending in a BN; with ``residual=False`` ``y = relu(F(x))`` (plain net).
    The output has ``features`` channels (basic) or ``4 * features`` (bottleneck).
    """

    features: int
    bottleneck: bool = False
    strides: int = 1
    shortcut: str = "B"
    stride_on: str = "1x1"
    zero_init_last_bn: bool = False
    residual: bool = True
    init_mode: str = "fan_in"
    bn_axis_name: str | None = None
    conv_bias: bool = False  # a bias on every conv (projections too): only to hold weights trained with one
    bn_epsilon: float = 1e-5

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if self.shortcut not in SHORTCUTS:
            raise ValueError(f"shortcut must be one of {SHORTCUTS}, got {self.shortcut!r}")
        if self.stride_on not in STRIDE_ON:
            raise ValueError(f"stride_on must be one of {STRIDE_ON}, got {self.stride_on!r}")
        s, f, mode = self.strides, self.features, self.init_mode
        if self.bottleneck:
            out = f * BOTTLENECK_EXPANSION
            # Fig. 5 right. v1 (paper): the first 1x1 downsamples; v1.5 (torchvision): the 3x3 does.
            s1, s2 = (s, 1) if self.stride_on == "1x1" else (1, s)
            layers = ((f, 1, s1), (f, 3, s2), (out, 1, 1))
        else:
            out = f
            layers = ((f, 3, s), (f, 3, 1))  # Fig. 5 left; the first 3x3 downsamples
        y = x
        for i, (width, k, stride) in enumerate(layers, start=1):
            last = i == len(layers)
            y = conv(width, k, stride, mode, name=param_name(f"conv{i}"), use_bias=self.conv_bias)(y)
            zero = last and self.zero_init_last_bn  # Goyal et al.: the branch starts at 0
            y = batch_norm(train, self.bn_axis_name, param_name(f"bn{i}"), zero_scale=zero, epsilon=self.bn_epsilon)(y)
            if not last:
                y = nn.relu(y)  # the branch's last ReLU comes after the addition (Fig. 2)
            self.sow("intermediates", f"conv{i}", y)
        if not self.residual:  # plain network (Sec. 4.1): no shortcut at all
            return nn.relu(y)
        dims_change = s != 1 or x.shape[-1] != out
        if self.shortcut == "C" or (self.shortcut == "B" and dims_change):
            # Eqn. (2): projection W_s x by a 1x1 convolution (stride s), followed by BN as every conv.
            sc = conv(out, 1, s, mode, name=param_name("proj"), use_bias=self.conv_bias)(x)
            sc = batch_norm(train, self.bn_axis_name, param_name("proj_bn"), epsilon=self.bn_epsilon)(sc)
        else:
            sc = zero_pad_shortcut(x, out, s)  # identity (Eqn. 1), zero-padded if dims change (option A)
        self.sow("intermediates", "shortcut", sc)
        return nn.relu(y + sc)  # Fig. 2: "the second nonlinearity after the addition"


def residual_stages(
    module: nn.Module, x: Array, train: bool, stage_sizes: Sequence[int], widths: Sequence[int],
    strides: Sequence[int], bottleneck: bool, conv_bias: bool = False, bn_epsilon: float = 1e-5,
) -> Array:
    """Runs the stages of ``module`` (a ResNet-like Module with the block option fields), sowing each stage's
    output as ``stage{s}``. Must be called from ``module``'s compact ``__call__``. ``conv_bias`` and
    ``bn_epsilon`` are arguments, not fields read from ``module``, so that modules without them (the CIFAR
    ResNets) keep the defaults."""
    for s, (n, width, stride) in enumerate(zip(stage_sizes, widths, strides, strict=True), start=1):
        for b in range(1, n + 1):
            x = ResidualBlock(
                width, bottleneck=bottleneck, strides=stride if b == 1 else 1, shortcut=module.shortcut,
                stride_on=module.stride_on, zero_init_last_bn=module.zero_init_last_bn, residual=module.residual,
                init_mode=module.init_mode, bn_axis_name=module.bn_axis_name, conv_bias=conv_bias,
                bn_epsilon=bn_epsilon, name=f"stage{s}_block{b}",
            )(x, train)
        module.sow("intermediates", f"stage{s}", x)
    return x


@register("resnet")
class ResNet(nn.Module):
    """An ImageNet ResNet (Table 1). Returns logits ``[N, num_classes]``."""

    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    block: str = "basic"  # 'basic' (18, 34) or 'bottleneck' (50, 101, 152)
    num_classes: int = 1000
    shortcut: str = "B"  # 'A' zero-padding identity, 'B' projection where dims change, 'C' all projections
    stride_on: str = "1x1"  # '1x1' the paper's v1 (default), '3x3' torchvision's v1.5 (bottleneck blocks only)
    zero_init_last_bn: bool = False
    residual: bool = True  # False: the paper's plain network
    width: int = 64
    init_mode: str = "fan_in"  # He init over the fan-in ([13], Caffe) or 'fan_out' (torchvision)
    bn_axis_name: str | None = None
    conv_bias: bool = False  # True: every conv has a bias (Keras' ResNet50 weights; see the module docstring)
    bn_epsilon: float = 1e-5  # Keras' ResNet50: 1.001e-5

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if self.block not in BLOCKS:
            raise ValueError(f"ResNet.block must be one of {BLOCKS}, got {self.block!r}")
        if len(self.stage_sizes) != len(STAGE_STRIDES):
            raise ValueError(f"ResNet.stage_sizes needs 4 stages, got {self.stage_sizes}")
        if x.ndim != 4:
            raise ValueError(f"ResNet expects NHWC images, got shape {x.shape}")
        # Table 1, conv1: 7x7, 64, stride 2 (pad 3: 224 -> 112), BN, ReLU.
        x = conv(self.width, 7, 2, self.init_mode, name=param_name("conv1"), use_bias=self.conv_bias)(x)
        x = nn.relu(batch_norm(train, self.bn_axis_name, param_name("bn1"), epsilon=self.bn_epsilon)(x))
        self.sow("intermediates", "conv1", x)
        # Table 1: "3x3 max pool, stride 2" (pad 1 with -inf: 112 -> 56).
        x = nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
        self.sow("intermediates", "pool1", x)
        widths = tuple(self.width * 2**i for i in range(len(STAGE_STRIDES)))  # 64, 128, 256, 512
        x = residual_stages(self, x, train, self.stage_sizes, widths, STAGE_STRIDES, self.block == "bottleneck",
                            conv_bias=self.conv_bias, bn_epsilon=self.bn_epsilon)
        # Sec. 3.4 / Table 1: "global average pooling", then a 1000-way fully-connected layer.
        x = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "avgpool", x)
        x = nn.Dense(self.num_classes, name=param_name("fc"))(x)
        self.sow("intermediates", "fc", x)
        return x


# Table 1's columns, the paper's v1 bottleneck nets and Table 2's plain nets.
DEPTHS: dict[int, tuple[tuple[int, ...], str]] = {
    18: ((2, 2, 2, 2), "basic"),
    34: ((3, 4, 6, 3), "basic"),
    50: ((3, 4, 6, 3), "bottleneck"),
    101: ((3, 4, 23, 3), "bottleneck"),
    152: ((3, 8, 36, 3), "bottleneck"),
}
ALIASES: dict[str, dict] = {}
for _depth, (_sizes, _block) in DEPTHS.items():
    ALIASES[f"resnet{_depth}"] = {"stage_sizes": _sizes, "block": _block}
    if _block == "bottleneck":
        ALIASES[f"resnet{_depth}_v1_5"] = {"stage_sizes": _sizes, "block": _block, "stride_on": "3x3"}
for _depth in (18, 34):
    ALIASES[f"plain{_depth}"] = {"stage_sizes": DEPTHS[_depth][0], "block": "basic", "residual": False}
# Table 2 compares plain nets with option-A ResNets; Table 3 compares ResNet-34 A / B (the default) / C.
for _alias, _depth, _option in (("resnet18_a", 18, "A"), ("resnet34_a", 34, "A"), ("resnet34_c", 34, "C")):
    ALIASES[_alias] = {"stage_sizes": DEPTHS[_depth][0], "block": "basic", "shortcut": _option}
# The Keras applications' ResNet50 (keras/src/applications/resnet.py: ResNet(..., use_bias=True), every
# BatchNormalization with epsilon=1.001e-5): the paper's v1 strides and option B, but with conv biases and that
# epsilon, so that its released ImageNet weights load without folding (convnets.weights.keras).
ALIASES["resnet50_keras"] = {"stage_sizes": DEPTHS[50][0], "block": "bottleneck", "stride_on": "1x1",
                             "conv_bias": True, "bn_epsilon": 1.001e-5}
for _alias, _kwargs in ALIASES.items():
    register(_alias, functools.partial(ResNet, **_kwargs))
