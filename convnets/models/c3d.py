"""C3D (Tran, Bourdev, Fergus, Torresani, Paluri, 2015, "Learning Spatiotemporal Features with 3D Convolutional
Networks", Sec. 3.3, Fig. 3), with the temporal-depth ablation of Sec. 3.2 (Fig. 2).

Input clips are ``[B, T, H, W, C]`` (16x112x112x3 in the paper). Every convolution is 3x3x3 with stride 1 and
padding 1 in space and time; every pool is max pooling. Layers, checked against the authors' Sports-1M feature
extractor (facebook/C3D, C3D-v1.0/examples/c3d_feature_extraction/prototxt/c3d_sport1m_feature_extractor_frm.prototxt):

layer    operation (16x112x112x3 input)                   output (T x H x W x C)   parameters
conv1a   64 x 3x3x3, pad 1 -> ReLU                        16 x 112 x 112 x 64      27*3*64 + 64        =      5,248
pool1    max 1x2x2 / 1x2x2 (time kept: kernel_depth 1)    16 x 56 x 56 x 64
conv2a   128 x 3x3x3 -> ReLU; pool2 max 2x2x2 / 2          8 x 28 x 28 x 128       27*64*128 + 128     =    221,312
conv3a   256; conv3b 256 -> ReLU; pool3 2x2x2 / 2          4 x 14 x 14 x 256       884,992 + 1,769,728
conv4a   512; conv4b 512 -> ReLU; pool4 2x2x2 / 2          2 x 7 x 7 x 512         3,539,456 + 7,078,400
conv5a   512; conv5b 512 -> ReLU; pool5 2x2x2 / 2          1 x 4 x 4 x 512         7,078,400 + 7,078,400
fc6      4096 -> ReLU -> dropout 0.5 (fan-in 8192)        4096                     8192*4096 + 4096    = 33,558,528
fc7      4096 -> ReLU -> dropout 0.5                      4096                     4096*4096 + 4096    = 16,781,312
fc8      num_classes logits (487 Sports-1M classes)       487                      4096*487 + 487      =  1,995,239
                                         convs 27,655,936 + fc6/fc7 50,339,840 + fc8 = total 79,991,015

With 101 classes (UCF101) fc8 has 4096*101 + 101 = 413,797 parameters: 78,409,573 in all.

pool5 and the 8192 inputs of fc6. The prototxt's pool5 is a plain 2x2x2 stride-2 max pool with no ``pad``, yet
fc6 sees 512x1x4x4 = 8192 values: Caffe rounds pooled sizes up (ceil mode), so the
7x7 conv5b map gives ceil((7 - 2) / 2) + 1 = 4 rows and columns, the last window hanging one pixel over the
bottom/right edge. This module does the same (the missing inputs count as -inf, as in Caffe), in time too. Ports
that zero-pad one pixel on every side before a floor-mode pool5 also give 4x4 but shift the windows; after a ReLU
the two agree only on the windows that do not touch the top/left edge.

Initialisation (the prototxt's fillers): conv weights N(0, 0.01), conv biases 0 for conv1a and 1 elsewhere;
fc6/fc7 weights N(0, 0.005), biases 1; fc8 weights N(0, 0.01), bias 0. Dropout 0.5 after fc6 and fc7 (drop6,
drop7), active only with ``train=True`` ('dropout' rng).

Temporal-depth ablation (Sec. 3.2, Fig. 2), field ``temporal_depths``: the temporal kernel depth of the convs of
each of the five conv groups (conv1a; conv2a; conv3a/b; conv4a/b; conv5a/b), temporal padding ``depth // 2`` so
that time is kept by every conv. The paper's settings: depth-1 ``(1,)*5`` (per-frame 2D convolutions, still with
the temporal pools), depth-3 (C3D, the default), depth-5, depth-7, increasing ``(3, 3, 5, 5, 7)`` and decreasing
``(7, 5, 5, 3, 3)``; they are exported as ``TEMPORAL_DEPTH_SETTINGS``. Depths change the conv parameter counts
(kernel ``d x 3 x 3``) but not the map sizes. ``widths`` (conv groups' output maps, conv3-5 use theirs for both
their convs) and ``fc_features`` shrink the net for tests and CPU runs; the defaults are the paper's.

The depth search does not use C3D itself but the smaller common net of Sec. 3.1: 5 convs (one per group; field
``convs_per_group=(1, 1, 1, 1, 1)``, named conv1a ... conv5a) of 64, 128, 256, 256, 256 maps, the same five pools,
and two fc layers of 2048, trained from scratch on UCF101 (``SEARCH_NET``; registered ``c3d_search`` and, with
each Fig. 2 setting, ``c3d_search_depth1`` ... ``c3d_search_decreasing``). Its size: convs 4,651,008 + fc6
4096*2048 + 2048 + fc7 2048*2048 + 2048 + fc8 (101 classes) 206,949 = 17,444,965 at depth 3 -- the paper's
"17.5 millions". The paper also says its settings differ by at most 51K parameters; with full d x 3 x 3 kernels on
these widths depth-7 has 9,300,096 more weights than depth-1 (6 x 9 x 172,224), so that figure cannot be
reproduced (WORKSPACE.md, Video).

Intermediates sown (collection ``'intermediates'``; conv outputs after their ReLU): ``conv1a`` ... ``conv5b``,
``pool1`` ... ``pool5``, ``fc6``, ``fc7`` (after ReLU, before dropout; ``fc6`` is the feature of Sec. 4) and ``fc8``
(the logits). Parameter submodules: ``conv1a_layer`` ... ``fc8_layer`` (layers.param_name).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax

from convnets.models.layers import dropout_fc_head, param_name
from convnets.models.registry import register

Array = jax.Array

# Fig. 3 / prototxt: conv names per group; groups 3-5 have two convs ("a" and "b").
CONV_GROUPS: tuple[tuple[str, ...], ...] = (
    ("conv1a",), ("conv2a",), ("conv3a", "conv3b"), ("conv4a", "conv4b"), ("conv5a", "conv5b"),
)
PAPER_WIDTHS = (64, 128, 256, 512, 512)
# Sec. 3.2, Fig. 2: the temporal-depth settings compared on UCF101 (3 for every layer is C3D).
TEMPORAL_DEPTH_SETTINGS: dict[str, tuple[int, int, int, int, int]] = {
    "depth-1": (1, 1, 1, 1, 1),
    "depth-3": (3, 3, 3, 3, 3),
    "depth-5": (5, 5, 5, 5, 5),
    "depth-7": (7, 7, 7, 7, 7),
    "increasing": (3, 3, 5, 5, 7),
    "decreasing": (7, 5, 5, 3, 3),
}
# prototxt: pool1 kernel_depth 1 / temporal_stride 1 (Sec. 3.3: so as not to merge time too early);
# pool2-pool5 kernel_depth 2 / temporal_stride 2. Spatially all are 2x2 stride 2.
POOL_TIME = (1, 2, 2, 2, 2)
# prototxt fillers.
CONV_STD = 0.01
FC_STD = 0.005
FC8_STD = 0.01


def max_pool3d_ceil(x: Array, window: tuple[int, int, int], stride: tuple[int, int, int]) -> Array:
    """Max pooling over (T, H, W) of a ``[B, T, H, W, C]`` array with Caffe's ceil-mode output sizes.

    ``ceil((n - window) / stride) + 1`` outputs per axis; a last window hanging over the end reads -inf there.
    """
    pads = []
    for n, w, s in zip(x.shape[1:4], window, stride, strict=True):
        if n < w:
            raise ValueError(f"C3D: a pool window of {w} does not fit an axis of size {n} (input shape {x.shape})")
        out = math.ceil((n - w) / s) + 1
        pads.append((0, (out - 1) * s + w - n))
    return nn.max_pool(x, window, strides=stride, padding=pads)


@register("c3d")
class C3D(nn.Module):
    """C3D on ``[B, T, H, W, C]`` clips. Returns logits ``[B, num_classes]``."""

    num_classes: int = 487  # Sports-1M
    temporal_depths: tuple[int, int, int, int, int] = (3, 3, 3, 3, 3)  # per conv group; see TEMPORAL_DEPTH_SETTINGS
    widths: tuple[int, int, int, int, int] = PAPER_WIDTHS  # output maps of conv groups 1-5
    # convs per group (names a, b): C3D's 1, 1, 2, 2, 2 (Sec. 3.3); the Sec. 3.1 search net has one per group.
    convs_per_group: tuple[int, int, int, int, int] = (1, 1, 2, 2, 2)
    fc_features: int = 4096  # fc6 and fc7
    dropout_rate: float = 0.5
    # 'paper': the prototxt's fillers (below); 'he': He et al. N(0, 2 / fan_in) weights and zero biases, for narrow
    # nets trained from scratch (with std 0.01 and biases 1 a few-map net passes no signal: tests/test_video_models.py).
    weight_init: str = "paper"

    def setup(self) -> None:
        if self.weight_init not in ("paper", "he"):
            raise ValueError(f"C3D.weight_init must be 'paper' or 'he', got {self.weight_init!r}")
        if len(self.temporal_depths) != 5 or any(d < 1 or d % 2 != 1 for d in self.temporal_depths):
            raise ValueError(
                f"C3D.temporal_depths needs 5 odd depths >= 1 (one per conv group), got {self.temporal_depths}; "
                f"the paper's settings: {TEMPORAL_DEPTH_SETTINGS}"
            )
        if len(self.widths) != 5 or any(w < 1 for w in self.widths):
            raise ValueError(f"C3D.widths needs 5 positive widths (conv groups 1-5), got {self.widths}")
        if len(self.convs_per_group) != 5 or any(n not in (1, 2) for n in self.convs_per_group):
            raise ValueError(f"C3D.convs_per_group needs 5 counts of 1 or 2 (convs named a, b), got "
                             f"{self.convs_per_group}; C3D: (1, 1, 2, 2, 2), the Sec. 3.1 search net: (1,) * 5")
        he = self.weight_init == "he"

        def normal(std: float) -> nn.initializers.Initializer:
            return nn.initializers.variance_scaling(2.0, "fan_in", "normal") if he else nn.initializers.normal(std)

        for group, (names, depth, width) in enumerate(zip(self._groups(), self.temporal_depths, self.widths,
                                                          strict=True)):
            for name in names:
                # prototxt: conv1a's bias starts at 0, every other conv's at 1.
                bias = nn.initializers.zeros_init() if group == 0 or he else nn.initializers.ones_init()
                conv = nn.Conv(
                    width, (depth, 3, 3), strides=(1, 1, 1), padding=((depth // 2,) * 2, (1, 1), (1, 1)),
                    kernel_init=normal(CONV_STD), bias_init=bias,
                )
                setattr(self, param_name(name), conv)
        ones = nn.initializers.zeros_init() if he else nn.initializers.ones_init()
        self.fc6_layer = nn.Dense(self.fc_features, kernel_init=normal(FC_STD), bias_init=ones)
        self.fc7_layer = nn.Dense(self.fc_features, kernel_init=normal(FC_STD), bias_init=ones)
        self.fc8_layer = nn.Dense(self.num_classes, kernel_init=normal(FC8_STD))
        self.dropout = nn.Dropout(self.dropout_rate)

    def _groups(self) -> tuple[tuple[str, ...], ...]:
        return tuple(names[:n] for names, n in zip(CONV_GROUPS, self.convs_per_group, strict=True))

    def __call__(self, x: Array, train: bool = False) -> Array:
        if x.ndim != 5:
            raise ValueError(f"C3D expects clips [B, T, H, W, C] (16x112x112x3 in the paper), got shape {x.shape}")
        for i, names in enumerate(self._groups(), start=1):
            for name in names:
                x = nn.relu(getattr(self, param_name(name))(x))
                self.sow("intermediates", name, x)
            t = POOL_TIME[i - 1]
            x = max_pool3d_ceil(x, (t, 2, 2), (t, 2, 2))
            self.sow("intermediates", f"pool{i}", x)
        x = x.reshape((x.shape[0], -1))  # row-major (t, h, w, c); 1*4*4*512 = 8192 at 16x112x112
        return dropout_fc_head(self, x, train)


# Sec. 3.1: the common net of the temporal-depth search (Fig. 2).
SEARCH_NET = dict(widths=(64, 128, 256, 256, 256), convs_per_group=(1, 1, 1, 1, 1), fc_features=2048)
register("c3d_search", functools.partial(C3D, **SEARCH_NET))

# The Sec. 3.2 settings by name: on C3D itself (c3d_depth1, ...) and on the search net (c3d_search_depth1, ...).
for _setting, _depths in TEMPORAL_DEPTH_SETTINGS.items():
    if _setting != "depth-3":
        _name = _setting.replace('-', '')
        register(f"c3d_{_name}", functools.partial(C3D, temporal_depths=_depths))
        register(f"c3d_search_{_name}", functools.partial(C3D, temporal_depths=_depths, **SEARCH_NET))
