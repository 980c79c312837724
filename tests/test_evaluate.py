"""Test-time protocols: crop-averaged softmax, multi-view averaging, eval-only model overrides."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets import models, parallel
from convnets.evaluate import multiview
from convnets.train import classification, loop
from convnets.train.state import TrainState
from tests.helpers import tiny_config


class _Linear(nn.Module):
    """A model whose logits are known: the mean pixel value of each channel, times a constant."""

    scale: float = 1.0

    @nn.compact
    def __call__(self, x, train=False):
        del train
        return self.scale * jnp.mean(x, axis=(1, 2))


def test_crop_average_is_the_mean_softmax():
    rng = np.random.default_rng(0)
    crops = jnp.asarray(rng.normal(size=(2, 10, 4, 4, 3)), jnp.float32)
    model = _Linear(scale=3.0)
    got = multiview.crop_averaged_log_probs(model, {}, crops)
    expected = np.log(np.mean(jax.nn.softmax(3.0 * np.mean(np.asarray(crops), axis=(2, 3))), axis=1))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    single = multiview.crop_averaged_log_probs(model, {}, crops[:, 0])
    np.testing.assert_allclose(single, jax.nn.log_softmax(3.0 * np.mean(np.asarray(crops[:, 0]), axis=(1, 2))),
                               rtol=1e-5)


def test_eval_step_with_crops_counts_examples_not_crops():
    model = _Linear()
    mesh = parallel.make_mesh(jax.devices()[:2])
    par = parallel.Parallel(mesh)
    step = par.compile(classification.make_eval_step(model, axis_name=parallel.AXIS), donate=False)
    images = np.zeros((4, 10, 2, 2, 3), np.float32)
    images[:, :, :, :, 1] = 1.0  # Class 1 wins in every crop.
    batch = {'image': images, 'label': np.array([1, 1, 0, 2], np.int32), 'mask': np.array([1, 1, 1, 0], np.float32)}
    state = TrainState(step=jnp.zeros((), jnp.int32), params={}, batch_stats={}, opt_state=(),
                       rng=jnp.zeros((2,), jnp.uint32))
    sums = jax.device_get(step(state, par.shard_batch(batch)))
    assert float(sums['count']) == 3 and float(sums['top1']) == 2


def test_views_average_posteriors(tmp_path, digits_dir):
    """Two identical views give the single-view result; a flipped view changes the posteriors."""
    config = tiny_config(digits_dir)
    config.batch_size, config.num_train_steps, config.log_every_steps = 32, 300, 100  # A model that has learned.
    workdir = str(tmp_path / 'run')
    trained = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:2])
    base = config.data.eval_preprocess
    config.evaluation.views = (base, base)
    twice = loop.evaluate_checkpoint(config, workdir, devices=jax.devices()[:2])
    assert twice['eval']['top1'] == pytest.approx(trained['eval']['top1'])
    assert twice['eval']['loss'] == pytest.approx(trained['eval']['loss'], rel=1e-5)
    assert twice['eval']['num_examples'] == 360
    config.evaluation.views = (base + '|hflip',)
    flipped = loop.evaluate_checkpoint(config, workdir, devices=jax.devices()[:2])['eval']
    config.evaluation.views = (base, base + '|hflip')
    both = loop.evaluate_checkpoint(config, workdir, devices=jax.devices()[:2])['eval']
    # Averaging posteriors: -log(mean p) <= mean(-log p) (Jensen), strictly unless the views agree everywhere.
    assert flipped['loss'] != pytest.approx(trained['eval']['loss'], rel=1e-3)
    assert both['loss'] < 0.5 * (flipped['loss'] + trained['eval']['loss'])


def test_a_no_op_model_override_keeps_the_result(tmp_path, digits_dir):
    """Overrides are applied to the restored parameters without re-initialising them. (That they take effect is
    shown by VGG's dense=True in tests/test_imagenet_experiments.py: the standard VGG rejects the larger views.)"""
    config = tiny_config(digits_dir, name='convnet', num_classes=10)
    config.evaluation.model_overrides = {'num_filters': 12}  # Same as trained: a no-op override must work.
    results = loop.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices()[:1])
    assert results['eval']['top1'] == pytest.approx(results['eval_periodic']['top1'])
    assert models.get_model('convnet').num_filters == 12
