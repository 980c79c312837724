"""Test-time protocols: crop-averaged softmax, multi-view averaging, eval-only model overrides."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets import models, parallel
from convnets.data import pipeline
from convnets.evaluate import classification as evaluation
from convnets.train import loop
from convnets.train.state import NetState, TrainState
from tests.helpers import final_params, tiny_config


class _Linear(nn.Module):
    """A model whose logits are known: the mean pixel value of each channel, times a constant."""

    scale: float = 1.0

    @nn.compact
    def __call__(self, x, train=False):
        del train
        return self.scale * jnp.mean(x, axis=(1, 2))


@models.register('test_tempered_dense')
class _TemperedDense(nn.Module):
    """A linear classifier whose logits are multiplied by `temperature` — a field that changes no parameter."""

    num_classes: int = 10
    temperature: float = 1.0

    @nn.compact
    def __call__(self, x, train=False):
        del train
        return self.temperature * nn.Dense(self.num_classes)(x.reshape((x.shape[0], -1)))


def test_crop_average_is_the_mean_softmax():
    rng = np.random.default_rng(0)
    crops = jnp.asarray(rng.normal(size=(2, 10, 4, 4, 3)), jnp.float32)
    model = _Linear(scale=3.0)
    got = evaluation.crop_averaged_log_probs(model, {}, crops)
    expected = np.log(np.mean(jax.nn.softmax(3.0 * np.mean(np.asarray(crops), axis=(2, 3))), axis=1))
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # Crops come on their own key; a 5-D 'image' (a clip) is given to the model as it is.
    via_key = evaluation.log_probs(model, {}, {'crops': crops})
    np.testing.assert_allclose(via_key, expected, rtol=1e-5)
    single = evaluation.log_probs(model, {}, {'image': crops[:, 0]})
    np.testing.assert_allclose(single, jax.nn.log_softmax(3.0 * np.mean(np.asarray(crops[:, 0]), axis=(1, 2))),
                               rtol=1e-5)


def test_scores_count_examples_not_crops_and_skip_padding():
    model = _Linear()
    mesh = parallel.make_mesh(jax.devices()[:2])
    par = parallel.Parallel(mesh)
    crops = np.zeros((4, 10, 2, 2, 3), np.float32)
    crops[:, :, :, :, 1] = 1.0  # Class 1 wins in every crop.
    batch = par.shard_batch({'crops': crops, 'label': np.array([1, 1, 0, 2], np.int32),
                             'mask': np.array([1, 1, 1, 0], np.float32)})
    state = TrainState(step=jnp.zeros((), jnp.int32), rng=jnp.zeros((2,), jnp.uint32),
                       nets={'model': NetState(params={}, batch_stats={}, opt_state=())})
    lp = parallel.compile_per_example(lambda s, b: evaluation.log_probs(model, {}, b), mesh)(state, batch)
    sums = jax.device_get(par.compile(evaluation._score_step, donate=False)(
        state, {'log_probs': lp, 'label': batch['label'], 'mask': batch['mask']}))
    assert float(sums['count']) == 3 and float(sums['top1']) == 2 and float(sums['top5']) == 3
    p_label = jax.nn.softmax(np.array([0.0, 1.0, 0.0]))
    assert float(sums['loss']) == pytest.approx(-2 * np.log(p_label[1]) - np.log(p_label[0]), rel=1e-5)


@pytest.mark.slow
def test_views_average_posteriors(tmp_path, digits_dir):
    """Two identical views give the single-view result; a flipped view changes the posteriors."""
    config = tiny_config(digits_dir)
    config.batch_size, config.num_train_steps, config.log_every = 32, 300, '100'  # A model that has learned.
    workdir = str(tmp_path / 'run')
    trained = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:2])
    base = config.data.eval_preprocess
    config.evals.val.views = (base, base)
    twice = loop.evaluate_checkpoint(config, workdir, devices=jax.devices()[:2])
    assert twice['eval']['top1'] == pytest.approx(trained['eval']['top1'])
    assert twice['eval']['loss'] == pytest.approx(trained['eval']['loss'], rel=1e-5)
    assert twice['eval']['num_examples'] == 360
    config.evals.val.views = (base + '|hflip',)
    flipped = loop.evaluate_checkpoint(config, workdir, devices=jax.devices()[:2])['eval']
    config.evals.val.views = (base, base + '|hflip')
    both = loop.evaluate_checkpoint(config, workdir, devices=jax.devices()[:2])['eval']
    # Averaging posteriors: -log(mean p) <= mean(-log p) (Jensen), strictly unless the views agree everywhere.
    assert flipped['loss'] != pytest.approx(trained['eval']['loss'], rel=1e-3)
    assert both['loss'] < 0.5 * (flipped['loss'] + trained['eval']['loss'])


def test_model_overrides_change_the_evaluated_model_not_its_parameters(tmp_path, digits_dir):
    """A final protocol with temperature=3 scores 3x the logits of the TRAINED parameters (checked by hand from
    the checkpoint); the periodic evaluation, without the override, scores the logits as trained."""
    config = tiny_config(digits_dir, name='test_tempered_dense', num_classes=10)
    config.evals.val.results_key = 'eval_periodic'
    config.evals.test = config.evals.val.copy_and_resolve_references()
    config.evals.test.results_key = 'eval'
    config.evals.test.every = ''
    config.evals.test.model_overrides = {'temperature': 3.0}
    workdir = str(tmp_path / 'run')
    results = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    params = final_params(workdir)

    def loss_by_hand(temperature):
        model, total = _TemperedDense(temperature=temperature), 0.0
        for batch in pipeline.eval_batches(config.data, global_batch_size=config.batch_size):
            lp = jax.nn.log_softmax(model.apply({'params': params}, batch['image']))
            p_label = np.take_along_axis(np.asarray(lp), batch['label'][:, None], 1)[:, 0]
            total += float(-np.sum(p_label * batch['mask']))
        return total / 360

    assert results['eval_periodic']['loss'] == pytest.approx(loss_by_hand(1.0), rel=1e-5)
    assert results['eval']['loss'] == pytest.approx(loss_by_hand(3.0), rel=1e-5)
    assert results['eval']['loss'] != pytest.approx(results['eval_periodic']['loss'], rel=1e-2)
