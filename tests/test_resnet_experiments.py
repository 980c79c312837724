"""The ResNet experiment files (He et al. 2015): every recipe is well-formed and runs through
`python -m convnets.main` with tiny overrides; a CIFAR ResNet-20 learns on real 32x32x3 data.

Smoke runs keep each recipe (pipeline ops, optimiser, schedule, evaluation protocol) and shrink only what CPU time
forces: image size, batch, steps, and for the deep nets the blocks per stage (full-depth architectures are checked
with jax.eval_shape in tests/test_resnet.py and below)."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.data import ops
from convnets.tasks import base
from convnets.train import loop
from experiments import imagenet
from experiments.resnet_cifar10 import CIFAR10_MEAN
from tests import cli
from tests.helpers import tiny_config

IMAGENET = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'plain18', 'plain34')
CIFAR = ('resnet20', 'resnet32', 'resnet44', 'resnet56', 'resnet110')
PARAMS = {'resnet18': 11_689_512, 'resnet34': 21_797_672, 'resnet50': 25_557_032, 'resnet101': 44_549_160,
          'resnet152': 60_192_808}
MEAN = imagenet.subtract_mean()
# Through the command line: one bottleneck net at its real depth and one plain net (the others differ only in
# model.stage_sizes, which the eval_shape builds here and in tests/test_sweeps_defined.py check at full size), and the
# CIFAR nets without and with the 110-layer warm-up.
IMAGENET_CLI = ('resnet50', 'plain34')
CIFAR_CLI = ('resnet20', 'resnet110')


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize('name', IMAGENET + tuple(f'{n}_cifar10' for n in CIFAR))
def test_recipe_is_well_formed(name):
    module = importlib.import_module(f'experiments.{name}')
    assert f'--config=experiments/{name}.py' in module.__doc__ and 'Paper result' in module.__doc__
    config = module.get_config()
    views = [v for ev in config.evals.values() for v in ev.views]
    for spec in (config.data.train_preprocess, config.data.eval_preprocess, *views):
        ops.parse(spec)
    size = 32 if name.endswith('cifar10') else 224
    model = base.build_model(config.model)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, size, size, 3)))
    assert jax.eval_shape(model.apply, variables, jnp.zeros((1, size, size, 3))).shape == (
        1, config.model.num_classes)
    if name in PARAMS:
        assert _count(variables['params']) == PARAMS[name]
    assert config.optimizer.momentum == 0.9


def _run(tmp_path, config_name, data_dir, *overrides):
    workdir = str(tmp_path / config_name)
    cmd = [*cli.main_command(workdir, data_dir, config=f'experiments/{config_name}.py'), '--config.batch_size=8',
           '--config.eval_batch_size=8', '--config.num_train_steps=2', '--config.log_every=1', *overrides]
    proc = cli.run(cmd, num_devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, 'results.json')) as f:
        results = json.load(f)
    assert results['step'] == 2 and results['config']['model']['name'] == config_name.removesuffix('_cifar10')
    return results, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('name', IMAGENET_CLI)
def test_imagenet_experiment_runs_from_the_command_line(tmp_path, imagenet_dir, name):
    data_dir, manual_dir = imagenet_dir
    small = [] if name in ('resnet18', 'plain18', 'resnet50') else ['--config.model.stage_sizes=(1, 1, 1, 1)']
    results, log = _run(
        tmp_path, name, data_dir, f'--config.data.manual_dir={manual_dir}', *small,
        f'--config.data.train_preprocess=decode(3)|random_resize_short(32, 60)|random_crop(32)|flip_lr|'
        f'pca_lighting(0.1)|{MEAN}',
        f'--config.data.eval_preprocess=decode(3)|resize_short(32)|center_crop(32)|{MEAN}',
        f"--config.evals.test.views=('decode(3)|resize_short(36)|{MEAN}|ten_crop(32)',)")
    assert results['eval']['num_examples'] == 8 and 'evals.test at step 2' in log


@pytest.mark.slow
@pytest.mark.parametrize('name', CIFAR_CLI)
def test_cifar_experiment_runs_from_the_command_line(tmp_path, digits_dir, name):
    """On the embedded digits turned into 32x32x3 images (CIFAR-10 is not downloadable here)."""
    small = [] if name == 'resnet20' else ['--config.model.depth=8']
    results, _ = _run(
        tmp_path, f'{name}_cifar10', digits_dir, '--config.data.name=convnets_digits', *small,
        f'--config.data.train_preprocess=decode|to_rgb|random_crop(32, pad=4)|flip_lr|subtract_mean({CIFAR10_MEAN})',
        f'--config.data.eval_preprocess=decode|to_rgb|subtract_mean({CIFAR10_MEAN})')
    assert results['eval']['num_examples'] == 360


@pytest.mark.slow
def test_cifar_resnet20_learns(tmp_path, digits_dir):
    """ResNet-20 with the CIFAR recipe (option A, BN, momentum, wd 1e-4) on 32x32x3 digits lowers its loss."""
    cifar = importlib.import_module('experiments.resnet20_cifar10').get_config()
    config = tiny_config(digits_dir, **cifar.model.to_dict())
    config.optimizer = cifar.optimizer
    config.optimizer.boundaries = (1000, 2000)
    config.data.train_preprocess = f'decode|to_rgb|random_crop(32, pad=4)|flip_lr|subtract_mean({CIFAR10_MEAN})'
    config.data.eval_preprocess = f'decode|to_rgb|subtract_mean({CIFAR10_MEAN})'
    config.batch_size = 32
    config.num_train_steps = 100
    config.log_every = '10'
    results = loop.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices()[:2])
    # From ln(10) = 2.30 at the start (uniform predictions) to 0.63 measured over steps 91-100.
    assert results['train']['loss'] < 0.5 * np.log(10)
    assert results['train']['top1'] > 0.6
