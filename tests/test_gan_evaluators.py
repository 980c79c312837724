"""The GAN evaluators: the Parzen-window log-likelihood (convnets/evaluate/parzen.py), the Fréchet distance in a
LeNet-5's feature space with its floor and class coverage (frechet.py), and DCGAN's discriminator features + L2-SVM
(gan_features_svm.py), checked against direct numpy / scipy computations and run end to end on the embedded digits
with a tiny stand-in generator and discriminator."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
import scipy.stats
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline
from convnets.evaluate import frechet, gan_features_svm, parzen
from convnets.tasks import gan
from convnets.tasks.base import EvalContext
from convnets.train.state import NetState, TrainState
from experiments import default
from experiments import gan as gan_experiments


def test_parzen_log_likelihood_equals_the_mixture_of_gaussians():
    rng = np.random.default_rng(0)
    mu, x = rng.normal(size=(7, 3)), rng.normal(size=(5, 3))
    sigmas = np.array([0.3, 1.0, 2.5])
    got = np.asarray(jax.jit(parzen.log_likelihoods)(x, mu, sigmas))
    # Direct: log of the mean over the 7 centres of the product of per-dimension normal densities.
    want = np.array([[np.log(np.mean([np.prod(scipy.stats.norm.pdf(xi, m, s)) for m in mu])) for s in sigmas]
                     for xi in x])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # Far points (underflow of every density in float32) stay finite: the logsumexp.
    far = np.asarray(parzen.log_likelihoods(x + 50.0, mu, np.array([0.1])))
    assert np.all(np.isfinite(far)) and np.all(far < -1e4)


def test_sigma_selection_takes_the_best_validation_mean():
    rng = np.random.default_rng(1)
    samples = rng.normal(scale=0.5, size=(200, 2))
    valid = rng.normal(scale=0.5, size=(100, 2))
    grid = tuple(np.logspace(-2, 1, 7))
    lls = np.asarray(parzen.log_likelihoods(valid, samples, np.asarray(grid)))
    sigma, index = parzen.select_sigma(grid, lls)
    means = [np.mean(scipy.special.logsumexp(scipy.stats.norm.logpdf(valid[:, None], samples[None], s).sum(-1),
                                             axis=1) - np.log(len(samples))) for s in grid]
    assert index == int(np.argmax(means)) and sigma == grid[index]
    assert 0 < index < len(grid) - 1  # an interior optimum: too narrow and too wide windows both lose
    assert gan_experiments.PARZEN_SIGMAS == tuple(np.logspace(-1, 0, 10))  # parzen_ll.py's grid


def _reference_fd(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance with Tr((S1 S2)^1/2) = sum of sqrt(eig(S1^1/2 S2 S1^1/2)) (symmetric, via eigh)."""
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.sum(np.sqrt(np.clip(inner, 0, None))))


def test_frechet_distance_equals_a_reference():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(250, 6)) @ rng.normal(size=(6, 6)) + 0.5
    fd = frechet.feature_distance(a, b)
    np.testing.assert_allclose(fd, _reference_fd(a, b), rtol=1e-8)
    np.testing.assert_allclose(frechet.feature_distance(b, a), fd, rtol=1e-8)  # symmetric
    assert abs(frechet.feature_distance(a, a)) < 1e-8  # identical sets
    # 1-d Gaussians: (m1 - m2)^2 + (s1 - s2)^2.
    np.testing.assert_allclose(frechet.frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]),
                                                        np.array([[9.0]])), 4.0 + 1.0, rtol=1e-12)
    # Fewer rows than dimensions (singular covariances): finite, and close to the reference.
    c, d = rng.normal(size=(5, 8)), rng.normal(size=(6, 8))
    np.testing.assert_allclose(frechet.feature_distance(c, d), _reference_fd(c, d), rtol=1e-3)
    with pytest.raises(ValueError, match='different shapes'):
        frechet.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_class_coverage_counts_classes_above_the_threshold():
    predictions = np.array([0] * 50 + [1] * 30 + [2] * 19 + [3])  # class 3: 1% of 100; classes 4-9: none
    coverage, fractions = frechet.class_coverage(predictions, 10, 0.01)
    assert coverage == 0.4
    np.testing.assert_allclose(fractions, [0.5, 0.3, 0.19, 0.01, 0, 0, 0, 0, 0, 0])
    assert frechet.class_coverage(predictions, 10, 0.02)[0] == 0.3


def test_classifier_input_is_the_quickstart_eval_spec():
    import tensorflow as tf

    from convnets.data import ops

    pixels = np.random.default_rng(3).integers(0, 256, size=(32, 32, 1)).astype(np.uint8)
    spec = ops.parse('resize(28)|pad(2)|value_range(-0.1, 1.175)')
    want = spec({'image': tf.constant(pixels)}, tf.constant([0, 0], tf.int64))['image'].numpy()
    for lo, hi in ((-1.0, 1.0), (0.0, 1.0)):
        image = lo + pixels[None].astype(np.float32) / 255.0 * (hi - lo)  # the pixels in the generator's range
        got = np.asarray(frechet.to_classifier_input(jnp.asarray(image), (lo, hi)))[0]
        np.testing.assert_allclose(got, want, atol=2e-5)
        assert got.shape == (32, 32, 1)


def test_grid_max_pool():
    x = np.random.default_rng(4).normal(size=(2, 16, 16, 3)).astype(np.float32)
    want = x.reshape(2, 4, 4, 4, 4, 3).max(axis=(2, 4))  # the authors' non-overlapping 4x4 windows
    np.testing.assert_array_equal(gan_features_svm.grid_max_pool(jnp.asarray(x), 4), want)
    y = x[:, :6, :6]  # 6 -> bins [0, 2), [1, 3), [3, 5), [4, 6)
    got = np.asarray(gan_features_svm.grid_max_pool(jnp.asarray(y), 4))
    bins = [(0, 2), (1, 3), (3, 5), (4, 6)]
    for i, (r0, r1) in enumerate(bins):
        for j, (c0, c1) in enumerate(bins):
            np.testing.assert_array_equal(got[:, i, j], y[:, r0:r1, c0:c1].max(axis=(1, 2)))
    z = x[:, :2, :2]  # smaller than the grid: each cell fills 2x2 bins
    np.testing.assert_array_equal(gan_features_svm.grid_max_pool(jnp.asarray(z), 4),
                                  np.repeat(np.repeat(z, 2, axis=1), 2, axis=2))


class _TinyG(nn.Module):
    """Stand-in generator (GAN.md conventions): z [B, z_dim] -> tanh images [B, 32, 32, 1]."""

    @nn.compact
    def __call__(self, z, train: bool = False):
        return jnp.tanh(nn.Dense(32 * 32)(z)).reshape((z.shape[0], 32, 32, 1))


class _TinyD(nn.Module):
    """Stand-in discriminator: two stride-2 convs sown as conv1 (16x16x4) and conv2 (8x8x8), a 2-D 'hidden' layer
    (not a conv feature), and one logit per image."""

    @nn.compact
    def __call__(self, x, train: bool = False):
        h = nn.leaky_relu(nn.Conv(4, (3, 3), strides=2)(x), 0.2)
        self.sow('intermediates', 'conv1', h)
        h = nn.leaky_relu(nn.Conv(8, (3, 3), strides=2)(h), 0.2)
        self.sow('intermediates', 'conv2', h)
        h = nn.Dense(5)(h.reshape((h.shape[0], -1)))
        self.sow('intermediates', 'hidden', h)
        return nn.Dense(1)(h)[:, 0]


def test_discriminator_features_dimension():
    d = _TinyD()
    x = jax.ShapeDtypeStruct((3, 32, 32, 1), jnp.float32)
    variables = jax.eval_shape(d.init, jax.random.PRNGKey(0), x)

    def shape(layers):
        return jax.eval_shape(lambda v, x: gan_features_svm.discriminator_features(d, v, x, layers, 4), variables,
                              x).shape

    assert shape(()) == (3, 16 * (4 + 8))  # every sown conv layer, 4x4 grid; the 2-D 'hidden' layer is not one
    assert shape(('conv2', 'hidden')) == (3, 128 + 5)  # named 2-D layers are taken as they are
    with pytest.raises(ValueError, match="no 'conv9'"):
        shape(('conv9',))


def _gan_config(digits_dir: str) -> ConfigDict:
    c = default.get_config()
    c.task = 'gan'
    c.data.data_dir = digits_dir
    c.data.train_preprocess = c.data.eval_preprocess = 'decode|value_range(-1, 1)'
    c.batch_size = 40
    c.gan = ConfigDict({'z_dim': 8, 'z_dist': 'uniform', 'image_range': (-1.0, 1.0), 'd_steps': 1,
                        'g_loss': 'non_saturating'})
    return c


def _state(g, d) -> tuple[TrainState, dict]:
    gv = g.init(jax.random.PRNGKey(1), jnp.zeros((1, 8)))
    dv = d.init(jax.random.PRNGKey(2), jnp.zeros((1, 32, 32, 1)))
    nets = {gan.GENERATOR: NetState(gv['params'], {}, {}), gan.DISCRIMINATOR: NetState(dv['params'], {}, {})}
    return TrainState(step=jnp.zeros((), jnp.int32), rng=jax.random.PRNGKey(0), nets=nets), gv


@pytest.mark.slow
def test_evaluators_end_to_end_on_the_digits(digits_dir, tmp_path):
    config = _gan_config(digits_dir)
    g, d = _TinyG(), _TinyD()
    state, gv = _state(g, d)
    mesh = parallel.make_mesh()
    ctx = EvalContext(config=config, name='x', mesh=mesh, nets={gan.GENERATOR: g, gan.DISCRIMINATOR: d})
    state = jax.device_put(state, parallel.replicated(mesh))

    # Parzen: equal to the direct computation on the same samples and test digits.
    ev = gan_experiments.parzen_eval(validation_split='train[-40:]', max_validation_examples=24, num_samples=50,
                                     sigmas=(0.2, 0.5, 1.0))
    out = parzen.make_evaluator(ctx, ev)(state)
    samples = np.asarray(g.apply(gv, gan.latents(config.gan, jax.random.PRNGKey(0), 50))).reshape((50, -1))

    def read(split):
        data = parzen.data_config(config, split, '')
        return np.concatenate([b['image'][b['mask'] > 0] for b in pipeline.eval_batches(data, global_batch_size=40)])

    valid, test = read('train[-40:]')[:24].reshape((24, -1)), read('test').reshape((360, -1))

    def lls(x, s):
        d2 = ((x[:, None, :].astype(np.float64) - samples[None]) ** 2).sum(-1)
        return scipy.special.logsumexp(-d2 / (2 * s * s), axis=1) - np.log(50) - x.shape[1] * np.log(s * np.sqrt(2 *
                                                                                                                np.pi))

    best = max((0.2, 0.5, 1.0), key=lambda s: lls(valid, s).mean())
    want = lls(test, best)
    assert out['sigma'] == best and out['num_examples'] == 360 and out['num_validation'] == 24
    np.testing.assert_allclose(out['log_likelihood'], want.mean(), rtol=1e-4)
    np.testing.assert_allclose(out['std_error'], want.std() / np.sqrt(360), rtol=1e-3)

    # Fréchet: a LeNet-5 trained for a few steps (still on its initial plateau, ~10% top-1: the quickstart needs a few
    # hundred steps; its input mapping is checked against the eval spec above); real digits are nearer each other
    # than the untrained generator's noise is to them.
    classifier = str(tmp_path / 'lenet')
    frechet.train_digits_classifier(classifier, steps=20, data_dir=digits_dir)
    ev = gan_experiments.frechet_eval(classifier_workdir=classifier, num_samples=64)
    out = frechet.make_evaluator(ctx, ev)(state)
    assert all(np.isfinite(v) for v in out.values())
    assert (out['num_samples'], out['num_real'], out['num_floor']) == (64, 360, 64)
    assert 0 < out['fd_floor'] < out['fd'] and out['fd_ratio'] > 1 and out['fd_untrained'] > out['fd_floor']
    np.testing.assert_allclose(sum(out[f'class_fraction_{k}'] for k in range(10)), 1.0, rtol=1e-6)
    assert 0 < out['coverage'] <= 1 and 0 <= out['classifier_top1'] <= 1

    # DCGAN's SVM on D's features: every sown conv layer pooled to 4x4.
    ev = gan_experiments.gan_svm_eval(max_train_examples=200)
    out = gan_features_svm.make_evaluator(ctx, ev)(state)
    assert out['feature_dim'] == 16 * (4 + 8) and out['num_train'] == 200 and out['num_examples'] == 360
    assert out['top1'] > 0.3  # random conv features of digits: far above chance (0.1)
