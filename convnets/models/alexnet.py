"""AlexNet (Krizhevsky, Sutskever, Hinton, 2012, "ImageNet classification with deep convolutional neural
networks", Sec. 3, Fig. 2), with the two-GPU tower split, LRN and overlapping pooling.

Layer   operation (224x224x3 input)                                  output      parameters (two towers)
conv1   96 x 11x11x3, stride 4, pad 2 -> ReLU -> LRN -> max 3x3/2    55 -> 27    11*11*3*96 + 96      =     34,944
conv2   256 x 5x5x48 (2 groups), pad 2 -> ReLU -> LRN -> max 3x3/2   27 -> 13    5*5*48*256 + 256     =    307,456
conv3   384 x 3x3x256 (sees both towers), pad 1 -> ReLU              13          3*3*256*384 + 384    =    885,120
conv4   384 x 3x3x192 (2 groups), pad 1 -> ReLU                      13          3*3*192*384 + 384    =    663,936
conv5   256 x 3x3x192 (2 groups), pad 1 -> ReLU -> max 3x3/2         13 -> 6     3*3*192*256 + 256    =    442,624
fc6     4096 -> ReLU -> dropout 0.5                                  4096        6*6*256*4096 + 4096  = 37,752,832
fc7     4096 -> ReLU -> dropout 0.5                                  4096        4096*4096 + 4096     = 16,781,312
fc8     num_classes (1000) logits                                    1000        4096*1000 + 1000     =  4,097,000
                                                                                 total                = 60,965,224

``towers=1`` (no grouping anywhere) adds exactly the weights grouping removes, 5*5*48*256 + 3*3*192*384 +
3*3*192*256 = 1,413,120, for 62,378,344 parameters. ``overlapping_pool=False`` (2x2/2 pooling) changes no size
(55 -> 27 -> 13 -> 6, as the paper says: it "produces output of equivalent dimensions", Sec. 3.4) and so no
parameter count; ``lrn=False`` removes no parameters (LRN has none).

Input size and conv1 padding. The paper says 224x224x3 inputs and 55x55 conv1 maps, but (224 - 11) / 4 + 1 is
not an integer; Caffe's reference model uses 227x227 crops with no padding. ``input_size=224`` (default) pads
conv1 by 2 pixels on every side (torchvision's choice): windows start at -2, 2, ..., 214, so 2 rows/columns
of padding are read at the top/left and 1 at the bottom/right, and conv1 gives 55x55. ``input_size=227`` uses
VALID conv1 (Caffe), also 55x55; both give 55 -> 27 -> 13 -> 6, so fc6 sees 6*6*256 = 9216 inputs and the
parameter counts are the same. Any other ``input_size`` >= 63 (e.g. tiny CPU smoke runs) uses padding 2; fc6's
fan-in then follows pool5's map ("flatten whatever arrives"). The image must be ``input_size`` square.

Towers (Sec. 3.2): the net is split over two GPUs that "communicate only in certain layers": conv2, conv4 and
conv5 see only the maps of their own tower (``feature_group_count=2``: tower 1 = first half of the channels);
conv3 and the fully-connected layers see both. conv1 needs no grouping (each GPU's 48 kernels see the whole
image). LRN runs on each GPU, so with two towers it normalises each tower's maps separately (the window is
clipped at the tower boundary); Caffe's single-GPU port normalises across all maps. Note: the paper's -1.7%/-1.2%
ablation compares against "a net with half as many kernels in each convolutional layer trained on one GPU"
(Sec. 3.2 and its footnote); ``towers=1`` is instead the full-width ungrouped net, whose parameter count differs
from the two-tower net by exactly the grouped weights.

Other faithful details: ReLU after every conv and hidden FC layer (Sec. 3.1); LRN after the ReLU of conv1 and
conv2 with k=2, n=5, alpha=1e-4, beta=0.75 (Sec. 3.3); overlapping max pooling 3x3 stride 2 after the LRNs and
after conv5 (Sec. 3.4); dropout 0.5 on the outputs of the two hidden fully-connected layers, "setting to zero
the output of each hidden neuron" (Sec. 4.2); weights N(0, 0.01), biases 1 in conv2, conv4, conv5 and the hidden
FC layers, 0 elsewhere (Sec. 5). Dropout is active only with ``train=True`` and uses the 'dropout' rng.

torchvision's AlexNet (registered as ``alexnet_torchvision``; torchvision/models/alexnet.py, class AlexNet) is the
one-tower net of Krizhevsky's later "One weird trick for parallelizing convolutional neural networks" (2014),
which the docstring of torchvision's ``alexnet`` builder names as its basis. It differs from the paper in three
ways, each a field here, so that the variant is this module with other settings and its released weights
(alexnet-owt-7be5be79.pth) import exactly:

- ``widths=(64, 192, 384, 256, 256)`` instead of (96, 256, 384, 384, 256): narrower conv1, conv2 and conv4;
- ``towers=1, lrn=False``: no grouped convolutions and no response normalisation;
- ``dropout_on="inputs"``: dropout on the inputs of fc6 and fc7 (torchvision's classifier is Dropout, Linear,
  ReLU, Dropout, Linear, ReLU, Linear) where the paper drops their outputs ("outputs", the default). At
  inference the two are the same network.

Its geometry is the paper's at 224 (conv1 11x11/4 pad 2, 3x3/2 max pools, pads 2 / 1 / 1 / 1); its
``AdaptiveAvgPool2d((6, 6))`` before fc6 is the identity on the 6x6 pool5 map of a 224 image, so it is omitted (at
other sizes fc6's fan-in follows pool5's map as in the paper variant, where torchvision would resample to 6x6).
Parameters: 23,296 + 307,392 + 663,936 + 884,992 + 590,080 (conv1-5) + 37,752,832 + 16,781,312 + 4,097,000
(fc6-8) = 61,100,840, torchvision's count. Initialisation stays the paper's (Sec. 5): the variant exists to load
torchvision's weights.

Intermediates sown (collection ``'intermediates'``; conv outputs after their ReLU): ``conv1`` (N,55,55,96),
``norm1``, ``pool1`` (N,27,27,96), ``conv2`` (N,27,27,256), ``norm2``, ``pool2`` (N,13,13,256), ``conv3``,
``conv4``, ``conv5`` (N,13,13,*), ``pool5`` (N,6,6,256), ``fc6``, ``fc7`` (after ReLU, before any dropout), ``fc8``
(the logits). ``norm*`` only with ``lrn=True``. Parameter submodules: ``conv1_layer`` ... ``fc8_layer``.

``deconv_stages()`` describes conv1-conv5 to the DeconvNet from the tables ``setup`` and ``__call__`` use
(``conv_geometry``, ``pool_geometry``, ``POOLED_CONVS``, ``PLAIN_CONVS``).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax

from convnets.models.deconv_stages import Conv, MaxPool, Norm, Padding, ReLU, Stage
from convnets.models.layers import LocalResponseNorm, dropout_fc_head, max_pool, param_name
from convnets.models.registry import register

Array = jax.Array

CAFFE_INPUT_SIZE = 227  # VALID conv1; every other input size pads conv1 by 2 pixels (torchvision).
MIN_INPUT_SIZE = 63  # smallest image giving a non-empty pool5 map with the 3x3/2 pools

# Sec. 5: "We initialized the weights in each layer from a zero-mean Gaussian distribution with standard
# deviation 0.01."
WEIGHT_STD = 0.01
# Sec. 5: biases "in the second, fourth, and fifth convolutional layers, as well as in the fully-connected
# hidden layers, with the constant 1 ... in the remaining layers with the constant 0".
UNIT_BIAS_LAYERS = frozenset({"conv2", "conv4", "conv5", "fc6", "fc7"})

# Sec. 3.5: "Response-normalization layers follow the first and second convolutional layers. Max-pooling layers
# follow both response-normalization layers"; the third, fourth and fifth "are connected to one another without
# any intervening pooling or normalization layers".
POOLED_CONVS = ("conv1", "conv2")
PLAIN_CONVS = ("conv3", "conv4", "conv5")
PAD1 = ((1, 1), (1, 1))
# Sec. 3.5, Fig. 2: the output maps of conv1-conv5 (both towers together).
PAPER_WIDTHS = (96, 256, 384, 384, 256)
# torchvision/models/alexnet.py, AlexNet.features: Conv2d(3, 64, ...), (64, 192), (192, 384), (384, 256), (256, 256).
TORCHVISION_WIDTHS = (64, 192, 384, 256, 256)
# Where dropout acts in fc6 and fc7: on their outputs (Sec. 4.2) or on their inputs (torchvision's classifier).
DROPOUT_ON = ("outputs", "inputs")
PAD2 = ((2, 2), (2, 2))


def conv_geometry(input_size: int) -> dict[str, tuple[tuple[int, int], Padding]]:
    """``(strides, padding)`` of each conv layer: conv1 stride 4 (Sec. 3.5), sizes kept by conv2-conv5.

    conv1's padding depends on the input size (see the module docstring): VALID at Caffe's 227, else 2.
    """
    return {
        "conv1": ((4, 4), "VALID" if input_size == CAFFE_INPUT_SIZE else PAD2),
        "conv2": ((1, 1), PAD2),
        "conv3": ((1, 1), PAD1),
        "conv4": ((1, 1), PAD1),
        "conv5": ((1, 1), PAD1),
    }


def pool_geometry(overlapping: bool) -> tuple[int, int]:
    """``(window, stride)`` of the max pools: Sec. 3.4's overlapping z = 3, s = 2; the ablation s = z = 2."""
    return (3, 2) if overlapping else (2, 2)


def _inits(layer: str) -> dict:
    bias = nn.initializers.ones_init() if layer in UNIT_BIAS_LAYERS else nn.initializers.zeros_init()
    return {"kernel_init": nn.initializers.normal(stddev=WEIGHT_STD), "bias_init": bias}


@register("alexnet")
class AlexNet(nn.Module):
    """AlexNet. Returns logits ``[N, num_classes]``."""

    num_classes: int = 1000
    towers: int = 2  # 2: the paper's two-GPU split (groups=2 in conv2/4/5, per-tower LRN); 1: no grouping
    lrn: bool = True  # False: the Sec. 3.3 ablation (no response normalisation)
    overlapping_pool: bool = True  # False: the Sec. 3.4 ablation, 2x2 stride-2 pooling
    dropout_rate: float = 0.5
    input_size: int = 224  # 224 (conv1 padding 2) or 227 (Caffe, VALID conv1); see the module docstring
    widths: tuple[int, int, int, int, int] = PAPER_WIDTHS  # output maps of conv1-conv5
    dropout_on: str = "outputs"  # 'outputs' of fc6 and fc7 (Sec. 4.2) or their 'inputs' (torchvision)

    def setup(self) -> None:
        if self.towers not in (1, 2):
            raise ValueError(f"AlexNet.towers must be 1 or 2, got {self.towers}")
        if self.dropout_on not in DROPOUT_ON:
            raise ValueError(f"AlexNet.dropout_on must be one of {DROPOUT_ON}, got {self.dropout_on!r}")
        if len(self.widths) != 5 or any(w % self.towers for w in self.widths):
            raise ValueError(f"AlexNet.widths needs 5 widths divisible by towers={self.towers}, got {self.widths}")
        if self.input_size < MIN_INPUT_SIZE:
            raise ValueError(f"AlexNet.input_size must be at least {MIN_INPUT_SIZE}, got {self.input_size}")
        groups = self.towers
        geometry = conv_geometry(self.input_size)

        def conv(name: str, features: int, kernel: int, feature_group_count: int = 1) -> nn.Conv:
            strides, padding = geometry[name]
            return nn.Conv(
                features, (kernel, kernel), strides=strides, padding=padding,
                feature_group_count=feature_group_count, **_inits(name),
            )

        # Attribute names follow layers.param_name: '<layer>_layer'.
        w1, w2, w3, w4, w5 = self.widths  # the paper's 96, 256, 384, 384, 256 unless changed
        # conv1: 96 kernels 11x11x3, stride 4 (Sec. 3.5); each GPU's 48 see the whole image, so no grouping.
        self.conv1_layer = conv("conv1", w1, 11)
        # conv2: 256 kernels 5x5x48, connected only to the conv1 maps of the same GPU (Sec. 3.5, Fig. 2).
        self.conv2_layer = conv("conv2", w2, 5, groups)
        # conv3: 384 kernels 3x3x256, "connected to all kernel maps in the second layer" (Sec. 3.2, 3.5).
        self.conv3_layer = conv("conv3", w3, 3)
        # conv4: 384 kernels 3x3x192 and conv5: 256 kernels 3x3x192, same GPU only (Sec. 3.5).
        self.conv4_layer = conv("conv4", w4, 3, groups)
        self.conv5_layer = conv("conv5", w5, 3, groups)
        # fc6, fc7: 4096 neurons each, connected to all neurons of the previous layer (Sec. 3.5); fc8: the classes.
        self.fc6_layer = nn.Dense(4096, **_inits("fc6"))
        self.fc7_layer = nn.Dense(4096, **_inits("fc7"))
        self.fc8_layer = nn.Dense(self.num_classes, **_inits("fc8"))
        # LRN with the paper's constants (Sec. 3.3), normalising each GPU's maps on that GPU.
        self.norm = LocalResponseNorm(k=2.0, n=5, alpha=1e-4, beta=0.75, groups=groups)
        self.dropout = nn.Dropout(self.dropout_rate)

    def _pool(self, x: Array) -> Array:
        return max_pool(x, *pool_geometry(self.overlapping_pool))

    def __call__(self, x: Array, train: bool = False) -> Array:
        if x.ndim != 4 or x.shape[1:3] != (self.input_size, self.input_size):
            raise ValueError(
                f"AlexNet(input_size={self.input_size}) expects NHWC images of {self.input_size}x{self.input_size}, "
                f"got shape {x.shape}; set input_size to the image size (227 = Caffe's VALID conv1)"
            )
        # conv1, conv2 -> ReLU -> LRN -> pool; conv3-conv5 -> ReLU (Sec. 3.5, see POOLED_CONVS).
        for i, name in enumerate(POOLED_CONVS, start=1):
            x = nn.relu(getattr(self, param_name(name))(x))
            self.sow("intermediates", name, x)
            x = self._normalise(f"norm{i}", x)
            x = self._pool(x)
            self.sow("intermediates", f"pool{i}", x)
        for name in PLAIN_CONVS:
            x = nn.relu(getattr(self, param_name(name))(x))
            self.sow("intermediates", name, x)
        # Max-pooling also follows the fifth convolutional layer (Sec. 3.5).
        x = self._pool(x)
        self.sow("intermediates", "pool5", x)
        x = x.reshape((x.shape[0], -1))  # row-major (h, w, c); fc6's fan-in follows pool5's map
        if self.dropout_on == "outputs":
            # Sec. 4.2: "We use dropout in the first two fully-connected layers": their outputs are dropped.
            return dropout_fc_head(self, x, train)
        # torchvision's classifier: Dropout, Linear, ReLU (twice), then the last Linear (alexnet.py, AlexNet).
        for name in ("fc6", "fc7"):
            x = self.dropout(x, deterministic=not train)
            x = nn.relu(getattr(self, param_name(name))(x))
            self.sow("intermediates", name, x)
        logits = self.fc8_layer(x)
        self.sow("intermediates", "fc8", logits)
        return logits

    def _normalise(self, name: str, x: Array) -> Array:
        if not self.lrn:
            return x
        x = self.norm(x)
        self.sow("intermediates", name, x)
        return x

    @nn.nowrap  # a description of the architecture: callable on an unbound module
    def deconv_stages(self) -> list[Stage]:
        """The DeconvNet stages up to conv5 (pool5 and the FC layers are not projected), as ``__call__`` runs."""
        geometry = conv_geometry(self.input_size)
        window, stride = pool_geometry(self.overlapping_pool)
        stages: list[Stage] = []
        for i, name in enumerate(POOLED_CONVS, start=1):
            stages += [Conv(name, *geometry[name]), ReLU(name)]
            if self.lrn:
                stages.append(Norm(f"norm{i}"))
            stages.append(MaxPool(window, stride, sown=f"pool{i}"))
        for name in PLAIN_CONVS:
            stages += [Conv(name, *geometry[name]), ReLU(name)]
        return stages


# The tower-split ablation (Sec. 3.2): one stream, no grouped convolutions, LRN across all maps.
register("alexnet_one_tower", functools.partial(AlexNet, towers=1))
# torchvision's alexnet (see the module docstring): one tower, no LRN, 64-192-384-256-256, dropout before fc6/fc7.
register(
    "alexnet_torchvision",
    functools.partial(AlexNet, towers=1, lrn=False, widths=TORCHVISION_WIDTHS, dropout_on="inputs"),
)
