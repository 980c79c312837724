"""LeNet-5 (LeCun, Bottou, Bengio, Haffner, 1998, "Gradient-based learning applied to document
recognition", Sec. II.B, Fig. 2).

    INPUT 32x32 -> C1 6@28x28 -> S2 6@14x14 -> C3 16@10x10 -> S4 16@5x5 -> C5 120 -> F6 84 -> OUTPUT 10

Layer           paper parameters     here
C1  5x5 conv    156                  6 * (25 + 1)
S2  subsample   12                   6 coefficients + 6 biases
C3  5x5 conv    1,516                60 connected kernels * 25 + 16 biases (Table I)
S4  subsample   32                   16 + 16
C5  5x5 conv    48,120               120 * (16 * 25 + 1)
F6  dense       10,164               84 * (120 + 1)
total C1..F6    60,000
OUTPUT          0 (fixed RBF)        'rbf': 0;  'softmax' (default): 84 * 10 + 10 = 850

Faithful details: the squashing function f(a) = 1.7159 tanh(2a/3) (Appendix A) after every layer up to F6
("units in layers up to F6 compute a dot product ... passed through a sigmoid squashing function", Sec. II.B);
trainable subsampling (Sec. II.B); C3's partial connection table (Table I); weights uniform in
[-2.4/F_i, 2.4/F_i] with F_i the fan-in, exact per C3 map (Appendix C).

Deviations: the default output layer is a plain dense layer giving logits for softmax cross-entropy
(``output='softmax'``). ``output='rbf'`` gives the paper's Euclidean RBF units (Sec. II.B, eq. 7) with
logits = -distance^2; cross-entropy on those logits is the paper's MAP criterion (eq. 9) without its
constant "rubbish class" term. The paper's RBF centres are hand-designed 7x12 bitmaps of the characters,
which we do not have, so ours are fixed pseudo-random +-1 codes (``rbf_centres``).

The input must be at least 32x32 (the paper pads 28x28 MNIST digits to 32x32, Sec. III.A). Any number of
input channels works: C1 sees all of them. Larger inputs give C5 maps larger than 1x1 (as the paper notes
for C5), flattened before F6.

Intermediates sown (after the squashing function, collection ``'intermediates'``): ``C1`` (N,28,28,6),
``S2`` (N,14,14,6), ``C3`` (N,10,10,16), ``S4`` (N,5,5,16), ``C5`` (N,1,1,120), ``F6`` (N,84), ``output``
(the logits). Parameter submodules: ``C1_layer`` ... ``F6_layer``, ``output_layer`` (softmax only).

``deconv_stages()`` describes C1-C5 to the DeconvNet from the tables ``setup`` and ``__call__`` use
(``FEATURE_LAYERS``, ``SUBSAMPLE_WINDOW``, the C3 connection table).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from convnets.models.deconv_stages import Conv, Squash, Stage, Subsample, Table
from convnets.models.layers import (
    ConnectionTableConv,
    TrainableSubsampling,
    fan_in_uniform,
    param_name,
    scaled_tanh,
)
from convnets.models.registry import register

Array = jax.Array

OUTPUTS = ("softmax", "rbf")
F6_UNITS = 84  # Sec. II.B: 84 units, because the RBF centres are 7x12 bitmaps.
MIN_INPUT_SIZE = 32
# Sec. II.B: "convolutional layers are labeled Cx, subsampling layers are labeled Sx"; each is followed by the
# squashing function. The feature-map layers in order, before the fully connected F6.
FEATURE_LAYERS = ("C1", "S2", "C3", "S4", "C5")
CONV_PADDING = "VALID"  # Sec. II.B: no padding, e.g. C1's 5x5 fields on 32x32 give 28x28 maps
SUBSAMPLE_WINDOW = 2  # Sec. II.B: "2x2 neighborhood", non-overlapping


def _build_c3_table() -> np.ndarray:
    """Table I, built from its structure (Sec. II.B): rows are S2 maps, columns C3 maps."""
    table = np.zeros((6, 16), dtype=bool)
    for j in range(6):  # C3 maps 0-5: three contiguous S2 maps
        table[[(j + d) % 6 for d in range(3)], j] = True
    for k in range(6):  # C3 maps 6-11: four contiguous S2 maps
        table[[(k + d) % 6 for d in range(4)], 6 + k] = True
    for j, maps in zip((12, 13, 14), ((0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5)), strict=True):
        table[list(maps), j] = True  # C3 maps 12-14: four non-contiguous S2 maps
    table[:, 15] = True  # C3 map 15: all six S2 maps
    table.flags.writeable = False
    return table


# C3_TABLE[i, j] is True when C3 feature map j takes input from S2 feature map i (60 connections).
C3_TABLE: np.ndarray = _build_c3_table()


def _is_conv(layer: str) -> bool:
    return layer.startswith("C")


def rbf_centres(num_classes: int, dim: int = F6_UNITS, seed: int = 0) -> Array:
    """Fixed RBF centres in {-1, +1}: deterministic, not parameters (never trained).

    The paper's centres are hand-drawn 7x12 bitmaps (Sec. II.B), which we do not have; pseudo-random +-1
    codes keep their two properties that matter: values at the points where f = 1.7159 tanh(2a/3) reaches
    +-1 (not saturated), and well separated classes.
    """
    return jax.random.rademacher(jax.random.key(seed), (num_classes, dim), dtype=jnp.float32)


@register("lenet5")
class LeNet5(nn.Module):
    """LeNet-5. Returns logits ``[N, num_classes]``; ``train`` is unused (no dropout or BatchNorm)."""

    num_classes: int = 10
    output: str = "softmax"  # 'softmax' (dense layer, our default) or 'rbf' (the paper's fixed RBF units)
    c3_table: bool = True  # False: C3 is a full 6 -> 16 convolution (2,416 parameters instead of 1,516)
    rbf_seed: int = 0

    def setup(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"LeNet5.output must be one of {OUTPUTS}, got {self.output!r}")
        init = fan_in_uniform()  # Appendix C: uniform in [-2.4/F_i, 2.4/F_i]; biases zero (flax default).
        # Attribute names follow layers.param_name: '<layer>_layer'.
        # C1: 6 feature maps, 5x5 receptive fields, no padding -> 28x28 (Sec. II.B).
        self.C1_layer = nn.Conv(6, (5, 5), padding=CONV_PADDING, kernel_init=init)
        # S2: 6 maps, 2x2 non-overlapping sums, trainable coefficient and bias -> 14x14 (Sec. II.B).
        self.S2_layer = TrainableSubsampling(window=SUBSAMPLE_WINDOW)
        # C3: 16 maps, 5x5, each connected to the subset of S2 maps in Table I -> 10x10 (Sec. II.B).
        table = self._c3_connections()
        if table is not None:  # ConnectionTableConv is always VALID, stride 1
            self.C3_layer = ConnectionTableConv(table=table, kernel_size=(5, 5))
        else:
            self.C3_layer = nn.Conv(16, (5, 5), padding=CONV_PADDING, kernel_init=init)
        # S4: 16 maps, like S2 -> 5x5 (Sec. II.B).
        self.S4_layer = TrainableSubsampling(window=SUBSAMPLE_WINDOW)
        # C5: 120 maps, 5x5 over all 16 S4 maps -> 1x1: a conv layer acting as fully connected (Sec. II.B).
        self.C5_layer = nn.Conv(120, (5, 5), padding=CONV_PADDING, kernel_init=init)
        # F6: 84 units fully connected to C5 (Sec. II.B).
        self.F6_layer = nn.Dense(F6_UNITS, kernel_init=init)
        if self.output == "softmax":
            # Our deviation: a trainable dense output layer (fan-in init) instead of the RBF units.
            self.output_layer = nn.Dense(self.num_classes, kernel_init=init)

    def __call__(self, x: Array, train: bool = False) -> Array:
        del train  # no train-time behaviour in LeNet-5
        if x.ndim != 4 or x.shape[1] < MIN_INPUT_SIZE or x.shape[2] < MIN_INPUT_SIZE:
            raise ValueError(
                f"LeNet-5 expects NHWC input of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} (the paper pads "
                f"28x28 MNIST to 32x32), got shape {x.shape}"
            )
        for name in FEATURE_LAYERS:  # C1, S2, C3, S4, C5, each followed by the squashing function
            x = scaled_tanh(getattr(self, param_name(name))(x))
            self.sow("intermediates", name, x)
        x = scaled_tanh(self.F6_layer(x.reshape((x.shape[0], -1))))
        self.sow("intermediates", "F6", x)
        if self.output == "softmax":
            logits = self.output_layer(x)
        else:
            # Euclidean RBF units (Sec. II.B, eq. 7): y_i = sum_j (x_j - w_ij)^2; the logit is -y_i.
            centres = rbf_centres(self.num_classes, F6_UNITS, self.rbf_seed).astype(x.dtype)
            logits = -jnp.sum(jnp.square(x[:, None, :] - centres[None, :, :]), axis=-1)
        self.sow("intermediates", "output", logits)
        return logits

    @nn.nowrap
    def _c3_connections(self) -> Table | None:
        """C3's connection table (Table I) as nested bools, or None for a full convolution."""
        return tuple(tuple(bool(v) for v in row) for row in C3_TABLE) if self.c3_table else None

    @nn.nowrap  # a description of the architecture: callable on an unbound module
    def deconv_stages(self) -> list[Stage]:
        """The DeconvNet stages C1 ... C5, each followed by its squashing function (F6 is not projected).

        The activations are sown after the squashing function, so every stage's output is read from ``Squash``.
        """
        stages: list[Stage] = []
        for name in FEATURE_LAYERS:
            if _is_conv(name):
                table = self._c3_connections() if name == "C3" else None
                stages.append(Conv(name, padding=CONV_PADDING, table=table))
            else:
                stages.append(Subsample(name, window=SUBSAMPLE_WINDOW))
            stages.append(Squash(name))
        return stages


# The paper's output layer: fixed Euclidean RBF units (60,000 trainable parameters in all).
register("lenet5_rbf", functools.partial(LeNet5, output="rbf"))
