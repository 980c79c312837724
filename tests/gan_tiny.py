"""Tiny stand-in GAN networks and a 3-step GAN config on the embedded digits, shared by the GAN task tests and the
mixed-precision tests (one module, so the networks are registered once however the tests import it)."""

import flax.linen as nn
import jax.numpy as jnp
from ml_collections import ConfigDict

from convnets.models.registry import register
from experiments import default


@register('test_tiny_generator')
class TinyGenerator(nn.Module):
    """z -> dense -> BN -> ReLU -> 8x8x1 tanh image."""

    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, z, train=False):
        h = nn.Dense(16)(z)
        h = nn.BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, momentum=0.9)(h)
        return jnp.tanh(nn.Dense(64)(nn.relu(h))).reshape((-1, 8, 8, 1))


@register('test_tiny_discriminator')
class TinyDiscriminator(nn.Module):
    """Conv (stride 2) -> LeakyReLU -> conv -> BN -> LeakyReLU -> one logit."""

    bn_axis_name: str | None = None

    @nn.compact
    def __call__(self, x, train=False):
        h = nn.leaky_relu(nn.Conv(4, (3, 3), strides=2)(x), 0.2)
        h = nn.Conv(8, (3, 3), strides=2)(h)
        h = nn.BatchNorm(use_running_average=not train, axis_name=self.bn_axis_name, momentum=0.9)(h)
        self.sow('intermediates', 'conv2', h)
        return nn.Dense(1)(nn.leaky_relu(h, 0.2).reshape((x.shape[0], -1)))[:, 0]


def tiny_config(digits_dir: str, **gan_fields) -> ConfigDict:
    c = default.get_config()
    c.task = 'gan'
    c.generator = ConfigDict({'name': 'test_tiny_generator'})
    c.discriminator = ConfigDict({'name': 'test_tiny_discriminator'})
    c.gan = ConfigDict(dict(z_dim=5, z_dist='uniform', d_steps=1, g_loss='non_saturating', image_range=(-1.0, 1.0)))
    c.gan.update(gan_fields)
    for name in ('g_optimizer', 'd_optimizer'):
        c[name] = default.get_config().optimizer
        c[name].update(dict(name='adam', learning_rate=2e-3, b1=0.5, momentum=0.0))
    c.data.data_dir = digits_dir
    c.data.train_preprocess = c.data.eval_preprocess = 'decode|resize(8)|value_range(-1, 1)'
    c.batch_size = 16
    c.num_train_steps = 3
    c.log_every, c.checkpoint_every = '1', ''
    c.evals = ConfigDict()
    c.optimizer.plateau_metric = ''
    return c
