"""The GoogLeNet experiment files: recipe, auxiliary-loss weighting on the real network, and runs through
`python -m convnets.main` on the fake ILSVRC2012 with small crops (the network needs >= 79 pixels)."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convnets import models, parallel
from convnets.data import device_ops, ops
from convnets.tasks import base, classification
from experiments import imagenet
from tests import cli

MEAN = imagenet.subtract_mean()


@pytest.mark.parametrize('name,aux', [('googlenet', True), ('googlenet_no_aux', False)])
def test_recipe(name, aux):
    module = importlib.import_module(f'experiments.{name}')
    assert f'--config=experiments/{name}.py' in module.__doc__ and 'Paper result' in module.__doc__
    c = module.get_config()
    for spec in (c.data.train_preprocess, c.data.eval_preprocess, *(v for ev in c.evals.values() for v in ev.views)):
        ops.parse(spec)
    assert 'inception_crop(224)' in c.data.train_preprocess and 'photometric_distort' in c.data.device_preprocess
    device_ops.parse(c.data.device_preprocess)
    assert c.ema_decay > 0 and c.aux_loss_weight == (0.3 if aux else 0.0)
    variables = jax.eval_shape(base.build_model(c.model).init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    assert ('aux1_layer' in variables['params']) == aux


@pytest.mark.slow
def test_auxiliary_heads_weigh_0_3_in_the_training_loss():
    model = models.get_model('googlenet', num_classes=10)
    rng = np.random.default_rng(0)
    batch = {'image': rng.normal(size=(2, 96, 96, 3)).astype(np.float32), 'label': np.array([3, 7], np.int32)}
    tx = optax.sgd(0.0)
    state = classification.init_state(model, tx, 0, (96, 96, 3))
    par = parallel.Parallel(parallel.make_mesh(jax.devices()[:1]))
    step = par.compile(classification.make_train_step(model, tx, optax.constant_schedule(0.0), axis_name=parallel.AXIS,
                                                      loss_is_global=True, aux_loss_weight=0.3), donate=False)
    _, metrics = step(state, par.shard_batch(batch))
    dropout_rng = jax.random.fold_in(jax.random.fold_in(state.rng, 0), 0)  # The step's own dropout key.
    logits, aux = model.apply(state.variables, batch['image'], train=True, rngs={'dropout': dropout_rng},
                              mutable=['aux_logits'])
    ce = lambda z: float(jnp.mean(classification.cross_entropy(z, batch['label'])))
    heads = [ce(aux['aux_logits'][k][0]) for k in ('aux1', 'aux2')]
    assert float(metrics['main_loss']) == pytest.approx(ce(logits), rel=1e-5)
    assert float(metrics['loss']) == pytest.approx(ce(logits) + 0.3 * sum(heads), rel=1e-5)
    assert 'aux_logits' not in model.apply(state.variables, batch['image'], train=False, mutable=['aux_logits'])[1]


@pytest.mark.slow
@pytest.mark.parametrize('name', ['googlenet', 'googlenet_no_aux'])
def test_experiment_runs_from_the_command_line(tmp_path, imagenet_dir, name):
    data_dir, manual_dir = imagenet_dir
    workdir = str(tmp_path / name)
    cmd = [*cli.main_command(workdir, data_dir, config=f'experiments/{name}.py'),
           f'--config.data.manual_dir={manual_dir}', '--config.batch_size=4', '--config.eval_batch_size=4',
           '--config.num_train_steps=2', '--config.log_every=1',
           '--config.data.train_preprocess=decode(3)|inception_crop(96)|flip_lr',  # + the recipe's device ops
           f'--config.data.eval_preprocess=decode(3)|resize_short(100)|center_crop(96)|{MEAN}',
           f"--config.evals.test.views=('decode(3)|{MEAN}|googlenet_crops(96, 100)',)"]
    proc = cli.run(cmd, num_devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, 'results.json')) as f:
        results = json.load(f)
    assert results['step'] == 2 and results['eval']['num_examples'] == 8
    assert results['config']['aux_loss_weight'] == (0.3 if name == 'googlenet' else 0.0)
    assert ('main_loss' in results['train']) and (results['train']['loss'] > results['train']['main_loss']) == (
        name == 'googlenet')
