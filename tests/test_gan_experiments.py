"""The GAN experiment files build at their papers' sizes and run through `python -m convnets.main` with tiny
overrides on fake MNIST, CelebA, LSUN, ImageNet 32x32 and CIFAR-10 prepared by those datasets' own TFDS builders
(tests/fake_tfds.py) and on the embedded digits; --mode=generate writes what G draws; a SIGKILLed GAN run resumes to
exactly the uninterrupted run; offline preparation errors name the files."""

import concurrent.futures
import importlib
import json
import logging
import os
import re
import signal
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from convnets import tasks
from convnets.data import pipeline
from convnets.tasks import gan
from convnets.train import loop
from tests import cli
from tests.helpers import assert_trees_equal, final_state

RECIPES = {  # experiment (variant) -> (image shape, G params, D params) at the paper's size
    ('gan_mnist', ''): ((28, 28, 1), 2_503_984, 1_231_441),
    ('dcgan_celeba', ''): ((64, 64, 3), 18_885_760, 17_232_768),
    ('dcgan_lsun', ''): ((64, 64, 3), 18_885_760, 17_232_768),
    ('dcgan_imagenet32', ''): ((32, 32, 3), 6_690_688, 4_586_112),
    ('dcgan_cifar10', ''): ((32, 32, 3), 6_690_688, 4_586_112),
    ('dcgan_cifar10', 'train'): ((32, 32, 3), 6_690_688, 4_586_112),
    ('gan_quickstart', ''): ((32, 32, 1), 100 * 1200 + 1200 + 1200 * 1200 + 1200 + 1200 * 1024 + 1024,
                             1024 * 1200 + 1200 + 240 * 1200 + 1200 + 240 + 1),
}


def _config(name, variant=''):
    return importlib.import_module(f'experiments.{name}').get_config(*([variant] if variant else []))


@pytest.mark.parametrize('name,variant', sorted(RECIPES))
def test_every_gan_recipe_builds_at_its_size(name, variant):
    config = _config(name, variant)
    task = tasks.get(config.task)
    task.validate(config)
    nets = task.build_nets(config)
    shape, g_count, d_count = RECIPES[name, variant]
    z = jnp.zeros((2, config.gan.z_dim))
    g_vars = jax.eval_shape(lambda: nets[gan.GENERATOR].init(jax.random.key(0), z, train=False))
    images = jax.eval_shape(lambda v: nets[gan.GENERATOR].apply(v, z, train=False), g_vars)
    assert images.shape == (2, *shape)
    d_vars = jax.eval_shape(lambda: nets[gan.DISCRIMINATOR].init(jax.random.key(0), jnp.zeros(images.shape)))
    count = lambda v: sum(x.size for x in jax.tree.leaves(v['params']))  # noqa: E731
    if g_count:
        assert (count(g_vars), count(d_vars)) == (g_count, d_count)


TINY_DCGAN = ('--config.generator.width=4', '--config.discriminator.width=4')
TINY = ('--config.batch_size=8', '--config.eval_batch_size=8', '--config.num_train_steps=2', '--config.log_every=1',
        '--config.checkpoint_every=1')
SAMPLES = ('--config.evals.samples.num_samples=4', '--config.evals.samples.interpolations=1',
           '--config.evals.samples.interpolation_steps=3')
FAKE = {  # TFDS dataset -> examples per split (prepared by the dataset's own builder, tests/fake_tfds.py)
    'mnist': {'train': 16, 'test': 8}, 'celeb_a': {'train': 8, 'validation': 8, 'test': 8},
    'lsun/bedroom': {'train': 8, 'validation': 8}, 'imagenet_resized/32x32': {'train': 8, 'validation': 8},
    'cifar10': {'train': 16, 'test': 8},
}


@pytest.fixture(scope='module')
def fake_data(tmp_path_factory) -> str:
    from tests import fake_tfds

    data_dir = str(tmp_path_factory.mktemp('tfds_gan'))
    for name, sizes in FAKE.items():
        fake_tfds.prepare(name, data_dir, sizes)
    return data_dir


def _main(workdir, data_dir, config, *overrides, mode='train'):
    proc = cli.run(cli.main_command(str(workdir), data_dir, *TINY, *overrides, f'--mode={mode}', config=config),
                   num_devices=2, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_gan_mnist_runs_through_main_with_its_parzen_evaluation(tmp_path, fake_data):
    out = _main(tmp_path / 'gan_mnist', fake_data, 'experiments/gan_mnist.py', *SAMPLES,
                '--config.data.train_split=train[:12]',  # the recipe's train[:50000], of the 16 fake digits
                '--config.generator.hidden=(8, 8)', '--config.discriminator.hidden=(8, 8)',
                '--config.evals.parzen.num_samples=16', '--config.evals.parzen.sample_batch_size=8',
                '--config.evals.parzen.validation_split=train[:8]', '--config.evals.parzen.sigmas=(0.2, 0.5)')
    assert out['step'] == 2 and out['parzen']['sigma'] in (0.2, 0.5) and np.isfinite(out['parzen']['log_likelihood'])
    assert out['parzen']['num_examples'] == 8 and out['samples']['num_samples'] == 4


@pytest.mark.slow
@pytest.mark.parametrize('name', ['dcgan_celeba', 'dcgan_lsun'])
def test_dcgan_recipes_run_through_main(tmp_path, fake_data, name):
    """CelebA's 218x178 faces and LSUN's images of any size become 64x64 in [-1, 1] for Fig. 1's networks."""
    out = _main(tmp_path / name, fake_data, f'experiments/{name}.py', *TINY_DCGAN, *SAMPLES)
    assert out['step'] == 2 and out['samples']['num_samples'] == 4 and out['samples']['pixel_std'] > 0
    assert -1.0 <= out['samples']['pixel_mean'] <= 1.0  # tanh outputs
    assert sorted(os.listdir(tmp_path / name / 'samples')) == ['grid_00000002.png', 'interpolation_00000002.png']
    from PIL import Image

    with Image.open(tmp_path / name / 'samples' / 'grid_00000002.png') as grid:  # 2 x 2 tiles of 64 px, 1 px gaps
        assert grid.size == (2 * 64 + 3, 2 * 64 + 3)


@pytest.mark.slow
def test_dcgan_imagenet32_features_svm_on_cifar10_through_main(tmp_path, fake_data):
    """The paper's protocol: a DCGAN trained on ImageNet 32x32, then its D's 28,672-feature layout (here at width 4:
    16 * (4 + 4 + 8 + 8 + 16 + 16)) and an L2-SVM on CIFAR-10 read from that run's checkpoint with --mode=eval;
    and the ':train' variant trained on CIFAR-10 itself."""
    run = tmp_path / 'imagenet32'
    _main(run, fake_data, 'experiments/dcgan_imagenet32.py', *TINY_DCGAN, *SAMPLES)
    svm = _main(run, fake_data, 'experiments/dcgan_cifar10.py', *TINY_DCGAN, mode='eval')
    assert svm['svm']['feature_dim'] == 16 * (4 + 4 + 8 + 8 + 16 + 16) and svm['svm']['num_train'] == 16
    assert svm['svm']['num_examples'] == 8 and 'samples' not in svm
    with open(run / 'eval_results.json') as f:
        assert json.load(f)['svm'] == svm['svm']
    trained = _main(tmp_path / 'cifar10', fake_data, 'experiments/dcgan_cifar10.py:train', *TINY_DCGAN, *SAMPLES)
    assert trained['svm']['num_train'] == 16


STEPS = 6  # the run kills itself once step 2's checkpoint is durable
QUICK = ['--config.generator.hidden=(8, 8)', '--config.discriminator.hidden=(8, 8)', '--config.batch_size=8',
         '--config.eval_batch_size=8', f'--config.num_train_steps={STEPS}', '--config.checkpoint_every=2',
         '--config.log_every=2', '--config.evals.frechet.every=', '--config.evals.frechet.at_end=False',
         '--config.evals.samples.every=', '--config.evals.samples.num_samples=4',
         '--config.optimizer.plateau_metric=']


def _tiny_quickstart(digits_dir: str) -> ConfigDict:
    from experiments import gan_quickstart

    c = gan_quickstart.get_config()
    c.data.data_dir = digits_dir
    c.generator.hidden = c.discriminator.hidden = (8, 8)
    c.batch_size = c.eval_batch_size = 8
    c.num_train_steps, c.checkpoint_every, c.log_every = STEPS, '2', '2'
    c.evals.frechet.every, c.evals.frechet.at_end = '', False
    c.evals.samples.every, c.evals.samples.num_samples = '', 4
    c.optimizer.plateau_metric = ''
    return c


# convnets.main, SIGKILLed by itself once the checkpoint of step KILL_AT is durable (a deterministic point).
_KILLED = '''
import os, runpy, signal, sys
from convnets.train import checkpoint
save = checkpoint.Checkpointer.save
def save_then_die(self, step, state, **kw):
    saved = save(self, step, state, **kw)
    if step == int(os.environ['KILL_AT']):
        self.wait()
        os.kill(os.getpid(), signal.SIGKILL)
    return saved
checkpoint.Checkpointer.save = save_then_die
sys.argv[0] = 'convnets.main'
runpy.run_module('convnets.main', run_name='__main__', alter_sys=True)
'''


@pytest.mark.slow
def test_quickstart_resumes_exactly_after_sigkill_and_generates(tmp_path, digits_dir, caplog):
    """A command-line GAN run killed after its first checkpoint, resumed by the same loop, equals the run that was
    never interrupted (both networks and both optimiser states; D's dropout masks follow the step); then
    --mode=generate writes N samples that are G's images of the z it saves."""
    killed, straight = str(tmp_path / 'killed'), str(tmp_path / 'straight')
    cmd = [sys.executable, '-c', _KILLED, *cli.main_command(killed, digits_dir, *QUICK,
                                                            config='experiments/gan_quickstart.py')[3:]]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        env = {**cli.env(8), 'KILL_AT': '2'}
        killing = pool.submit(subprocess.run, cmd, cwd=cli.ROOT, env=env, capture_output=True, text=True,
                              timeout=600)
        loop.train_and_evaluate(_tiny_quickstart(digits_dir), straight)
        proc = killing.result()
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    with caplog.at_level(logging.INFO, logger='absl'):
        loop.train_and_evaluate(_tiny_quickstart(digits_dir), killed)
    restored = re.search(r'Restored checkpoint at step (\d+)', caplog.text)
    assert restored and 0 < int(restored.group(1)) < STEPS, caplog.text[-3000:]
    assert_trees_equal(final_state(killed)['nets'], final_state(straight)['nets'])

    out = cli.run(cli.main_command(straight, digits_dir, *QUICK, '--mode=generate', '--num_samples=10',
                                   config='experiments/gan_quickstart.py'), num_devices=1)
    assert out.returncode == 0, out.stderr[-3000:]
    written = json.loads(out.stdout.strip().splitlines()[-1])
    assert written['step'] == STEPS and written['num_samples'] == 10
    saved = np.load(written['npz'])
    assert saved['images'].shape == (10, 32, 32, 1) and saved['images'].dtype == np.uint8
    nets, state = loop.restore_for_inference(_tiny_quickstart(digits_dir), straight, devices=jax.devices()[:1])
    images = nets[gan.GENERATOR].apply(state.nets[gan.GENERATOR].eval_variables, jnp.asarray(saved['z']),
                                       train=False)
    expected = np.round(np.clip(np.asarray(images, np.float64), 0, 1) * 255)  # the MLP GAN draws in [0, 1]
    assert np.abs(saved['images'].astype(np.float64) - expected).max() <= 1
    assert os.path.getsize(written['grid']) > 0


def test_offline_errors_name_the_files_to_place(tmp_path):
    data = ConfigDict({'name': 'celeb_a', 'data_dir': str(tmp_path), 'manual_dir': None, 'download': False})
    with pytest.raises(FileNotFoundError, match='img_align_celeba.zip') as e:
        pipeline.get_builder(data)
    assert str(tmp_path / 'downloads' / 'manual') in str(e.value)
    data.name = 'lsun/bedroom'
    with pytest.raises(FileNotFoundError, match='bedroom_train_lmdb.zip') as e:
        pipeline.get_builder(data)
    assert 'kitchen' not in str(e.value)
    data.download = True
    if importlib.util.find_spec('lmdb') is None:
        with pytest.raises(ModuleNotFoundError, match='pip install lmdb'):
            pipeline.get_builder(data)


def test_samples_interpolation_walks_between_two_noise_vectors():
    from convnets.visualize import samples

    gan_config = ConfigDict(dict(z_dim=3, z_dist='uniform', z_bound=1.0))
    walk = np.asarray(samples.interpolation_latents(gan_config, jax.random.PRNGKey(0), rows=2, steps=5))
    ends = np.asarray(gan.latents(gan_config, jax.random.PRNGKey(0), 4)).reshape(2, 2, 3)
    rows = walk.reshape(2, 5, 3)
    np.testing.assert_allclose(rows[:, 0], ends[:, 0], rtol=1e-6)
    np.testing.assert_allclose(rows[:, -1], ends[:, 1], rtol=1e-6)
    np.testing.assert_allclose(rows[:, 2], ends.mean(axis=1), rtol=1e-5)
    tiles = np.full((10, 4, 4, 1), 7, np.uint8)
    assert samples.grid(tiles, cols=5, scale=2).shape == (2 * 8 + 3, 5 * 8 + 6, 1)
