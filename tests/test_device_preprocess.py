"""data.device_preprocess: training ops run on the devices after the batch is there; per-example draws from the
example's seed, so runs agree across device counts and parallel kinds and resume exactly."""

import os

import jax
import numpy as np
import pytest

from convnets import parallel, tasks
from convnets.data import device_ops, pipeline
from convnets.train import checkpoint, loop
from tests.helpers import assert_trees_equal, final_params, tiny_config

HOST = 'decode|resize(28)|pad(2)|random_crop(32, pad=2)|to_rgb'
DEVICE = 'photometric_distort|subtract_mean(128)'


def _config(digits_dir):
    config = tiny_config(digits_dir)
    config.data.train_preprocess = HOST
    config.data.eval_preprocess = 'decode|resize(28)|pad(2)|to_rgb|subtract_mean(128)'
    config.data.device_preprocess = DEVICE
    config.optimizer.learning_rate = 0.001
    return config


def test_training_batches_carry_device_seeds(digits_dir):
    data = _config(digits_dir).data
    a = next(pipeline.train_batches(data, global_batch_size=16, seed=0))
    assert a['device_seed'].dtype == np.uint32 and a['device_seed'].shape == (16, 2)
    assert len({tuple(s) for s in a['device_seed']}) == 16  # One key per example.
    b = next(pipeline.train_batches(data, global_batch_size=16, seed=0, start_step=1))
    stream = pipeline.train_batches(data, global_batch_size=16, seed=0)
    next(stream)
    c = next(stream)
    np.testing.assert_array_equal(b['device_seed'], c['device_seed'])  # Resuming at step 1 gives step 1's keys.
    for off in ('', '  '):  # Blank is off everywhere (pipeline.device_spec): no seeds, no transform.
        data.device_preprocess = off
        assert pipeline.device_spec(data) == ''
        assert 'device_seed' not in next(pipeline.train_batches(data, global_batch_size=16, seed=0))
    assert pipeline.element_spec(_config(digits_dir).data)['image'][0] == (32, 32, 3)


@pytest.mark.parametrize('prefetch', [0, 2])
def test_device_batches_are_transformed_alike_for_every_kind(prefetch):
    local = {'image': np.random.default_rng(0).uniform(0, 255, (8, 6, 5, 3)).astype(np.float32),
             'label': np.arange(8, dtype=np.int32),
             'device_seed': np.stack([np.full(8, 9), np.arange(8)], 1).astype(np.uint32)}
    transform = jax.jit(device_ops.batch_fn(DEVICE))
    outs = []
    for kind in parallel.KINDS:
        par = parallel.Parallel(parallel.make_mesh(jax.devices()[:4]), kind)
        (batch,) = par.device_batches([local], prefetch=prefetch, transform=transform)
        assert set(batch) == {'image', 'label'}
        outs.append(np.asarray(batch['image']).reshape(8, 6, 5, 3))
        if prefetch:
            assert len(batch['image'].sharding.device_set) == 4  # Transformed where the batch lies.
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-4)
    assert np.abs(outs[0] - (local['image'] - 128)).max() > 1  # The colours were distorted.


def test_an_unknown_device_op_is_refused_before_anything_runs(digits_dir):
    config = _config(digits_dir)
    config.data.device_preprocess = 'photometric_distort|resize(20)'
    with pytest.raises(ValueError, match=r"unknown device preprocessing op 'resize'; device ops: pca_lighting"):
        tasks.get(config.task).validate(config)
    config.data.device_preprocess = DEVICE
    tasks.get(config.task).validate(config)
    config.data.batch_keys = ('label',)
    with pytest.raises(ValueError, match=r"transforms the batch's 'image', but data.batch_keys=\('label',\)"):
        tasks.get(config.task).validate(config)
    config.data.batch_keys = ('image', 'label')
    assert tasks.get(config.task).run_config(config)['data']['device_preprocess'] == DEVICE


@pytest.mark.slow  # four short runs (~15 s)
def test_device_preprocessed_runs_agree_across_devices_and_resume_exactly(tmp_path, digits_dir, monkeypatch):
    config = _config(digits_dir)
    config.num_train_steps = 6
    config.checkpoint_every = '2'
    one = loop.train_and_evaluate(config, str(tmp_path / 'one'), devices=jax.devices()[:1])
    two_dir = str(tmp_path / 'two')
    two = loop.train_and_evaluate(config, two_dir, devices=jax.devices()[:2])
    assert one['step'] == two['step'] == 6
    np.testing.assert_allclose(one['train']['loss'], two['train']['loss'], rtol=1e-4)
    assert abs(one['eval']['top1'] - two['eval']['top1']) <= 1 / 360

    resumed = str(tmp_path / 'resumed')
    monkeypatch.setattr(checkpoint.PreemptionWatcher, 'requested', lambda self, step: step == 3)
    assert loop.train_and_evaluate(config, resumed, devices=jax.devices()[:2]) is None
    assert sorted(os.listdir(os.path.join(resumed, 'checkpoints'))) == ['2', '3']
    monkeypatch.undo()
    again = loop.train_and_evaluate(config, resumed, devices=jax.devices()[:2])
    assert again['train'] == two['train'] and again['eval'] == two['eval']
    assert_trees_equal(final_params(two_dir), final_params(resumed))

    # Without the device ops the same run trains on other pixels.
    config.data.device_preprocess = ''
    plain = loop.train_and_evaluate(config, str(tmp_path / 'plain'), devices=jax.devices()[:2])
    assert plain['train']['loss'] != two['train']['loss']
