"""Every experiment file trains, checkpoints, evaluates and writes results.json with tiny overrides.

Datasets that need a download (MNIST, CIFAR-10) run on `tfds.testing.mock_data`: random images with the real
dataset's shapes, so what is shown is that the recipe's pipeline, model and optimiser fit together.
"""

import importlib
import json
import os

import jax
import pytest
import tensorflow_datasets as tfds

from convnets.train import checkpoint, loop

EXPERIMENTS = {
    'quickstart': None,
    'lenet5_mnist': (32, 32, 1),
    'convnet_cifar10': (32, 32, 3),
}


@pytest.fixture
def synchronous_saves(monkeypatch):
    """mock_data swaps the file system for a fake one while it builds a dataset; an asynchronous save running
    at that moment would write into the fake one. Real runs have no such patching."""
    save = checkpoint.Checkpointer.save

    def save_and_wait(self, *args, **kwargs):
        saved = save(self, *args, **kwargs)
        self.wait()
        return saved

    monkeypatch.setattr(checkpoint.Checkpointer, 'save', save_and_wait)


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(EXPERIMENTS))
def test_experiment_runs(tmp_path, digits_dir, synchronous_saves, name):
    config = importlib.import_module(f'experiments.{name}').get_config()
    config.data.data_dir = digits_dir
    config.batch_size = 16
    config.num_train_steps = 2
    config.log_every = '1'
    config.checkpoint_every = '1'
    workdir = str(tmp_path / name)
    if EXPERIMENTS[name] is None:
        results = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:2])
    else:
        with tfds.testing.mock_data(num_examples=48):
            results = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:2])
    assert results['step'] == 2
    assert 0.0 <= results['eval']['top1'] <= results['eval']['top5'] <= 1.0
    with open(os.path.join(workdir, 'results.json')) as f:
        assert json.load(f)['config']['data']['name'] == config.data.name
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['1', '2']


def test_experiment_docstrings_name_the_command():
    for name in EXPERIMENTS:
        module = importlib.import_module(f'experiments.{name}')
        assert f'--config=experiments/{name}.py' in module.__doc__
