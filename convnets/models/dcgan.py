"""DCGAN generator and discriminator (Radford, Metz, Chintala 2015, "Unsupervised Representation Learning with
Deep Convolutional Generative Adversarial Networks", Sec. 3-4, Fig. 1), checked against the authors' Theano code
(Newmu/dcgan_code at ee12b2d: faces/train_uncond_dcgan.py for 64x64, lib/ops.py, lib/activations.py, lib/inits.py,
and the 32x32 SVHN model whose saved parameter shapes are in
models/svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb/200_{gen,discrim}_params.jl_*.npy).

Generator (Fig. 1 at 64x64x3, ``width`` = ngf = 128 as in the figure's 4x4x1024 and the code's ``ngf = 128``):
z (100) -> project: dense 100 -> 4*4*1024, BatchNorm, ReLU, reshaped to 4x4x1024 (Sec. 3: "could be called fully
connected as it is just a matrix multiplication, but the result is reshaped into a 4-dimensional tensor") ->
four fractionally strided (transposed) convolutions, stride 2, each doubling the map: 8x8x512, 16x16x256, 32x32x128
with BatchNorm + ReLU, and 64x64x``channels`` with tanh and no BatchNorm (Sec. 3 guidelines).

Discriminator: four stride-2 convolutions (no pooling) 32x32x128, 16x16x256, 8x8x512, 4x4x1024, LeakyReLU with
slope 0.2 (Sec. 4), BatchNorm on all but the first (D's input layer, Sec. 3); the 4x4x1024 map is flattened into
one linear unit, the real-vs-fake logit (Sec. 3: "the last convolution layer is flattened and then fed into a
single sigmoid output"; the loss applies the sigmoid). No hidden fully connected layers.

``image_size`` 32 drops the widest stage: G projects to 4x4x(4*width) and has three transposed convs, D has three
convs (width, 2*width, 4*width) and a linear unit on the 4x4x(4*width) map -- exactly the shapes of the authors'
32x32 SVHN model with width 64 (gen: (100, 4096), (256, 128, 5, 5), (128, 64, 5, 5), (64, 3, 5, 5); discrim:
(64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5), (4096, 1)). Any power of two >= 8 works the same way.

Details taken from the authors' code where the paper is silent (or differs):

- Kernels 5x5 (Fig. 1 draws 5x5; the code's weights are (out, in, 5, 5)); convs pad 2 (``border_mode=(2, 2)``).
  The 4x4 kernels (pad 1) of the later Torch / PyTorch ports are not the paper's; ``kernel_size=4`` gives them.
  A transposed conv here is exactly the input gradient of the matching strided conv, which is how the code's
  ``deconv`` is defined (``GpuDnnConvGradI``): low/high padding ``k - 1 - p`` and ``k - 1 - p + k % 2`` (stride 2;
  ``k - 1 - p`` both for stride 1) on the stride-dilated input, with ``transpose_kernel=True``
  (tests/test_gan_models.py checks the identity for 5x5, 4x4 and 3x3).
- No biases anywhere: every conv, transposed conv and dense weight in the code is a bare matrix (gw ... gwx,
  dw ... dwy); BatchNorm's shift plays the bias where there is BN. So G's tanh layer, D's first conv and D's logit
  have no bias either.
- The projection's BatchNorm is per unit of the 4*4*1024 dense output (gg, gb have ngf*8*4*4 entries; the code
  normalises before the reshape), not per channel. The code reshapes NCHW (unit = c*16 + y*4 + x); here the flat
  vector is reshaped NHWC (unit = (y*4 + x)*C + c), a fixed permutation of the same dense layer's units.
- Weights N(0, 0.02) (Sec. 4, ``inits.Normal(scale=0.02)``); BN gains N(1, 0.02) (``gain_ifn = inits.Normal(loc=1.,
  scale=0.02)``), BN shifts 0. BN epsilon 1e-8 (lib/ops.py ``batchnorm(..., e=1e-8)``), variance as the mean of
  squared deviations (two-pass, ``use_fast_variance=False``). LeakyReLU leak 0.2 (``LeakyRectify(leak=0.2)``).
- The code always normalises with the current batch's statistics, even when sampling. Here BN follows the
  project's convention (running averages, ``bn_momentum``, with ``train=False``); with ``train=True`` the batch
  statistics are over the global batch when ``bn_axis_name`` is set (base.build_model sets it to the mesh axis).
- In the code real and fake batches go through D in separate calls, so each has its own batch statistics
  (``p_real = discrim(X)``, ``p_gen = discrim(gX)``); that is the caller's choice (convnets/tasks/gan.py).

Parameters at 64x64x3, width 128, kernel 5 (BN: gamma + beta per feature; running mean/var are not parameters):

G layer          output        weights                       BN                     total
project          4x4x1024      100*16384      =  1,638,400   2*16384 = 32,768        1,671,168
deconv1          8x8x512       25*1024*512    = 13,107,200   2*512   =  1,024       13,108,224
deconv2          16x16x256     25*512*256     =  3,276,800   2*256   =    512        3,277,312
deconv3          32x32x128     25*256*128     =    819,200   2*128   =    256          819,456
deconv4 (tanh)   64x64x3       25*128*3       =      9,600   -                           9,600
                                                                               G total 18,885,760

D layer          output        weights                       BN                     total
conv1            32x32x128     25*3*128       =      9,600   -                           9,600
conv2            16x16x256     25*128*256     =    819,200   2*256   =    512          819,712
conv3            8x8x512       25*256*512     =  3,276,800   2*512   =  1,024        3,277,824
conv4            4x4x1024      25*512*1024    = 13,107,200   2*1024  =  2,048       13,109,248
logit            1             16384*1        =     16,384   -                          16,384
                                                                               D total 17,232,768

At 32x32x3, width 64 (the SVHN model): G 100*4096 + 2*4096 + 25*256*128 + 256 + 25*128*64 + 128 + 25*64*3 =
1,446,976; D 25*3*64 + 25*64*128 + 256 + 25*128*256 + 512 + 4096 = 1,033,664. At 32x32x1: G 1,443,776, D 1,030,464.

The 32x32 ImageNet-1k model (Sec. 5.1; registered ``dcgan_imagenet32_generator`` / ``_discriminator``). The paper's
CIFAR-10 features are D's conv layers each max-pooled to 4x4, "a 28672 dimensional vector". The 4-conv D above
cannot give that number (width 128 at 32x32: 16 * (128 + 256 + 512) = 14336); the model the authors released as
"the 32x32 imagenet model used in the paper" (imagenet/load_pretrained.py, models/imagenet_gan_pretrain_128f_relu_
lrelu_7l_3x3_256z) can: 3x3 kernels (pad 1), z 256, width 128 and a stride-1 conv before each stride-2 conv
(``stride1_convs=True``). D: conv1 32x32x128 (stride 1, no BN), conv2 16x16x128 (stride 2), conv3 16x16x256 (1),
conv4 8x8x256 (2), conv5 8x8x512 (1), conv6 4x4x512 (2), logit on 8192; 16 * (128 + 128 + 256 + 256 + 512 + 512) =
28672. G mirrors it: project 256 -> 4x4x512 (per-unit BN), then transposed convs stride 2 / 1 alternating,
8x8x512, 8x8x256, 16x16x256, 16x16x128, 32x32x128, 32x32x3 (tanh). Parameters: G 256*8192 + 2*8192 +
9*(512*512 + 512*256 + 256*256 + 256*128 + 128*128 + 128*3) + 2*(512 + 256 + 256 + 128 + 128) = 6,690,688;
D 9*(3*128 + 128*128 + 128*256 + 256*256 + 256*512 + 512*512) + 2*(128 + 256 + 256 + 512 + 512) + 8192 = 4,586,112.
(The saved arrays have these shapes; those of a few weight files are not readable in the mirror, their BN
vectors and neighbours fix them.)

Sown intermediates (collection 'intermediates', after the activation): D ``conv1`` ... ``conv{m}`` (m = 4 at 64x64,
3 at 32x32, 6 for the ImageNet model; the features of the Sec. 5.1 SVM), G ``project`` and ``deconv1`` ...
``deconv{m}``. Parameter submodules: ``{layer}_layer`` (layers.param_name) and ``bn{i}_layer`` (G: bn0 after the
projection).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models.layers import param_name
from convnets.models.registry import register

Array = jax.Array

WEIGHT_STD = 0.02  # Sec. 4 and the code's gifn/difn
GAIN_STD = 0.02  # the code's gain_ifn = Normal(loc=1., scale=0.02)
LEAK = 0.2  # Sec. 4
BN_EPSILON = 1e-8  # lib/ops.py batchnorm(e=1e-8)
PROJECT_SIZE = 4  # Fig. 1: z is projected to a 4x4 map


def bn_gain_init(key: Array, shape: Sequence[int], dtype: Any = jnp.float32) -> Array:
    """BatchNorm gains drawn from N(1, 0.02) (the authors' ``gain_ifn``)."""
    return 1.0 + GAIN_STD * jax.random.normal(key, tuple(shape), dtype)


def num_stages(image_size: int, who: str = "DCGAN") -> int:
    """Stride-2 stages between the 4x4 map and ``image_size`` (4 at 64, 3 at 32)."""
    n = max(int(image_size).bit_length() - 3, 0)
    if image_size < 8 or PROJECT_SIZE * 2 ** n != image_size:
        raise ValueError(f"{who}: image_size must be a power of two >= 8 (64 in the paper, 32 drops one stage), "
                         f"got {image_size}")
    return n


def conv_padding(kernel_size: int) -> int:
    """Symmetric padding of the stride-2 convs: 2 for the paper's 5x5 (``border_mode=(2, 2)``), 1 for 4x4."""
    return (kernel_size - 1) // 2


def transposed_padding(kernel_size: int, stride: int = 2) -> tuple[int, int]:
    """Padding of the stride-dilated input that makes a transposed conv the exact input gradient of the ``stride``
    conv with ``conv_padding(kernel_size)`` on a map ``stride`` times the size (the code's ``deconv``)."""
    low = kernel_size - 1 - conv_padding(kernel_size)
    return low, low + (kernel_size % 2 if stride == 2 else 0)


def _layers(n: int, stride1_convs: bool, width: int) -> list[tuple[int, int]]:
    """(stride, output maps) of D's convs, input to output: stage s has width * 2**(s-1) maps, reached by one
    stride-2 conv or, with ``stride1_convs``, by a stride-1 conv followed by a stride-2 conv of the same maps
    (imagenet/load_pretrained.py). G's transposed convs mirror the list."""
    per_stage = (1, 2) if stride1_convs else (2,)
    return [(stride, width * 2 ** (stage - 1)) for stage in range(1, n + 1) for stride in per_stage]


def _check_common(who: str, image_size: int, channels: int, width: int, kernel_size: int) -> int:
    n = num_stages(image_size, who)
    if channels < 1 or width < 1 or kernel_size < 1:
        raise ValueError(f"{who}: channels, width and kernel_size must be positive, got channels={channels}, "
                         f"width={width}, kernel_size={kernel_size}")
    return n


def _batch_norm(module: DCGANGenerator | DCGANDiscriminator, train: bool, name: str) -> nn.BatchNorm:
    """The authors' BatchNorm (gains N(1, 0.02), two-pass variance), over ``bn_axis_name`` when set."""
    return nn.BatchNorm(use_running_average=not train, momentum=module.bn_momentum, epsilon=module.bn_epsilon,
                        axis_name=module.bn_axis_name, scale_init=bn_gain_init, use_fast_variance=False, name=name)


@register("dcgan_generator")
class DCGANGenerator(nn.Module):
    """z ``[B, z_dim]`` -> images ``[B, image_size, image_size, channels]`` in [-1, 1] (tanh)."""

    image_size: int = 64
    channels: int = 3
    z_dim: int = 100
    width: int = 128  # ngf: the last hidden map's channels; the projection has width * 2**(stages-1) (1024 at 64)
    kernel_size: int = 5
    stride1_convs: bool = False  # a stride-1 transposed conv after each stride-2 one (the ImageNet 32x32 model)
    bn_momentum: float = 0.9  # running averages for train=False (the authors' code keeps none)
    bn_epsilon: float = BN_EPSILON
    bn_axis_name: str | None = None  # BN statistics over this mesh axis (the global batch)

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        n = _check_common("DCGANGenerator", self.image_size, self.channels, self.width, self.kernel_size)
        if z.ndim != 2 or z.shape[-1] != self.z_dim:
            raise ValueError(f"DCGANGenerator expects latents [B, z_dim={self.z_dim}], got shape {z.shape}")
        init = nn.initializers.normal(WEIGHT_STD)
        maps = self.width * 2 ** (n - 1)
        h = nn.Dense(PROJECT_SIZE * PROJECT_SIZE * maps, use_bias=False, kernel_init=init,
                     name=param_name("project"))(z)
        h = nn.relu(_batch_norm(self, train, "bn0_layer")(h))  # per unit, before the reshape (the code's gg, gb)
        h = h.reshape((z.shape[0], PROJECT_SIZE, PROJECT_SIZE, maps))
        self.sow("intermediates", "project", h)
        k = self.kernel_size
        layers = _layers(n, self.stride1_convs, self.width)
        # The mirror of D: each transposed conv outputs the maps that D's matching conv takes in.
        outputs = [self.channels] + [m for _, m in layers[:-1]]
        for i, ((stride, _), features) in enumerate(zip(layers[::-1], outputs[::-1], strict=True), start=1):
            last = i == len(layers)
            pad = (transposed_padding(k, stride),) * 2
            h = nn.ConvTranspose(features, (k, k), strides=(stride, stride), padding=pad, transpose_kernel=True,
                                 use_bias=False, kernel_init=init, name=param_name(f"deconv{i}"))(h)
            # Sec. 3: no BatchNorm on G's output layer, which is tanh.
            h = jnp.tanh(h) if last else nn.relu(_batch_norm(self, train, f"bn{i}_layer")(h))
            self.sow("intermediates", f"deconv{i}", h)
        return h


@register("dcgan_discriminator")
class DCGANDiscriminator(nn.Module):
    """images ``[B, image_size, image_size, channels]`` -> real-vs-fake logits ``[B]``."""

    image_size: int = 64
    channels: int = 3
    width: int = 128  # ndf: conv1's maps, doubling per conv (1024 in conv4 at 64)
    kernel_size: int = 5
    stride1_convs: bool = False  # a stride-1 conv before each stride-2 one (the ImageNet 32x32 model)
    leak: float = LEAK
    bn_momentum: float = 0.9
    bn_epsilon: float = BN_EPSILON
    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        n = _check_common("DCGANDiscriminator", self.image_size, self.channels, self.width, self.kernel_size)
        want = (self.image_size, self.image_size, self.channels)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            raise ValueError(f"DCGANDiscriminator expects images [B, {want[0]}, {want[1]}, {want[2]}] (image_size, "
                             f"channels), got shape {x.shape}")
        init = nn.initializers.normal(WEIGHT_STD)
        k, p = self.kernel_size, conv_padding(self.kernel_size)
        h = x
        for i, (stride, maps) in enumerate(_layers(n, self.stride1_convs, self.width), start=1):
            h = nn.Conv(maps, (k, k), strides=(stride, stride), padding=((p, p), (p, p)),
                        use_bias=False, kernel_init=init, name=param_name(f"conv{i}"))(h)
            if i > 1:  # Sec. 3: no BatchNorm on D's input layer
                h = _batch_norm(self, train, f"bn{i}_layer")(h)
            h = nn.leaky_relu(h, self.leak)
            self.sow("intermediates", f"conv{i}", h)
        h = h.reshape((h.shape[0], -1))
        logit = nn.Dense(1, use_bias=False, kernel_init=init, name=param_name("logit"))(h)
        return logit[:, 0]


# The authors' 32x32 ImageNet-1k model (see the module docstring): the D behind the Sec. 5.1 CIFAR-10 features.
IMAGENET32 = dict(image_size=32, kernel_size=3, stride1_convs=True, width=128)
register("dcgan_imagenet32_generator", functools.partial(DCGANGenerator, z_dim=256, **IMAGENET32))
register("dcgan_imagenet32_discriminator", functools.partial(DCGANDiscriminator, **IMAGENET32))
