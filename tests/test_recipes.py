"""Each paper's recipe, checked through what the code derives from it, so that a typo in an experiment file fails.

Instead of restating config literals, these tests build the recipe's learning-rate schedule and optimiser and
check the rate at the epochs or iterations the paper names, the update of one weight (learning rate, weight decay
and where the rate acts together), run lengths in epochs for the recipe's batch, cadences in steps, and the test
protocol's views.
"""

import importlib
import re

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convnets.data import ops
from convnets.train import intervals, loop, optim

IMAGENET_TRAIN = 1_281_167  # ILSVRC-2012 training images.
CIFAR10_TRAIN = 50_000


def _config(name):
    return importlib.import_module(f'experiments.{name}').get_config()


def _schedule(config, steps_per_epoch):
    total = loop.total_train_steps(config, steps_per_epoch)
    return optim.make_schedule(config.optimizer, steps_per_epoch=steps_per_epoch, total_steps=total), total


def _first_update(config, w=1.0, g=0.0) -> float:
    """The change of one weight w after one step with gradient g (first step: zero velocity)."""
    tx = optim.make_optimizer(config.optimizer, optim.make_schedule(config.optimizer, steps_per_epoch=1,
                                                                    total_steps=1))
    params = {'kernel': jnp.full((1, 1, 1, 1), w)}
    updates, _ = tx.update({'kernel': jnp.full((1, 1, 1, 1), g)}, tx.init(params), params)
    return float(updates['kernel'].ravel()[0])


def _epoch_steps(config, n_train):
    return n_train // config.batch_size


def test_alexnet_sec5_update_and_cadence():
    c = _config('alexnet')
    # v <- 0.9 v - 0.0005 lr w - lr g with lr = 0.01: a zero-gradient step moves w = 1 by -0.01 * 0.0005.
    assert _first_update(c) == pytest.approx(-0.01 * 0.0005, rel=1e-6)
    assert _first_update(c, w=0.0, g=1.0) == pytest.approx(-0.01, rel=1e-6)
    spe = _epoch_steps(c, IMAGENET_TRAIN)
    assert spe == 10_009  # Batch 128.
    assert intervals.to_steps(c.evals.val.every, spe) == spe  # "Divide by 10 when the validation error stops..."
    assert loop.total_train_steps(c, spe) == 90 * spe  # ~90 cycles through the training set.
    assert optim.plateau(c.optimizer) is not None and c.optimizer.plateau_metric == 'val/top1_error'
    assert c.evals.test.views[0].endswith('ten_crop(224)') and 'crops' in c.evals.test.batch_keys


def test_zfnet_sec3_update_and_renormalisation():
    c = _config('zfnet')
    assert _first_update(c, w=0.0, g=1.0) == pytest.approx(-0.01, rel=1e-6)
    assert _first_update(c, w=0.05) == 0.0  # No weight decay stated; a filter inside the 0.1 RMS radius stays.
    assert _first_update(c, w=1.0) == pytest.approx(0.1 - 1.0, rel=1e-6)  # Renormalised to RMS 0.1.
    assert loop.total_train_steps(c, _epoch_steps(c, IMAGENET_TRAIN)) == 70 * 10_009


@pytest.mark.parametrize('name,train_scales,test_scales', [
    ('vgg11', (256,), (256,)), ('vgg16', (256, 512), (256, 384, 512)), ('vgg19', (256, 512), (256, 384, 512))])
def test_vgg_sec3_run_length_scales_and_dense_protocol(name, train_scales, test_scales):
    c = _config(name)
    spe = _epoch_steps(c, IMAGENET_TRAIN)
    assert round(loop.total_train_steps(c, spe) / spe) == 74  # "370K iterations (74 epochs)".
    assert _first_update(c, w=0.0, g=1.0) == pytest.approx(-0.01, rel=1e-6)
    assert _first_update(c) == pytest.approx(-0.01 * 5e-4, rel=1e-6)
    jitter = re.search(r'random_resize_short\((\d+), (\d+)\)', c.data.train_preprocess)
    fixed = re.search(r'(?<!random_)resize_short\((\d+)\)', c.data.train_preprocess)
    assert (tuple(map(int, jitter.groups())) if jitter else (int(fixed.group(1)),)) == train_scales
    views = c.evals.test.views
    assert sorted({int(re.search(r'resize_short\((\d+)\)', v).group(1)) for v in views}) == list(test_scales)
    assert len(views) == 2 * len(test_scales) and sum(v.endswith('|hflip') for v in views) == len(test_scales)
    assert c.evals.test.model_overrides.dense is True
    for spec in views:
        ops.parse(spec)


def test_googlenet_sec6_rate_drops_4_percent_every_8_epochs():
    c = _config('googlenet')
    spe = _epoch_steps(c, IMAGENET_TRAIN)
    schedule, _ = _schedule(c, spe)
    base = float(schedule(0))
    for epoch, expected in ((7.9, 1.0), (8, 0.96), (16, 0.96 ** 2), (40, 0.96 ** 5)):
        assert float(schedule(int(epoch * spe))) == pytest.approx(base * expected, rel=1e-5), epoch
    assert len(c.evals.test.views) == 4  # 4 scales x 36 crops = 144.
    assert sorted(int(re.search(r'googlenet_crops\(224, (\d+)\)', v).group(1)) for v in c.evals.test.views) == [
        256, 288, 320, 352]


def test_resnet_imagenet_sec34_update_and_length():
    c = _config('resnet50')
    spe = _epoch_steps(c, IMAGENET_TRAIN)
    assert loop.total_train_steps(c, spe) == 600_000 and round(600_000 / spe) == 120
    assert _first_update(c, w=0.0, g=1.0) == pytest.approx(-0.1, rel=1e-6)
    assert _first_update(c) == pytest.approx(-0.1 * 1e-4, rel=1e-6)


@pytest.mark.parametrize('name', ['resnet20_cifar10', 'resnet56_cifar10', 'resnet110_cifar10'])
def test_resnet_cifar_sec42_schedule_in_iterations(name):
    c = _config(name)
    spe = _epoch_steps(c, CIFAR10_TRAIN)
    schedule, total = _schedule(c, spe)
    assert total == 64_000
    warm = name == 'resnet110_cifar10'  # "0.01 to warm up ... until the training error is below 80%" (~400 it.)
    expected = {0: 0.01 if warm else 0.1, 399: 0.01 if warm else 0.1, 400: 0.1, 31_999: 0.1, 32_000: 0.01,
                47_999: 0.01, 48_000: 0.001, 63_999: 0.001}
    assert {s: float(schedule(s)) for s in expected} == pytest.approx(expected, rel=1e-5)
    assert _first_update(c) == pytest.approx(-float(schedule(0)) * 1e-4, rel=1e-5)


def test_quickstart_schedule_and_cadence():
    c = _config('quickstart')
    spe = 1_437 // c.batch_size  # The embedded digits' train split.
    schedule, total = _schedule(c, spe)
    assert total == 40 * spe == 1_760
    assert [float(schedule(e * spe)) for e in (0, 29, 30, 36)] == pytest.approx([0.05, 0.05, 0.005, 0.0005])
    assert intervals.to_steps(c.evals.val.every, spe) == 440


def test_intervals():
    assert intervals.to_steps('2 epochs', 100) == 200
    assert intervals.to_steps('0.5 epoch', 45) == 23
    assert intervals.to_steps('500 steps', 100) == 500 == intervals.to_steps('500', 100)
    assert intervals.to_steps('', 100) == 0 == intervals.to_steps('0', 100)
    assert intervals.to_steps('0.001 epochs', 100) == 1
    for bad in ('2 epoch steps', 'often', '1.5 steps', '-1'):
        with pytest.raises(ValueError, match="e.g. '2 epochs'|whole"):
            intervals.to_steps(bad, 100, what='evals.val.every')


def test_schedule_values_are_finite_for_every_experiment():
    import pathlib

    names = [p.stem for p in pathlib.Path(__file__).parent.parent.joinpath('experiments').glob('*.py')
             if p.stem not in ('__init__', 'default', 'imagenet', 'vgg', 'resnet', 'resnet_cifar10', 'detection',
                               'rcnn', 'video', 'gan')]
    assert len(names) >= 25
    for name in names:
        c = _config(name)
        schedule, total = _schedule(c, 1000)
        values = np.array([float(schedule(s)) for s in (0, total // 2, total - 1)])
        ramp = c.optimizer.warmup_steps > 0 and c.optimizer.warmup_kind == 'linear'  # starts at 0 on purpose
        assert np.all(np.isfinite(values)) and np.all(values[1 if ramp else 0:] > 0), name
        assert isinstance(optim.make_optimizer(c.optimizer, optax.constant_schedule(0.1)),
                          optax.GradientTransformation)
