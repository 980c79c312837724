"""The GAN task (convnets/tasks/gan.py) on tiny stand-in networks: each phase of the alternating step changes only
its own network, the losses are the papers' formulas, the noise of an example does not depend on the device count,
and 1 and 8 simulated devices train to the same parameters (BatchNorm over the global batch)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from convnets import parallel, tasks
from convnets.tasks import gan
from convnets.train import loop
from tests.gan_tiny import tiny_config
from tests.helpers import assert_trees_close, final_state


def _setup(config, devices):
    task = tasks.get('gan')
    mesh = parallel.make_mesh(devices)
    nets = task.build_nets(config)
    optimizers = task.make_optimizers(config, steps_per_epoch=10, total_steps=10)
    spec = {'image': jax.ShapeDtypeStruct((8, 8, 1), jnp.float32)}
    state = jax.jit(lambda: task.init_state(config, nets, optimizers, spec))()
    return task, mesh, nets, optimizers, state


def test_each_phase_changes_only_its_own_network(digits_dir):
    config = tiny_config(digits_dir)
    task, mesh, nets, optimizers, state = _setup(config, jax.devices()[:1])
    phases = gan.Phases(config, nets, optimizers, axis_name=parallel.AXIS, loss_is_global=True)
    real = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (16, 8, 8, 1)), jnp.float32)
    key = jax.random.PRNGKey(3)
    P = jax.sharding.PartitionSpec
    d_phase = jax.jit(jax.shard_map(lambda s, x: phases.discriminator(s, x, key, 0)[0], mesh=mesh,
                                    in_specs=(P(), P(parallel.AXIS)), out_specs=P(), check_vma=False))
    g_phase = jax.jit(jax.shard_map(lambda s: phases.generator(s, key, 1, 16)[0], mesh=mesh, in_specs=(P(),),
                                    out_specs=P(), check_vma=False))
    after_d = d_phase(state, real)
    after_g = g_phase(after_d)

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    def differ(a, b):
        return not same(a, b)

    G, D = gan.GENERATOR, gan.DISCRIMINATOR
    assert same(after_d.nets[G], state.nets[G]) and differ(after_d.nets[D].params, state.nets[D].params)
    assert differ(after_d.nets[D].batch_stats, state.nets[D].batch_stats)  # D's running stats follow the real batch
    assert same(after_g.nets[D], after_d.nets[D]) and differ(after_g.nets[G].params, after_d.nets[G].params)
    assert differ(after_g.nets[G].batch_stats, after_d.nets[G].batch_stats)


def test_losses_are_the_papers_formulas():
    r, f = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
    d = lambda x: 1 / (1 + np.exp(-np.asarray(x)))  # noqa: E731
    np.testing.assert_allclose(gan.discriminator_losses(r, f),
                               -np.mean(np.log(d(r))) - np.mean(np.log(1 - d(f))), rtol=1e-6)
    np.testing.assert_allclose(gan.generator_loss(f, 'non_saturating'), -np.mean(np.log(d(f))), rtol=1e-6)
    np.testing.assert_allclose(gan.generator_loss(f, 'minimax'), np.mean(np.log(1 - d(f))), rtol=1e-6)


def test_an_examples_noise_does_not_depend_on_the_device_count():
    gan_config = ConfigDict(dict(z_dim=3, z_dist='uniform'))
    key = jax.random.PRNGKey(0)
    whole = gan.example_latents(gan_config, key, jnp.arange(8))
    halves = jnp.concatenate([gan.example_latents(gan_config, key, jnp.arange(4) + 4 * d) for d in range(2)])
    np.testing.assert_array_equal(whole, halves)
    assert float(whole.min()) >= -1 and float(whole.max()) <= 1
    gan_config.z_dist = 'normal'
    assert abs(float(gan.latents(gan_config, key, 4000).std()) - 1.0) < 0.05


@pytest.mark.parametrize('field,value,message', [('z_dist', 'gaussian', 'uniform'), ('g_loss', 'wgan', 'minimax'),
                                                 ('d_steps', 0, 'd_steps')])
def test_bad_gan_settings_are_named(digits_dir, field, value, message):
    config = tiny_config(digits_dir, **{field: value})
    with pytest.raises(ValueError, match=message):
        tasks.get('gan').validate(config)


@pytest.mark.slow
def test_one_device_equals_eight(tmp_path, digits_dir):
    """The same global batch on 1 and 8 devices: the same noise per example and BatchNorm over the global batch.
    (SGD here: Adam's first steps are +-lr for every parameter, so a gradient that is ~0 up to rounding could
    flip its sign between two summation orders.)"""
    config = tiny_config(digits_dir)
    for name in ('g_optimizer', 'd_optimizer'):
        config[name].update(dict(name='sgd', learning_rate=0.05, momentum=0.5))
    loop.train_and_evaluate(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
    loop.train_and_evaluate(config, str(tmp_path / 'eight'), devices=jax.devices())
    one, eight = final_state(str(tmp_path / 'one')), final_state(str(tmp_path / 'eight'))
    assert_trees_close(one['nets'], eight['nets'], rtol=2e-5)
