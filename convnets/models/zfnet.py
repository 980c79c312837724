"""ZF Net (Zeiler and Fergus, 2013, "Visualizing and understanding convolutional networks", Sec. 3, Fig. 3).

Layer   operation (224x224x3 input)                                     output        parameters
conv1   96 x 7x7x3, stride 2, pad 1 -> ReLU -> max 3x3/2 -> norm        110 -> 55     7*7*3*96 + 96        =     14,208
conv2   256 x 5x5x96, stride 2, no pad -> ReLU -> max 3x3/2 -> norm     26 -> 13      5*5*96*256 + 256     =    614,656
conv3   384 x 3x3x256, pad 1 -> ReLU                                    13            3*3*256*384 + 384    =    885,120
conv4   384 x 3x3x384, pad 1 -> ReLU                                    13            3*3*384*384 + 384    =  1,327,488
conv5   256 x 3x3x384, pad 1 -> ReLU -> max 3x3/2                       13 -> 6       3*3*384*256 + 256    =    884,992
fc6     4096 -> ReLU -> dropout 0.5                                     4096          6*6*256*4096 + 4096  = 37,752,832
fc7     4096 -> ReLU -> dropout 0.5                                     4096          4096*4096 + 4096     = 16,781,312
fc8     num_classes (1000) logits                                       1000          4096*1000 + 1000     =  4,097,000
                                                                                      total                = 62,357,608

The architecture is AlexNet's with the paper's changes (Sec. 4.1): conv1 7x7 stride 2 instead of 11x11 stride 4,
conv2 stride 2, and dense connections in conv3-conv5 ("sparse connections used in Krizhevsky's layers 3,4,5
... are replaced with dense connections", Sec. 3): no tower split anywhere. Here, as in Fig. 3, pooling comes
before the contrast normalisation in layers 1 and 2.

Paddings reproduce Fig. 3's map sizes at 224: conv1 pads 1 pixel on every side, (224 + 2 - 7) // 2 + 1 = 110;
pools round up as Caffe does (``max_pool(..., ceil_mode=True)``): 110 -> 55 and 26 -> 13 (floor rounding would
give 54 and 12); conv2 is VALID, (55 - 5) // 2 + 1 = 26; conv3-conv5 pad 1 (13 -> 13); pool5 13 -> 6. Other
image sizes >= 23 also run (e.g. tiny CPU smoke runs); fc6's fan-in then follows pool5's map.

Contrast normalisation: the paper says only "contrast normalized across feature maps" (Fig. 3) and gives no
constants. We use AlexNet's local response normalisation across maps with AlexNet's constants (k=2, n=5,
alpha=1e-4, beta=0.75, alpha not divided by n): the paper builds on Krizhevsky et al.'s architecture and
recipe and changes only what Sec. 4.1 lists, and its AlexNet replication is what Table 2 compares against.
(Caffe replications of ZF Net differ: e.g. n=3, alpha=5e-5 divided by n, k=1.) The constants are fields
(``norm_k``, ``norm_n``, ``norm_alpha``, ``norm_beta``); ``contrast_norm=False`` removes both layers.

Other faithful details (Sec. 3): dropout 0.5 in fully-connected layers 6 and 7 (on their outputs), active only
with ``train=True`` ('dropout' rng); "all weights are initialized to 10^-2 and biases are set to 0" (read as
N(0, 0.01) weights, as in AlexNet). The renormalisation of conv filters whose RMS exceeds 0.1 is an optimiser
transform, not part of the model.

Intermediates sown (collection ``'intermediates'``; conv outputs after their ReLU): ``conv1`` (N,110,110,96),
``pool1`` (N,55,55,96), ``norm1``, ``conv2`` (N,26,26,256), ``pool2`` (N,13,13,256), ``norm2``, ``conv3``,
``conv4``, ``conv5`` (N,13,13,*), ``pool5`` (N,6,6,256), ``fc6``, ``fc7`` (after ReLU, before dropout), ``fc8``
(the logits). Parameter submodules: ``conv1_layer`` ... ``fc8_layer``.

``deconv_stages()`` describes conv1-conv5 to the DeconvNet from the tables ``setup`` and ``__call__`` use
(``CONV_GEOMETRY``, ``POOL_*``, ``POOLED_CONVS``, ``PLAIN_CONVS``).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from convnets.models.deconv_stages import Conv, MaxPool, Norm, Padding, ReLU, Stage
from convnets.models.layers import LocalResponseNorm, dropout_fc_head, max_pool, param_name
from convnets.models.registry import register

Array = jax.Array

MIN_INPUT_SIZE = 23  # smallest image giving a non-empty map at every layer
WEIGHT_STD = 0.01  # Sec. 3: "All weights are initialized to 10^-2 and biases are set to 0."

# Fig. 3: layers 1 and 2 are conv -> ReLU -> max pool -> contrast normalisation; layers 3-5 conv -> ReLU.
POOLED_CONVS = ("conv1", "conv2")
PLAIN_CONVS = ("conv3", "conv4", "conv5")
PAD1 = ((1, 1), (1, 1))
# (strides, padding) of each conv layer. Sec. 4.1: conv1 stride 2 "rather than 4"; Fig. 3: conv2 stride 2. The
# paddings reproduce Fig. 3's map sizes (see the module docstring).
CONV_GEOMETRY: dict[str, tuple[tuple[int, int], Padding]] = {
    "conv1": ((2, 2), PAD1),
    "conv2": ((2, 2), "VALID"),
    "conv3": ((1, 1), PAD1),
    "conv4": ((1, 1), PAD1),
    "conv5": ((1, 1), PAD1),
}
# Fig. 3: 3x3 max pooling, stride 2, rounded up as Caffe does (ceil_mode).
POOL_WINDOW = 3
POOL_STRIDE = 2
POOL_CEIL_MODE = True


@register("zfnet")
class ZFNet(nn.Module):
    """ZF Net. Returns logits ``[N, num_classes]``."""

    num_classes: int = 1000
    dropout_rate: float = 0.5
    contrast_norm: bool = True
    # Contrast normalisation across maps: AlexNet's LRN constants (see the module docstring).
    norm_k: float = 2.0
    norm_n: int = 5
    norm_alpha: float = 1e-4
    norm_beta: float = 0.75

    def setup(self) -> None:
        inits = {"kernel_init": nn.initializers.normal(stddev=WEIGHT_STD), "bias_init": nn.initializers.zeros_init()}

        def conv(name: str, features: int, kernel: int) -> nn.Conv:
            strides, padding = CONV_GEOMETRY[name]
            return nn.Conv(features, (kernel, kernel), strides=strides, padding=padding, **inits)

        # Attribute names follow layers.param_name: '<layer>_layer'. Sizes are Fig. 3's.
        # Layer 1: 96 filters 7x7, stride 2 (Sec. 4.1: "reduced the 1st layer filter size from 11x11 to 7x7 and
        # made the stride of the convolution 2, rather than 4").
        self.conv1_layer = conv("conv1", 96, 7)
        # Layer 2: 256 filters 5x5, stride 2 (Fig. 3), dense over all 96 maps.
        self.conv2_layer = conv("conv2", 256, 5)
        # Layers 3-5: 384, 384, 256 filters 3x3, dense connections (Sec. 3).
        self.conv3_layer = conv("conv3", 384, 3)
        self.conv4_layer = conv("conv4", 384, 3)
        self.conv5_layer = conv("conv5", 256, 3)
        # Layers 6, 7: 4096 units; output: a C-way softmax (Fig. 3).
        self.fc6_layer = nn.Dense(4096, **inits)
        self.fc7_layer = nn.Dense(4096, **inits)
        self.fc8_layer = nn.Dense(self.num_classes, **inits)
        self.norm = LocalResponseNorm(k=self.norm_k, n=self.norm_n, alpha=self.norm_alpha, beta=self.norm_beta)
        self.dropout = nn.Dropout(self.dropout_rate)

    def __call__(self, x: Array, train: bool = False) -> Array:
        if x.ndim != 4 or x.shape[1] < MIN_INPUT_SIZE or x.shape[2] < MIN_INPUT_SIZE:
            raise ValueError(
                f"ZF Net expects NHWC images of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} (224 in the paper), "
                f"got shape {x.shape}"
            )
        # Fig. 3, layers 1 and 2: conv -> ReLU -> 3x3 max pool stride 2 -> contrast normalisation across maps.
        for i, name in enumerate(POOLED_CONVS, start=1):
            x = nn.relu(getattr(self, param_name(name))(x))
            self.sow("intermediates", name, x)
            x = max_pool(x, POOL_WINDOW, POOL_STRIDE, ceil_mode=POOL_CEIL_MODE)
            self.sow("intermediates", f"pool{i}", x)
            if self.contrast_norm:
                x = self.norm(x)
                self.sow("intermediates", f"norm{i}", x)
        for name in PLAIN_CONVS:
            x = nn.relu(getattr(self, param_name(name))(x))
            self.sow("intermediates", name, x)
        # Fig. 3, layer 5: 3x3 max pool stride 2 -> 6x6x256.
        x = max_pool(x, POOL_WINDOW, POOL_STRIDE, ceil_mode=POOL_CEIL_MODE)
        self.sow("intermediates", "pool5", x)
        x = x.reshape((x.shape[0], -1))
        # Sec. 3: "Dropout is used in the fully connected layers (6 and 7) with a rate of 0.5."
        return dropout_fc_head(self, x, train)

    @nn.nowrap  # a description of the architecture: callable on an unbound module
    def deconv_stages(self) -> list[Stage]:
        """The DeconvNet stages up to conv5 (pool5 and the FC layers are not projected), as ``__call__`` runs."""
        stages: list[Stage] = []
        for i, name in enumerate(POOLED_CONVS, start=1):
            stages += [
                Conv(name, *CONV_GEOMETRY[name]),
                ReLU(name),
                MaxPool(POOL_WINDOW, POOL_STRIDE, ceil_mode=POOL_CEIL_MODE, sown=f"pool{i}"),
            ]
            if self.contrast_norm:
                stages.append(Norm(f"norm{i}"))
        for name in PLAIN_CONVS:
            stages += [Conv(name, *CONV_GEOMETRY[name]), ReLU(name)]
        return stages
