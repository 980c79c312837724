"""The ImageNet experiment files (AlexNet, ZF Net, VGG): every recipe is well-formed, and AlexNet, ZF Net and
VGG-19 train, checkpoint, evaluate with their test protocol and write results.json through `python -m convnets.main`,
on a tiny ImageNet in the real ILSVRC2012 tar format (tests/fake_imagenet.py) with small-image overrides."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import pytest

from convnets.data import ops
from convnets.tasks import base
from experiments import imagenet
from tests import cli

IMAGENET_EXPERIMENTS = ('alexnet', 'alexnet_one_tower', 'zfnet', 'vgg11', 'vgg11_lrn', 'vgg13', 'vgg16_c', 'vgg16',
                        'vgg19')
MEAN = imagenet.subtract_mean()


@pytest.mark.parametrize('name', IMAGENET_EXPERIMENTS)
def test_recipe_is_well_formed(name):
    """Specs parse into ops, the model builds at 224 with 1000 classes, and the docstring gives the command."""
    module = importlib.import_module(f'experiments.{name}')
    assert f'--config=experiments/{name}.py' in module.__doc__ and 'Paper result' in module.__doc__
    config = module.get_config()
    assert config.data.name == 'imagenet2012' and config.data.eval_split == 'validation'
    views = [v for ev in config.evals.values() for v in ev.views]
    for spec in (config.data.train_preprocess, config.data.eval_preprocess, *views):
        ops.parse(spec)
    model = base.build_model(config.model)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    logits = jax.eval_shape(model.apply, variables, jnp.zeros((1, 224, 224, 3)))
    assert logits.shape == (1, 1000)
    assert config.optimizer.momentum == 0.9


TINY = {
    'vgg19': [
        '--config.model.input_size=32',
        f'--config.data.train_preprocess=decode(3)|random_resize_short(32, 48)|random_crop(32)|flip_lr|'
        f'pca_lighting(0.1)|{MEAN}',
        f'--config.data.eval_preprocess=decode(3)|resize_short(32)|center_crop(32)|{MEAN}',
        f"--config.evals.test.views=('decode(3)|resize_short(64)|center_crop(64)|{MEAN}', "
        f"'decode(3)|resize_short(64)|center_crop(64)|{MEAN}|hflip')",
    ],
    'alexnet': [
        '--config.model.input_size=67',
        f'--config.data.train_preprocess=decode(3)|resize((76, 76))|random_crop(67)|flip_lr|pca_lighting(0.1)|{MEAN}',
        f'--config.data.eval_preprocess=decode(3)|resize((76, 76))|center_crop(67)|{MEAN}',
        f"--config.evals.test.views=('decode(3)|resize((76, 76))|{MEAN}|ten_crop(67)',)",
    ],
    'zfnet': [
        f'--config.data.train_preprocess=decode(3)|resize_short(40)|center_crop(40)|{MEAN}|random_ten_crop(32)',
        f'--config.data.eval_preprocess=decode(3)|resize_short(40)|center_crop(40)|{MEAN}|center_crop(32)',
        f"--config.evals.test.views=('decode(3)|resize_short(40)|center_crop(40)|{MEAN}|ten_crop(32)',)",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(TINY))
def test_experiment_runs_from_the_command_line(tmp_path, imagenet_dir, name):
    data_dir, manual_dir = imagenet_dir
    workdir = str(tmp_path / name)
    cmd = [*cli.main_command(workdir, data_dir, config=f'experiments/{name}.py'),
           f'--config.data.manual_dir={manual_dir}', '--config.batch_size=8', '--config.eval_batch_size=8',
           '--config.num_train_steps=2', '--config.log_every=1', '--config.checkpoint_every=1',
           *TINY[name]]
    proc = cli.run(cmd, num_devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'evals.test at step 2' in proc.stderr
    with open(os.path.join(workdir, 'results.json')) as f:
        results = json.load(f)
    assert results['step'] == 2 and results['num_devices'] == 2
    assert results['eval']['num_examples'] == 8  # The whole fake validation split, once.
    assert 0.0 <= results['eval']['top1'] <= results['eval']['top5'] <= 1.0
    assert results['config']['model']['name'] == name
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']
