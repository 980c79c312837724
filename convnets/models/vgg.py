"""VGG (Simonyan and Zisserman, 2014, "Very deep convolutional networks for large-scale image recognition",
Sec. 2, Table 1), configurations A, A-LRN, B, C, D, E, with the paper's dense evaluation (Sec. 3.2).

Table 1 (convK-W: a KxK convolution with W output maps, stride 1, padding 1 for 3x3 and 0 for 1x1; every conv
and hidden FC layer followed by a ReLU; M: 2x2 max pool stride 2):

stage (output at 224)   A / A-LRN            B            C                       D            E
1  (112x112x64)         conv3-64 [LRN] M     2 x conv3    2 x conv3               2 x conv3    2 x conv3
2  (56x56x128)          conv3-128 M          2 x conv3    2 x conv3               2 x conv3    2 x conv3
3  (28x28x256)          2 x conv3-256 M      2 x conv3    2 x conv3 + conv1-256   3 x conv3    4 x conv3
4  (14x14x512)          2 x conv3-512 M      2 x conv3    2 x conv3 + conv1-512   3 x conv3    4 x conv3
5  (7x7x512)            2 x conv3-512 M      2 x conv3    2 x conv3 + conv1-512   3 x conv3    4 x conv3
FC-4096 -> dropout 0.5 -> FC-4096 -> dropout 0.5 -> FC-1000 (logits)

Parameters at 224x224x3 (equal to torchvision's vgg11/13/16/19): A 132,863,336; A-LRN the same (LRN has no
parameters); B 133,047,848; C 133,638,952 (D with three 3x3 convs replaced by 1x1: D - 8*(256*256 + 2*512*512)
= D - 4,718,592); D 138,357,544; E 143,667,240. The paper's Table 2 rounds these to 133, 133, 134, 138, 144 M.

Faithful details: 3x3 stride-1 convolutions with 1-pixel padding, 2x2/2 max pooling, ReLU everywhere (Sec. 2.1);
A-LRN's LRN after conv1_1 (and its ReLU) with "the parameters ... of (Krizhevsky et al., 2012)" (Sec. 2.1):
k=2, n=5, alpha=1e-4, beta=0.75; C's 1x1 convolutions as the last layer of stages 3-5 (Table 1); dropout 0.5
on the outputs of the first two FC layers, active only with ``train=True`` ('dropout' rng) (Sec. 3.1); biases 0.

Initialisation (field ``weight_init``; a field named ``init`` would shadow ``Module.init``). Sec. 3.1: "we
sampled the weights from a normal distribution with the zero mean and 10^-2 variance. The biases were initialised
with zero." ``'paper'`` (default) reads 10^-2 as the standard deviation, N(0, 0.01) as in AlexNet: read literally
(variance 10^-2, std 0.1: ``'paper_literal'``) the untrained VGG-A gives logits of order 1e8 on mean-subtracted
0-255 pixels (measured), which the paper's recipe (lr 1e-2, A trained from scratch) could not have trained; with
std 0.01 they are of order 1e-3. ``'glorot'`` is Glorot and Bengio's normalised (uniform) initialisation, which
the paper notes works without pre-training (logits of order 1). The paper trained the deeper configs by copying
A's first four conv layers and three FC layers into them, a training-time step not done here.

Dense evaluation (Sec. 3.2, ``dense=True``): "the first FC layer [becomes] a 7 x 7 conv. layer, the last two FC
layers [become] 1 x 1 conv. layers", applied to the whole (uncropped) image; "the class score map is spatially
averaged (sum-pooled)". Same parameters in both modes (no conversion step): fc6's kernel, shape
(7*7*512, 4096), is the row-major (h, w, c) flattening of pool5's map in the standard pass, so reshaping it to
(7, 7, 512, 4096) gives the convolution exactly (:class:`~convnets.models.layers.FullyConnected`); fc7 and fc8
are ``nn.Dense`` on the channel axis, i.e. 1x1 convolutions. On a 224 image dense and standard logits agree; on
an SxS image the score map is (floor(S/32) - 6) x (floor(S/32) - 6), e.g. 3x3 at 288. Averaging with the
flipped image and over scales is done by the evaluation code.

Input size: ``input_size`` (a multiple of 32; 224 in the paper) fixes fc6's window, ``input_size // 32``.
The standard mode needs ``input_size`` square images and raises a ``ValueError`` suggesting ``dense=True``
otherwise; the dense mode takes any image at least that large. A small ``input_size`` (e.g. 32: fc6 sees a
1x1x512 map) gives small-image variants for CPU smoke runs. ``stage_widths`` and ``fc_features`` override the
widths (64, 128, 256, 512, 512) and 4096, for tests; the defaults are the paper's.

BatchNorm variants (``batch_norm=True``; registered ``vgg11_bn``, ``vgg13_bn``, ``vgg16_bn``, ``vgg19_bn`` for
configurations A, B, D, E): not in the paper (BatchNorm came in 2015), but torchvision's ``vgg*_bn`` networks
(torchvision/models/vgg.py, ``make_layers(cfg, batch_norm=True)``: Conv2d, BatchNorm2d, ReLU). A BatchNorm (eps
1e-5, torchvision's default; momentum 0.9 in flax's convention, as elsewhere here) follows every convolution, before
its ReLU; the convolution keeps its bias, as torchvision's does (redundant before BN, but part of the released
weights). Each BN adds a scale and a shift per map: 2 * (sum of the conv widths) parameters, e.g. vgg16_bn
138,365,992 (D + 8,448) and vgg19_bn 143,678,248 (E + 11,008), torchvision's counts; running means and variances
are ``batch_stats``, not parameters. The classifier is the paper's (torchvision's is the same, and its
``AdaptiveAvgPool2d((7, 7))`` is the identity at 224). ``bn_axis_name``: BN statistics synchronised over this
device axis. The DeconvNet (``deconv_stages``) refuses ``batch_norm=True``: Zeiler and Fergus's DeconvNet has no
step for BatchNorm.

Intermediates sown (collection ``'intermediates'``; conv outputs after their ReLU): ``conv{s}_{i}`` (stage s,
layer i), ``norm1`` (A-LRN only), ``pool1`` ... ``pool5``, ``fc6``, ``fc7`` (after ReLU, before dropout; maps in
dense mode), ``score_map`` (dense mode only: fc8's map (N, h, w, num_classes)) and ``fc8`` (the logits).
Parameter submodules: ``conv{s}_{i}_layer`` (and ``bn{s}_{i}_layer`` with ``batch_norm``), ``fc6_layer``,
``fc7_layer``, ``fc8_layer``.

``deconv_stages()`` describes the conv layers to the DeconvNet from the helpers ``__call__`` uses
(``CONFIGS``, ``CONV_STRIDES``, ``conv_padding``, ``lrn_follows``, ``POOL_WINDOW``, ``POOL_STRIDE``).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models.deconv_stages import Conv, MaxPool, Norm, ReLU, Stage
from convnets.models.layers import FullyConnected, LocalResponseNorm, max_pool, param_name
from convnets.models.registry import register

Array = jax.Array

# Table 1: the kernel size of each conv layer, stage by stage (widths are STAGE_WIDTHS).
CONFIGS: dict[str, tuple[tuple[int, ...], ...]] = {
    "A": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "A-LRN": ((3,), (3,), (3, 3), (3, 3), (3, 3)),
    "B": ((3, 3), (3, 3), (3, 3), (3, 3), (3, 3)),
    "C": ((3, 3), (3, 3), (3, 3, 1), (3, 3, 1), (3, 3, 1)),
    "D": ((3, 3), (3, 3), (3, 3, 3), (3, 3, 3), (3, 3, 3)),
    "E": ((3, 3), (3, 3), (3, 3, 3, 3), (3, 3, 3, 3), (3, 3, 3, 3)),
}
LRN_CONFIGS = frozenset({"A-LRN"})
STAGE_WIDTHS = (64, 128, 256, 512, 512)  # Sec. 2.2: "starting from 64 in the first layer and then increasing
# by a factor of 2 after each max-pooling layer, until it reaches 512"
FC_FEATURES = 4096
CONV_STRIDES = (1, 1)  # Sec. 2.1: "The convolution stride is fixed to 1 pixel"
# Sec. 2.1: "Max-pooling is performed over a 2 x 2 pixel window, with stride 2."
POOL_WINDOW = 2
POOL_STRIDE = 2
DOWNSAMPLING = 32  # five 2x2/2 pools
INITS = ("paper", "paper_literal", "glorot")
BN_EPSILON = 1e-5  # torchvision's vgg*_bn: nn.BatchNorm2d(v) with PyTorch's default eps
BN_MOMENTUM = 0.9  # flax's convention (PyTorch's momentum 0.1)


def conv_name(stage: int, index: int) -> str:
    """Name of conv layer ``index`` of ``stage`` (both from 1), e.g. 'conv3_2'."""
    return f"conv{stage}_{index}"


def conv_padding(kernel: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Sec. 2.1: stride 1, padding 1 for 3x3 (size preserved); the 1x1 convs of C need none."""
    pad = (kernel - 1) // 2
    return ((pad, pad), (pad, pad))


def lrn_follows(config: str, stage: int, index: int) -> bool:
    """Table 1, A-LRN: LRN after the first conv layer only."""
    return stage == 1 and index == 1 and config in LRN_CONFIGS


def _check_config(config: str) -> None:
    if config not in CONFIGS:
        raise ValueError(f"Unknown VGG config {config!r}; valid: {', '.join(CONFIGS)}")


def _initializers(scheme: str) -> dict:
    if scheme == "paper":  # Sec. 3.1, "10^-2" read as the standard deviation (see the module docstring)
        kernel = nn.initializers.normal(stddev=0.01)
    elif scheme == "paper_literal":  # Sec. 3.1 to the letter: variance 10^-2, i.e. standard deviation 0.1
        kernel = nn.initializers.normal(stddev=0.1)
    elif scheme == "glorot":  # Sec. 3.1: "the random initialisation procedure of Glorot & Bengio (2010)"
        kernel = nn.initializers.glorot_uniform()
    else:
        raise ValueError(f"VGG.weight_init must be one of {INITS}, got {scheme!r}")
    return {"kernel_init": kernel, "bias_init": nn.initializers.zeros_init()}  # "biases ... initialised with zero"


@register("vgg")
class VGG(nn.Module):
    """VGG configuration ``config`` (A, A-LRN, B, C, D, E). Returns logits ``[N, num_classes]``."""

    config: str = "D"
    num_classes: int = 1000
    dense: bool = False  # Sec. 3.2 dense evaluation: FC layers as convolutions, score map spatially averaged
    dropout_rate: float = 0.5
    weight_init: str = "paper"  # 'paper' (N(0, 0.01)), 'paper_literal' (N(0, 0.1)) or 'glorot'; see the docstring
    input_size: int = 224  # training crop size; fc6 sees an (input_size/32)^2 x 512 map
    stage_widths: tuple[int, ...] = STAGE_WIDTHS
    fc_features: int = FC_FEATURES
    batch_norm: bool = False  # torchvision's vgg*_bn: BN after every conv, before its ReLU (module docstring)
    bn_axis_name: str | None = None  # with batch_norm: BN statistics synchronised over this axis

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _check_config(self.config)
        if self.input_size < DOWNSAMPLING or self.input_size % DOWNSAMPLING:
            raise ValueError(f"VGG.input_size must be a positive multiple of {DOWNSAMPLING}, got {self.input_size}")
        if len(self.stage_widths) != len(CONFIGS[self.config]):
            raise ValueError(f"VGG.stage_widths needs 5 widths, got {self.stage_widths}")
        size = self.input_size
        if x.ndim != 4:
            raise ValueError(f"VGG expects NHWC images, got shape {x.shape}")
        if not self.dense and x.shape[1:3] != (size, size):
            raise ValueError(
                f"VGG(dense=False) expects {size}x{size} images (fc6 sees a {size // DOWNSAMPLING}x"
                f"{size // DOWNSAMPLING} map), got {x.shape[1]}x{x.shape[2]}. Use dense=True to evaluate images of "
                f"other sizes (Sec. 3.2 dense evaluation), or set input_size."
            )
        if self.dense and (x.shape[1] < size or x.shape[2] < size):
            raise ValueError(f"VGG(dense=True) needs images of at least {size}x{size}, got {x.shape[1]}x{x.shape[2]}")
        inits = _initializers(self.weight_init)

        for s, (kernels, width) in enumerate(zip(CONFIGS[self.config], self.stage_widths, strict=True), start=1):
            for i, k in enumerate(kernels, start=1):
                name = conv_name(s, i)
                conv = nn.Conv(
                    width, (k, k), strides=CONV_STRIDES, padding=conv_padding(k), name=param_name(name), **inits
                )
                x = conv(x)
                if self.batch_norm:
                    # torchvision's make_layers: Conv2d -> BatchNorm2d -> ReLU (not in the paper).
                    x = nn.BatchNorm(
                        use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                        axis_name=self.bn_axis_name, name=param_name(f"bn{s}_{i}"),
                    )(x)
                x = nn.relu(x)
                self.sow("intermediates", name, x)
                if lrn_follows(self.config, s, i):
                    # Table 1, A-LRN: LRN after the first conv layer, with AlexNet's parameters (Sec. 2.1).
                    x = LocalResponseNorm(k=2.0, n=5, alpha=1e-4, beta=0.75)(x)
                    self.sow("intermediates", "norm1", x)
            x = max_pool(x, POOL_WINDOW, POOL_STRIDE)
            self.sow("intermediates", f"pool{s}", x)

        fc6 = FullyConnected(self.fc_features, name=param_name("fc6"), **inits)
        fc7 = nn.Dense(self.fc_features, name=param_name("fc7"), **inits)
        fc8 = nn.Dense(self.num_classes, name=param_name("fc8"), **inits)
        window = size // DOWNSAMPLING
        if self.dense:
            # Sec. 3.2: fc6 as a 7x7 convolution (same kernel, reshaped), fc7 and fc8 as 1x1 convolutions.
            x = fc6(x, window=(window, window))
        else:
            x = fc6(x.reshape((x.shape[0], -1)))  # row-major (h, w, c) flattening
        # Sec. 3.1: dropout on the first two fully-connected layers (ratio 0.5).
        x = nn.relu(x)
        self.sow("intermediates", "fc6", x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.relu(fc7(x))
        self.sow("intermediates", "fc7", x)
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = fc8(x)
        if self.dense:
            self.sow("intermediates", "score_map", x)
            # Sec. 3.2: "the class score map is spatially averaged (sum-pooled)".
            x = jnp.mean(x, axis=(1, 2))
        self.sow("intermediates", "fc8", x)
        return x

    @nn.nowrap  # a description of the architecture: callable on an unbound module
    def deconv_stages(self) -> list[Stage]:
        """The DeconvNet stages up to the last conv layer (pool5 and the FC layers are not projected);
        ``NotImplementedError`` with ``batch_norm=True``."""
        _check_config(self.config)
        if self.batch_norm:
            # The ZF DeconvNet (Zeiler and Fergus 2013, Sec. 2.1) has no step for BatchNorm: refuse, don't guess.
            raise NotImplementedError("DeconvNet: VGG with batch_norm=True (vgg*_bn) is not supported")
        stages: list[Stage] = []
        for s, kernels in enumerate(CONFIGS[self.config], start=1):
            for i, k in enumerate(kernels, start=1):
                name = conv_name(s, i)
                stages += [Conv(name, CONV_STRIDES, conv_padding(k)), ReLU(name)]
                if lrn_follows(self.config, s, i):
                    stages.append(Norm("norm1"))
            stages.append(MaxPool(POOL_WINDOW, POOL_STRIDE, sown=f"pool{s}"))
        return stages[:-1]  # nothing above the last conv layer is projected: drop pool5


# Table 1's columns under their common names (torchvision's vgg11/13/16/19; C has no common name).
for _alias, _config in (
    ("vgg11", "A"), ("vgg11_lrn", "A-LRN"), ("vgg13", "B"), ("vgg16_c", "C"), ("vgg16", "D"), ("vgg19", "E"),
):
    register(_alias, functools.partial(VGG, config=_config))
# torchvision's BatchNorm variants of A, B, D, E (see the module docstring).
for _alias, _config in (("vgg11_bn", "A"), ("vgg13_bn", "B"), ("vgg16_bn", "D"), ("vgg19_bn", "E")):
    register(_alias, functools.partial(VGG, config=_config, batch_norm=True))
