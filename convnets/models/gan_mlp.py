"""The MNIST networks of the original GAN (Goodfellow et al. 2014, "Generative Adversarial Nets", Sec. 5), as in
the authors' released hyperparameters: goodfeli/adversarial, mnist.yaml (latest version f77a509, 2014-06-18), built
from pylearn2 layers (pylearn2/models/mlp.py, pylearn2/models/maxout.py) and adversarial/__init__.py.

Generator (yaml ``generator.mlp``, nvis 100): h0 RectifiedLinear 1200 -> h1 RectifiedLinear 1200 -> y Sigmoid 784,
reshaped to 28x28x1 in [0, 1]. Sec. 5: "a mixture of rectifier linear activations and sigmoid activations"; noise
"as the input to only the bottommost layer" (no dropout in G: the cost's generator_default_input_include_prob
is 1).

Discriminator (yaml ``discriminator``, nvis 784): h0 Maxout 240 units x 5 pieces -> h1 Maxout 240 x 5 -> y Sigmoid 1
(here the pre-sigmoid logit; the loss applies the sigmoid). Maxout unit j is the max of the affine pieces
j*5 ... j*5+4 (pylearn2 Maxout.fprop: ``z[:, i:last_start+i+1:pool_stride]`` with pool_stride = num_pieces, i.e.
contiguous groups of the 1200 affine outputs). Dropout (yaml ``AdversaryCost2``) on the INPUT of every D layer:
include probability 0.8 on h0's input (the image; input scale 1.25 = 1/0.8) and 0.5 on h1's and y's inputs (scale
2 = 1/0.5) -- inverted dropout with rates 0.2 and 0.5, active on both real and generated batches and, since
``no_drop_in_d_for_g`` is False, also in D when it scores G's samples for G's loss. Only with ``train=True``;
masks from the 'dropout' rng.

Initialisation (pylearn2 ``irange``: weights uniform in [-irange, irange]; biases 0 unless ``init_bias``): G's
layers irange 0.05, D's layers irange 0.005. G's output bias is ``init_sigmoid_bias_from_marginals`` of the 50,000
training images: per pixel the log-odds of the pixel's mean, the mean clipped to [1e-7, 1 - 1e-7]
(pylearn2/models/dbm/__init__.py). That needs the data, so the module starts it at 0 and
:func:`with_marginal_output_bias` sets it from a batch of real images after ``init``.

Not in the networks but in the yaml, for the task and experiment: the generator's noise is ``'uniform'``, which
adversarial.Generator.get_noise draws from U(-sqrt(3), sqrt(3)) (unit variance; an earlier yaml, 068bb03, left the
default N(0, 1)); SGD batch 100, learning rate 0.1 decayed by 1/1.000004 per step to >= 1e-6, momentum 0.5 rising
linearly to 0.7 over epochs 1-250; train on the first 50,000 MNIST training images, validate on the last 10,000.
AdversaryCost2.get_gradients returns D's and G's gradients together, so one SGD step updates both networks at once
from the same minibatch, samples and dropout masks (not alternating phases), with D's objective
0.5 * (BCE(D(x), 1) + BCE(D(G(z)), 0)) and G's the non-saturating BCE(D(G(z)), 1).

Parameters (weights + biases): G 100*1200 + 1200 = 121,200; 1200*1200 + 1200 = 1,441,200; 1200*784 + 784 = 941,584;
total 2,503,984. D h0 784*1200 + 1200 = 942,000 (1200 = 240 units x 5 pieces); h1 240*1200 + 1200 = 289,200;
y 240 + 1 = 241; total 1,231,441.

Sown intermediates (collection 'intermediates'): G ``h0``, ``h1`` (after ReLU); D ``h0``, ``h1`` (maxout outputs,
before dropout). Parameter submodules: ``h0_layer``, ``h1_layer``, ``y_layer`` (layers.param_name).
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from convnets.models.layers import param_name, uniform_symmetric
from convnets.models.registry import register

Array = jax.Array

G_INIT_RANGE = 0.05  # mnist.yaml generator layers: irange .05
D_INIT_RANGE = 0.005  # mnist.yaml discriminator layers: irange .005
MARGINAL_CLIP = 1e-7  # pylearn2 init_sigmoid_bias_from_array: np.clip(mean, 1e-7, 1 - 1e-7)


def maxout(z: Array, pieces: int) -> Array:
    """Max over contiguous groups of ``pieces`` features: ``[..., units * pieces] -> [..., units]``."""
    if z.shape[-1] % pieces:
        raise ValueError(f"maxout: {z.shape[-1]} features do not split into groups of {pieces} pieces")
    return jnp.max(z.reshape(z.shape[:-1] + (z.shape[-1] // pieces, pieces)), axis=-1)


def _check_shape(who: str, image_shape: tuple[int, ...]) -> int:
    if len(image_shape) != 3 or any(int(d) < 1 for d in image_shape):
        raise ValueError(f"{who}.image_shape must be (height, width, channels), e.g. (28, 28, 1); got {image_shape}")
    return math.prod(image_shape)


@register("gan_mlp_generator")
class GANMLPGenerator(nn.Module):
    """z ``[B, z_dim]`` -> images ``[B, *image_shape]`` in [0, 1] (sigmoid)."""

    z_dim: int = 100
    hidden: tuple[int, ...] = (1200, 1200)  # RectifiedLinear layers h0, h1
    image_shape: tuple[int, int, int] = (28, 28, 1)
    init_range: float = G_INIT_RANGE

    @nn.compact
    def __call__(self, z: Array, train: bool = False) -> Array:
        del train  # no dropout or BatchNorm in G (the yaml's generator_default_input_include_prob is 1)
        size = _check_shape("GANMLPGenerator", tuple(self.image_shape))
        if z.ndim != 2 or z.shape[-1] != self.z_dim:
            raise ValueError(f"GANMLPGenerator expects latents [B, z_dim={self.z_dim}], got shape {z.shape}")
        init = uniform_symmetric(self.init_range)
        h = z
        for i, features in enumerate(self.hidden):
            h = nn.relu(nn.Dense(features, kernel_init=init, name=param_name(f"h{i}"))(h))
            self.sow("intermediates", f"h{i}", h)
        y = nn.Dense(size, kernel_init=init, name=param_name("y"))(h)
        return nn.sigmoid(y).reshape((z.shape[0],) + tuple(self.image_shape))


@register("gan_mlp_discriminator")
class GANMLPDiscriminator(nn.Module):
    """images ``[B, *image_shape]`` (flattened) -> real-vs-fake logits ``[B]``."""

    hidden: tuple[int, ...] = (240, 240)  # maxout units of h0, h1
    pieces: tuple[int, ...] = (5, 5)  # affine pieces per maxout unit of h0, h1
    image_shape: tuple[int, int, int] = (28, 28, 1)
    init_range: float = D_INIT_RANGE
    input_dropout: float = 0.2  # 1 - include prob 0.8 on the image
    hidden_dropout: float = 0.5  # 1 - include prob 0.5 on the inputs of h1 and y

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        size = _check_shape("GANMLPDiscriminator", tuple(self.image_shape))
        if len(self.pieces) != len(self.hidden) or any(p < 1 for p in self.pieces):
            raise ValueError(f"GANMLPDiscriminator.pieces needs one positive piece count per hidden layer "
                             f"(hidden={self.hidden}), got {self.pieces}")
        for name, rate in (("input_dropout", self.input_dropout), ("hidden_dropout", self.hidden_dropout)):
            if not 0.0 <= rate < 1.0:
                raise ValueError(f"GANMLPDiscriminator.{name} is a drop rate in [0, 1), got {rate}")
        if math.prod(x.shape[1:]) != size:
            raise ValueError(f"GANMLPDiscriminator expects images [B, {', '.join(map(str, self.image_shape))}] "
                             f"(image_shape), got shape {x.shape}")
        init = uniform_symmetric(self.init_range)
        h = nn.Dropout(self.input_dropout, deterministic=not train)(x.reshape((x.shape[0], size)))
        for i, (units, pieces) in enumerate(zip(self.hidden, self.pieces, strict=True)):
            h = maxout(nn.Dense(units * pieces, kernel_init=init, name=param_name(f"h{i}"))(h), pieces)
            self.sow("intermediates", f"h{i}", h)
            h = nn.Dropout(self.hidden_dropout, deterministic=not train)(h)
        return nn.Dense(1, kernel_init=init, name=param_name("y"))(h)[:, 0]


def marginal_output_bias(images: Any) -> np.ndarray:
    """pylearn2's ``init_sigmoid_bias_from_marginals``: per pixel log(m / (1 - m)) of the mean ``m`` of ``images``
    (``[N, ...]`` in [0, 1]), ``m`` clipped to [1e-7, 1 - 1e-7]; flattened like the generator's output."""
    x = np.asarray(images, np.float64).reshape(len(images), -1)
    if x.size == 0 or x.min() < 0.0 or x.max() > 1.0:
        raise ValueError("marginal_output_bias needs a non-empty batch of images in [0, 1] (the MLP GAN's range)")
    m = np.clip(x.mean(axis=0), MARGINAL_CLIP, 1.0 - MARGINAL_CLIP)
    return np.log(m / (1.0 - m)).astype(np.float32)


def with_marginal_output_bias(params: dict[str, Any], images: Any) -> dict[str, Any]:
    """G's ``params`` with the sigmoid output bias set from real ``images``, as mnist.yaml initialises it."""
    bias = jnp.asarray(marginal_output_bias(images))
    old = params["y_layer"]["bias"]
    if old.shape != bias.shape:
        raise ValueError(f"with_marginal_output_bias: images give {bias.shape[0]} pixels, the generator outputs "
                         f"{old.shape[0]}")
    return {**params, "y_layer": {**params["y_layer"], "bias": bias}}
