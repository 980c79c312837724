"""GoogLeNet (Szegedy et al., 2014, "Going deeper with convolutions", Sec. 5, Table 1, Fig. 3), Inception v1.

Table 1 (224x224x3 input; "reduce" = the 1x1 convolutions before the 3x3 and 5x5 ones; every conv, inside the
Inception modules too, followed by a ReLU). Parameters counted from the widths, biases included:

layer           operation                                  output       #1x1 #3x3r #3x3 #5x5r #5x5 proj   params
conv1           7x7/2, 64, pad 3                           112x112x64                                        9,472
pool1, norm1    max 3x3/2 (ceil) -> LRN                    56x56x64
conv2_reduce    1x1, 64                                    56x56x64                                          4,160
conv2, norm2    3x3, 192, pad 1 -> LRN                     56x56x192                                       110,784
pool2           max 3x3/2 (ceil)                           28x28x192
inception3a                                                28x28x256    64   96    128  16    32   32     163,696
inception3b                                                28x28x480    128  128   192  32    96   64     388,736
pool3           max 3x3/2 (ceil)                           14x14x480
inception4a     (-> aux1)                                  14x14x512    192  96    208  16    48   64     376,176
inception4b                                                14x14x512    160  112   224  24    64   64     449,160
inception4c                                                14x14x512    128  128   256  24    64   64     510,104
inception4d     (-> aux2)                                  14x14x528    112  144   288  32    64   64     605,376
inception4e                                                14x14x832    256  160   320  32    128  128    868,352
pool4           max 3x3/2 (ceil)                           7x7x832
inception5a                                                7x7x832      256  160   320  32    128  128  1,043,456
inception5b                                                7x7x1024     384  192   384  48    128  128  1,444,080
pool5           avg 7x7 (global) -> dropout 0.4            1024
fc              linear, num_classes (1000) logits          1000                                      1,025,000
                                                                               total (no aux heads)  6,998,552
aux1 (on 4a)    avg 5x5/3 -> 1x1 conv 128 -> fc 1024 -> dropout 0.7 -> fc 1000   (4x4x128 = 2048)  3,188,840
aux2 (on 4d)    the same on 528 maps                                                                3,190,888
                                                                               total with aux heads 13,378,280

Inception module (Sec. 4, Fig. 2b): four branches concatenated on the channel axis in this order: 1x1; 1x1 reduce
-> 3x3 (pad 1); 1x1 reduce -> 5x5 (pad 2); 3x3/1 max pool (pad 1) -> 1x1 "pool proj". Spatial size is preserved.
Table 1's "params" column is in units of 1024 weights without biases and matches these widths only for some rows
(conv2, 3a, 3b, 4b, linear); the widths define the network, so counts here follow them (see the tests).

Faithful details. Pooling rounds up as in Caffe (``max_pool(..., ceil_mode=True)``, no padding) so the maps follow
Table 1: 112 -> 56 -> 28 -> 14 -> 7. LRN follows pool1 and conv2 (Fig. 3). The paper gives no LRN constants: as for
ZF Net we use AlexNet's (k=2, n=5, alpha=1e-4 undivided, beta=0.75), fields ``norm_*``; the BVLC Caffe replication
uses local_size 5, alpha 1e-4, beta 0.75 in Caffe's convention, i.e. ``norm_k=1, norm_alpha=2e-5`` here. The 7x7
average pool is taken over the whole final map (the same at 224; any size elsewhere). Dropout 0.4 before the
classifier and 0.7 in the auxiliary heads (Sec. 5), active only with ``train=True`` ('dropout' rng).
Initialisation: the paper states none; we follow the BVLC Caffe replication (``bvlc_googlenet``): "xavier" weights
(Caffe's filler: uniform in +-sqrt(3 / fan_in), i.e. Glorot and Bengio's uniform form normalised by the fan-in,
flax's ``lecun_uniform``), biases 0.2 in every conv and in the auxiliary fc-1024 layers, 0 in the classifiers.

Auxiliary classifiers (Sec. 5), field ``aux_heads`` (default True), on the outputs of 4a and 4d: 5x5/3 average pool
(14 -> 4 at 224), 1x1 conv 128 + ReLU, fc 1024 + ReLU, dropout 0.7, linear fc num_classes. Contract with the
trainer: with ``train=True`` the model sows each head's logits, ``sow('aux_logits', 'aux1' | 'aux2', logits)`` (flax
stores them as 1-tuples: read ``state['aux_logits']['aux1'][0]``, shape ``(N, num_classes)``; the collection must
be mutable) and returns only the main logits; the trainer adds ``aux_loss_weight * sum(CE(aux))`` (0.3 in the
paper). With ``train=False`` the heads do not run ("discarded at inference"). Parameters: during ``model.init`` the
heads always run (outputs discarded, nothing sown when ``train=False``), so ``init(..., train=False)`` creates their
parameters (and BN statistics) and the variables are the same for training and evaluation. The paper's 5x5 pool
needs a 4a map of at least 5x5, i.e. images of at least ``MIN_AUX_INPUT_SIZE`` = 79 (a ``ValueError`` otherwise);
at other sizes the aux fc-1024 fan-in follows the pooled map (as fc6 in AlexNet), e.g. 1x1x128 at 96.

``variant='torchvision'`` (registered as ``googlenet_torchvision``): torchvision's ``googlenet``. BatchNorm (eps 1e-3,
torchvision's value, instead of the 1e-5 used elsewhere here; momentum 0.9 in flax's convention) after every conv,
which then has no bias; no LRN; the "5x5" branch is a 3x3 (torchvision keeps it for weight compatibility; the
submodule is still named ``b5x5``); pool4 is 2x2/2 (ceil), also 14 -> 7; dropout 0.2; aux heads: adaptive average
pool to 4x4, 1x1 conv 128 (+BN), fc 2048 -> 1024, dropout 0.7, fc. 6,624,904 parameters without aux heads,
13,004,888 with them (torchvision's ``aux_logits=True`` count). Initialisation as torchvision: N(0, 0.01) weights
(its truncation at +-2 is immaterial), BN scale 1 and shift 0; fc biases 0 (torchvision leaves PyTorch's default).
Its aux fc flattens (h, w, c) where torch flattens (c, h, w): a permutation of the same weights.

Intermediates sown (collection ``'intermediates'``; conv outputs after ReLU): ``conv1``, ``pool1``, ``norm1``,
``conv2_reduce``, ``conv2``, ``norm2``, ``pool2``, ``inception3a``, ``inception3b``, ``pool3``, ``inception4a`` ...
``inception4e``, ``pool4``, ``inception5a``, ``inception5b``, ``pool5`` (N, 1024), ``fc`` (the logits); ``norm*``
only in the paper variant. Parameter submodules: ``conv1_layer``, ``conv2_reduce_layer``, ``conv2_layer``,
``inception3a_layer`` ... ``inception5b_layer`` (branches ``b1x1``, ``b3x3_reduce``, ``b3x3``, ``b5x5_reduce``,
``b5x5``, ``pool_proj``, each a :class:`ConvUnit` holding ``conv`` and, in the torchvision variant, ``bn``),
``aux1_layer``, ``aux2_layer`` (``conv``, ``fc``, ``classifier``) and ``fc_layer``.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models.layers import LocalResponseNorm, max_pool, param_name
from convnets.models.registry import register

Array = jax.Array

VARIANTS = ("paper", "torchvision")
# Table 1: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), stage by stage; max pools between stages.
INCEPTION_WIDTHS: dict[str, tuple[int, int, int, int, int, int]] = {
    "3a": (64, 96, 128, 16, 32, 32),
    "3b": (128, 128, 192, 32, 96, 64),
    "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64),
    "4c": (128, 128, 256, 24, 64, 64),
    "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128),
    "5a": (256, 160, 320, 32, 128, 128),
    "5b": (384, 192, 384, 48, 128, 128),
}
STAGES = (("3a", "3b"), ("4a", "4b", "4c", "4d", "4e"), ("5a", "5b"))
AUX_AFTER = {"4a": "aux1", "4d": "aux2"}  # Sec. 5: "put on top of the output of the Inception (4a) and (4d)"
DROPOUT = {"paper": 0.4, "torchvision": 0.2}  # Table 1 "dropout (40%)"; torchvision's default 0.2
AUX_DROPOUT = 0.7  # Sec. 5: "A dropout layer with 70% ratio of dropped outputs"
MIN_AUX_INPUT_SIZE = 79  # smallest image whose 4a map (5x5) fits the paper's 5x5 aux pool
TORCHVISION_BN_EPS = 1e-3  # torchvision's BasicConv2d: BatchNorm2d(eps=0.001)
CAFFE_BIAS = 0.2  # bvlc_googlenet: bias_filler constant 0.2 in convs and the aux fc-1024 layers
# Caffe's "xavier" filler (default variance_norm FAN_IN): uniform in [-sqrt(3/fan_in), sqrt(3/fan_in)].
CAFFE_XAVIER = nn.initializers.variance_scaling(1.0, "fan_in", "uniform")
TORCHVISION_STD = 0.01  # torchvision: trunc_normal_(std=0.01, a=-2, b=2) for conv and linear weights


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"GoogLeNet.variant must be one of {VARIANTS}, got {variant!r}")


def _inits(variant: str, hidden: bool) -> dict:
    """Initialisers of a conv (``hidden``), aux fc-1024 (``hidden``) or classifier layer (see the module docstring)."""
    if variant == "torchvision":
        return {"kernel_init": nn.initializers.normal(TORCHVISION_STD), "bias_init": nn.initializers.zeros_init()}
    bias = nn.initializers.constant(CAFFE_BIAS) if hidden else nn.initializers.zeros_init()
    return {"kernel_init": CAFFE_XAVIER, "bias_init": bias}


def adaptive_avg_pool(x: Array, size: tuple[int, int]) -> Array:
    """PyTorch's ``adaptive_avg_pool2d`` on NHWC: output cell i averages rows floor(i*H/h) .. ceil((i+1)*H/h) - 1."""
    bounds = lambda n, out: [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]
    rows = [
        jnp.stack([x[:, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in bounds(x.shape[2], size[1])], axis=1)
        for r0, r1 in bounds(x.shape[1], size[0])
    ]
    return jnp.stack(rows, axis=1)


class ConvUnit(nn.Module):
    """Conv (stride ``stride``, padding ``(kernel - 1) // 2``) -> [BatchNorm] -> ReLU.

    Paper: conv with bias, then ReLU ("All the convolutions, including those inside the Inception modules, use
    rectified linear activation", Sec. 5). Torchvision: conv without bias, BN (eps 1e-3), ReLU (its BasicConv2d).
    """

    features: int
    kernel: int = 1
    stride: int = 1
    variant: str = "paper"
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        k, s, p = self.kernel, self.stride, (self.kernel - 1) // 2
        batch_norm = self.variant == "torchvision"
        x = nn.Conv(
            self.features, (k, k), strides=(s, s), padding=((p, p), (p, p)), use_bias=not batch_norm, name="conv",
            **_inits(self.variant, hidden=True),
        )(x)
        if batch_norm:
            x = nn.BatchNorm(
                use_running_average=not train, momentum=0.9, epsilon=TORCHVISION_BN_EPS, axis_name=self.bn_axis_name,
                name="bn",
            )(x)
        return nn.relu(x)


class Inception(nn.Module):
    """Inception v1 module (Sec. 4, Fig. 2b) with Table 1's ``widths`` (#1x1, #3x3r, #3x3, #5x5r, #5x5, proj)."""

    widths: tuple[int, int, int, int, int, int]
    variant: str = "paper"
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        n1, n3r, n3, n5r, n5, proj = self.widths
        unit = functools.partial(ConvUnit, variant=self.variant, bn_axis_name=self.bn_axis_name)
        # torchvision's "5x5" branch is a 3x3 convolution; the paper's is 5x5 (Table 1, Fig. 2b).
        k5 = 3 if self.variant == "torchvision" else 5
        b1 = unit(n1, 1, name="b1x1")(x, train)
        b3 = unit(n3, 3, name="b3x3")(unit(n3r, 1, name="b3x3_reduce")(x, train), train)
        b5 = unit(n5, k5, name="b5x5")(unit(n5r, 1, name="b5x5_reduce")(x, train), train)
        # 3x3 max pooling, stride 1, padded by 1 (with -inf) so the size is kept, then the 1x1 "pool proj".
        pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
        bp = unit(proj, 1, name="pool_proj")(pooled, train)
        return jnp.concatenate([b1, b3, b5, bp], axis=-1)  # "concatenated into a single output vector"


class AuxHead(nn.Module):
    """Auxiliary classifier (Sec. 5). Paper: avg 5x5/3 -> 1x1 conv 128 -> fc 1024 -> dropout 0.7 -> fc (linear).

    Torchvision: adaptive average pooling to 4x4 instead of the 5x5/3 pool, BN after the 1x1 conv.
    """

    num_classes: int
    variant: str = "paper"
    dropout_rate: float = AUX_DROPOUT
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        if self.variant == "torchvision":
            x = adaptive_avg_pool(x, (4, 4))
        else:
            if x.shape[1] < 5 or x.shape[2] < 5:
                raise ValueError(
                    f"GoogLeNet's auxiliary heads need a 4a map of at least 5x5 for their 5x5/3 average pool (images "
                    f"of at least {MIN_AUX_INPUT_SIZE}x{MIN_AUX_INPUT_SIZE}), got {x.shape[1]}x{x.shape[2]}; "
                    f"use larger images or aux_heads=False"
                )
            # "An average pooling layer with 5x5 filter size and stride 3, resulting in an 4x4x512 output for the
            # (4a), and 4x4x528 for the (4d) stage."
            x = nn.avg_pool(x, (5, 5), strides=(3, 3), padding="VALID")
        # "A 1x1 convolution with 128 filters for dimension reduction and rectified linear activation."
        x = ConvUnit(128, 1, variant=self.variant, bn_axis_name=self.bn_axis_name, name="conv")(x, train)
        x = x.reshape((x.shape[0], -1))  # row-major (h, w, c); 4*4*128 = 2048 at 224
        # "A fully connected layer with 1024 units and rectified linear activation."
        x = nn.relu(nn.Dense(1024, name="fc", **_inits(self.variant, hidden=True))(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        # "A linear layer with softmax loss as the classifier ... removed at inference time."
        return nn.Dense(self.num_classes, name="classifier", **_inits(self.variant, hidden=False))(x)


@register("googlenet")
class GoogLeNet(nn.Module):
    """GoogLeNet (Inception v1). Returns the main logits ``[N, num_classes]``; aux logits are sown (docstring)."""

    num_classes: int = 1000
    variant: str = "paper"  # 'paper' (LRN, 5x5 branches, Caffe init) or 'torchvision' (BN, 3x3 branches)
    aux_heads: bool = True  # Sec. 5 auxiliary classifiers on 4a and 4d, run only in training (and in init)
    dropout_rate: float | None = None  # None: the variant's (0.4 paper, 0.2 torchvision)
    aux_dropout_rate: float = AUX_DROPOUT
    norm_k: float = 2.0  # LRN constants (paper variant): AlexNet's; Caffe's replication is k=1, alpha=2e-5
    norm_n: int = 5
    norm_alpha: float = 1e-4
    norm_beta: float = 0.75
    bn_axis_name: str | None = None  # torchvision variant: BN statistics synchronised over this axis

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        _check_variant(self.variant)
        if x.ndim != 4:
            raise ValueError(f"GoogLeNet expects NHWC images, got shape {x.shape}")
        paper = self.variant == "paper"
        unit = functools.partial(ConvUnit, variant=self.variant, bn_axis_name=self.bn_axis_name)
        sow = functools.partial(self.sow, "intermediates")

        def lrn(name: str, h: Array) -> Array:
            if not paper:  # torchvision: BN instead of LRN
                return h
            h = LocalResponseNorm(
                k=self.norm_k, n=self.norm_n, alpha=self.norm_alpha, beta=self.norm_beta, name=param_name(name)
            )(h)
            sow(name, h)
            return h

        # Stem (Table 1, Fig. 3): conv 7x7/2 -> max pool 3x3/2 -> LRN -> conv 1x1 -> conv 3x3 -> LRN -> max pool 3x3/2.
        x = unit(64, 7, stride=2, name=param_name("conv1"))(x, train)
        sow("conv1", x)
        x = max_pool(x, 3, 2, ceil_mode=True)
        sow("pool1", x)
        x = lrn("norm1", x)
        x = unit(64, 1, name=param_name("conv2_reduce"))(x, train)
        sow("conv2_reduce", x)
        x = unit(192, 3, name=param_name("conv2"))(x, train)
        sow("conv2", x)
        x = lrn("norm2", x)
        x = max_pool(x, 3, 2, ceil_mode=True)
        sow("pool2", x)

        # Heads run in training; in init too (outputs discarded) so that init(train=False) creates their params.
        run_aux = self.aux_heads and (train or self.is_initializing())
        for s, stage in enumerate(STAGES, start=3):
            for block in stage:
                name = f"inception{block}"
                x = Inception(
                    INCEPTION_WIDTHS[block], variant=self.variant, bn_axis_name=self.bn_axis_name, name=param_name(name)
                )(x, train)
                sow(name, x)
                if run_aux and block in AUX_AFTER:
                    head = AUX_AFTER[block]
                    logits = AuxHead(
                        self.num_classes, variant=self.variant, dropout_rate=self.aux_dropout_rate,
                        bn_axis_name=self.bn_axis_name, name=param_name(head),
                    )(x, train)
                    if train:
                        self.sow("aux_logits", head, logits)
            if s < 5:
                # Max pools between stages (Table 1: 3x3/2); torchvision's maxpool4 is 2x2/2. Both ceil-rounded.
                x = max_pool(x, 3 if paper or s == 3 else 2, 2, ceil_mode=True)
                sow(f"pool{s}", x)

        # "average pooling" 7x7 (the whole 7x7 map at 224), then dropout and the linear classifier (Table 1).
        x = jnp.mean(x, axis=(1, 2))
        sow("pool5", x)
        rate = DROPOUT[self.variant] if self.dropout_rate is None else self.dropout_rate
        x = nn.Dropout(rate, deterministic=not train)(x)
        logits = nn.Dense(self.num_classes, name=param_name("fc"), **_inits(self.variant, hidden=False))(x)
        sow("fc", logits)
        return logits


# torchvision's googlenet: BatchNorm, 3x3 in the "5x5" branch, dropout 0.2 (see the module docstring).
register("googlenet_torchvision", functools.partial(GoogLeNet, variant="torchvision"))
