"""The parallel train step is right: 1 device == 8 devices == pmap, for models with and without BatchNorm."""

import jax
import numpy as np
import pytest

from convnets.train import loop
from tests.helpers import assert_trees_close, final_params, tiny_config

MODELS = {
    'convnet': dict(name='convnet', num_classes=10),
    'convnet_bn': dict(name='convnet', num_classes=10, batch_norm=True),
}


def _train(tmp_path, digits_dir, model, devices, parallel='shard_map', name='run'):
    config = tiny_config(digits_dir, **MODELS[model])
    config.parallel = parallel
    workdir = str(tmp_path / name)
    loop.train_and_evaluate(config, workdir, devices=devices)
    return final_params(workdir)


@pytest.mark.parametrize('model', sorted(MODELS))
def test_one_device_equals_eight(tmp_path, digits_dir, model):
    assert jax.device_count() == 8
    one = _train(tmp_path, digits_dir, model, jax.devices()[:1], name='one')
    eight = _train(tmp_path, digits_dir, model, jax.devices(), name='eight')
    assert_trees_close(one, eight, rtol=1e-5)


@pytest.mark.parametrize('model', sorted(MODELS))
def test_pmap_agrees_with_shard_map(tmp_path, digits_dir, model):
    smap = _train(tmp_path, digits_dir, model, jax.devices(), 'shard_map', name='smap')
    pmap = _train(tmp_path, digits_dir, model, jax.devices(), 'pmap', name='pmap')
    assert_trees_close(smap, pmap, rtol=1e-5)


@pytest.mark.parametrize('kind', ['shard_map', 'pmap'])
@pytest.mark.parametrize('model', sorted(MODELS))
def test_step_equals_plain_sgd_on_the_whole_batch(model, kind):
    """One parallel step over 8 devices == a hand-written SGD step on the full batch with no parallelism."""
    import jax.numpy as jnp
    import optax
    from ml_collections import ConfigDict

    from convnets import models, parallel
    from convnets.tasks import base, classification

    lr = 0.1
    rng = np.random.default_rng(0)
    batch = {'image': rng.normal(size=(16, 8, 8, 3)).astype(np.float32),
             'label': rng.integers(0, 10, size=16).astype(np.int32)}
    reference_model = models.get_model(**MODELS[model])
    tx = optax.sgd(lr, momentum=0.9)
    state = classification.init_state(reference_model, tx, 0, (8, 8, 3))

    def full_batch_loss(params):
        stats = state.net.batch_stats
        variables = {'params': params, 'batch_stats': stats} if stats else {'params': params}
        logits, _ = reference_model.apply(variables, batch['image'], train=True, mutable=['batch_stats'])
        return jnp.mean(classification.cross_entropy(logits, batch['label']))

    grads = jax.grad(full_batch_loss)(state.params)
    expected = jax.tree.map(lambda p, g: p - lr * g, state.params, grads)  # First momentum step: v = g.

    par = parallel.Parallel(parallel.make_mesh(), kind)
    step = par.compile(classification.make_train_step(
        base.build_model(ConfigDict(MODELS[model])), tx, optax.constant_schedule(lr), axis_name=parallel.AXIS,
        loss_is_global=par.loss_is_global), donate=False)
    new_state, metrics = step(state, par.shard_batch(batch))
    assert_trees_close(jax.device_get(new_state.params), expected, rtol=1e-5)
    np.testing.assert_allclose(metrics['loss'], full_batch_loss(state.params), rtol=1e-6)
