"""Shared pieces of the GAN experiments (Goodfellow et al. 2014; DCGAN, Radford et al. 2015): not runnable itself.

Evaluator entries (config.evals.<name>) of the 'gan' task's evaluators:
  parzen_eval    'parzen'  (convnets.evaluate.parzen): Gaussian Parzen-window test log-likelihood (GAN Table 1).
  frechet_eval   'frechet' (convnets.evaluate.frechet): Fréchet distance in a LeNet-5 digits classifier's feature
                 space, the real-vs-real floor and class coverage.
  gan_svm_eval   'gan_svm' (convnets.evaluate.gan_features_svm): D's conv features + L2-SVM (DCGAN Sec. 5.1).
"""

from __future__ import annotations

import numpy as np
from ml_collections import config_dict

# ---------------------------------------------------------------------------------------------------------------
# Evaluator entries (parzen, frechet, gan_svm).
# ---------------------------------------------------------------------------------------------------------------

# goodfeli/adversarial parzen_ll.py: numpy.logspace(--sigma_start -1, --sigma_end 0, num=-c 10).
PARZEN_SIGMAS = tuple(float(s) for s in np.logspace(-1.0, 0.0, 10))


def _entry(kind: str, every: str, at_end: bool, results_key: str) -> config_dict.ConfigDict:
    ev = config_dict.ConfigDict()
    ev.type = kind
    ev.every = every
    ev.at_end = at_end
    ev.results_key = results_key
    return ev


def parzen_eval(*, every: str = '', at_end: bool = True, results_key: str = 'parzen', split: str = '',
                validation_split: str = 'train[50000:]', max_validation_examples: int = 1000,
                num_samples: int = 10_000, sigmas: tuple[float, ...] = PARZEN_SIGMAS, preprocess: str = '',
                batch_size: int = 0, sample_batch_size: int = 0, seed: int = 0) -> config_dict.ConfigDict:
    """A 'parzen' evaluator entry (convnets.evaluate.parzen): log_likelihood, std_error, sigma, num_samples, ...

    every, at_end, results_key   as default.classification_eval.
    split                    the test data; '' : data.eval_split (MNIST: the 10,000 test digits).
    validation_split         chooses sigma; '' : data.train_split. Default: MNIST train 50,000-60,000 (parzen_ll.py's
                             get_valid), of which the first max_validation_examples (its limit_size, 1,000; 0: all).
    num_samples              generator samples, the Parzen centres (the paper: 10,000).
    sigmas                   the window widths tried (parzen_ll.py: numpy.logspace(-1, 0, 10)); one width: no search.
    preprocess               eval spec mapping the data into gan.image_range; '' : data.eval_preprocess.
    batch_size               data rows per call; sample_batch_size: samples per generator call (0: eval_batch_size or
                             batch_size). seed: of the z of the samples (the same z at every evaluation).
    """
    ev = _entry('parzen', every, at_end, results_key)
    ev.split = split
    ev.validation_split = validation_split
    ev.max_validation_examples = max_validation_examples
    ev.num_samples = num_samples
    ev.sigmas = tuple(float(s) for s in sigmas)
    ev.preprocess = preprocess
    ev.batch_size = batch_size
    ev.sample_batch_size = sample_batch_size
    ev.seed = seed
    return ev


def frechet_eval(*, classifier_workdir: str = '', every: str = '', at_end: bool = True, results_key: str = 'frechet',
                 split: str = '', floor_split: str = '', num_samples: int = 1000, max_real_examples: int = 0,
                 classifier_config: str = '', classifier_data_dir: str = '', feature: str = 'F6',
                 classifier_size: int = 28, classifier_pad: int = 2,
                 classifier_range: tuple[float, float] = (-0.1, 1.175), coverage_threshold: float = 0.01,
                 labels: bool = True, preprocess: str = '', batch_size: int = 0, seed: int = 0
                 ) -> config_dict.ConfigDict:
    """A 'frechet' evaluator entry (convnets.evaluate.frechet): fd, fd_floor, fd_ratio, fd_untrained, coverage,
    coverage_real, class_fraction_<k>, max_class_fraction, classifier_top1, num_samples, num_real, num_floor.

    classifier_workdir   a trained digits classifier run (python -m convnets.main --config=experiments/quickstart.py
                         --workdir=...); classifier_config: its config file ('' : experiments/quickstart.py);
                         classifier_data_dir: its TFDS data_dir ('' : data.data_dir). '' on the embedded
                         convnets_digits: the evaluator trains the quickstart LeNet-5 once into
                         <workdir>/digits_classifier (~30 s) and reads it from there.
    split                the held-out real digits; '' : data.eval_split (the first max_real_examples; 0: all).
    floor_split          the real digits of the floor (first num_samples of them); '' : data.train_split.
    num_samples          N, generated samples (z from seed, the same at every evaluation) and floor examples.
    feature              the classifier's sown feature (LeNet-5's penultimate F6).
    classifier_size, classifier_pad, classifier_range   the quickstart eval spec's resize(28)|pad(2)|
                         value_range(-0.1, 1.175), applied to images mapped from gan.image_range to [0, 1].
    coverage_threshold   a class is covered when at least this fraction of the samples is classified as it.
    labels               read the real split's labels ('label') to report classifier_top1.
    preprocess           eval spec of the real digits into gan.image_range; '' : data.eval_preprocess.
    batch_size           images per call (0: eval_batch_size or batch_size).
    """
    ev = _entry('frechet', every, at_end, results_key)
    ev.classifier_workdir = classifier_workdir
    ev.classifier_config = classifier_config
    ev.classifier_data_dir = classifier_data_dir
    ev.split = split
    ev.floor_split = floor_split
    ev.num_samples = num_samples
    ev.max_real_examples = max_real_examples
    ev.feature = feature
    ev.classifier_size = classifier_size
    ev.classifier_pad = classifier_pad
    ev.classifier_range = tuple(float(v) for v in classifier_range)
    ev.coverage_threshold = float(coverage_threshold)
    ev.labels = labels
    ev.preprocess = preprocess
    ev.batch_size = batch_size
    ev.seed = seed
    return ev


def gan_svm_eval(*, every: str = '', at_end: bool = True, results_key: str = 'svm', split: str = '',
                 train_split: str = '', C: float = 1.0, max_train_examples: int = 0,  # noqa: N803 (the SVM's C)
                 pool_grid: int = 4, layers: tuple[str, ...] = (), preprocess: str = '', batch_size: int = 0
                 ) -> config_dict.ConfigDict:
    """A 'gan_svm' evaluator entry (convnets.evaluate.gan_features_svm): DCGAN Sec. 5.1, D's layers max-pooled to a
    pool_grid x pool_grid grid, concatenated, and a linear L2-SVM; top1, top1_error, train_top1, num_examples,
    num_train, feature_dim.

    split            test examples; '' : data.eval_split. train_split: the SVM's examples; '' : data.train_split
                     (the first max_train_examples; 0: all).
    C                LinearSVC's C (the paper gives none; 1.0 is scikit-learn's default).
    pool_grid        the grid side (DCGAN: 4). layers: D's sown layers read; () : every sown conv (4-D) layer.
    preprocess       eval spec of both splits (D's input range, no augmentation); '' : data.eval_preprocess.
    batch_size       images per call (0: eval_batch_size or batch_size).
    """
    ev = _entry('gan_svm', every, at_end, results_key)
    ev.split = split
    ev.train_split = train_split
    ev.C = float(C)
    ev.max_train_examples = max_train_examples
    ev.pool_grid = pool_grid
    ev.layers = tuple(layers)
    ev.preprocess = preprocess
    ev.batch_size = batch_size
    return ev


# ---------------------------------------------------------------------------------------------------------------
# The GAN config (the 'gan' task, convnets/tasks/gan.py) and the papers' recipes.
# ---------------------------------------------------------------------------------------------------------------

DCGAN_WIDTH = 128  # Fig. 1 / the authors' ngf = ndf = 128 at 64x64


def samples_eval(*, every: str = '', at_end: bool = True, results_key: str = 'samples', num_samples: int = 64,
                 interpolations: int = 4, interpolation_steps: int = 10, seed: int = 0) -> config_dict.ConfigDict:
    """A 'samples' evaluator entry (convnets.visualize.samples): a grid of the same `num_samples` noise vectors at
    every evaluation (PNG + TensorBoard) and `interpolations` rows of `interpolation_steps` images walking between
    two noise vectors (DCGAN Fig. 4); pixel_mean, pixel_std, sample_spread, num_samples."""
    ev = _entry('samples', every, at_end, results_key)
    ev.num_samples = num_samples
    ev.interpolations = interpolations
    ev.interpolation_steps = interpolation_steps
    ev.seed = seed
    return ev


def optimizer(*, name: str, learning_rate: float, b1: float = 0.9, momentum: float = 0.0,
              weight_decay: float = 0.0) -> config_dict.ConfigDict:
    """An optimizer section (the schema of experiments/default.py's `optimizer`) for one of the two networks."""
    from experiments import default

    opt = default.get_config().optimizer
    opt.update(dict(name=name, learning_rate=learning_rate, b1=b1, momentum=momentum, weight_decay=weight_decay))
    return opt


def base_config() -> config_dict.ConfigDict:
    """The 'gan' task's sections on top of experiments/default.py; the recipes fill in networks and data."""
    from experiments import default

    c = default.get_config()
    c.task = 'gan'
    c.resources.accelerators_per_node = 1  # small networks, batches of 100 or 128: one GPU
    c.generator = config_dict.ConfigDict({'name': 'dcgan_generator'})
    c.discriminator = config_dict.ConfigDict({'name': 'dcgan_discriminator'})
    c.data.batch_keys = ('image',)  # a GAN trains on images alone; evaluators that need labels read their own
    c.gan = config_dict.ConfigDict(dict(z_dim=100, z_dist='uniform', z_bound=1.0, d_steps=1,
                                        g_loss='non_saturating', image_range=(-1.0, 1.0)))
    c.g_optimizer = optimizer(name='adam', learning_rate=2e-4, b1=0.5)
    c.d_optimizer = optimizer(name='adam', learning_rate=2e-4, b1=0.5)
    c.evals = config_dict.ConfigDict()
    c.evals.samples = samples_eval(every='1 epoch')
    c.optimizer.plateau_metric = ''  # no metric to watch unless a recipe names one (e.g. 'frechet/fd')
    c.divergence_factor = 0.0
    return c


def dcgan_config(image_size: int, channels: int, *, width: int = DCGAN_WIDTH) -> config_dict.ConfigDict:
    """DCGAN (Radford et al. 2015, Sec. 3-4): the networks of convnets/models/dcgan.py at `image_size`, z ~ U(-1, 1)
    of 100 dims, Adam lr 2e-4 beta1 0.5 for both networks, mini-batches of 128, images scaled to [-1, 1] and no
    other augmentation; L2 weight decay 1e-5 added to both gradients, as the authors' scripts do
    (faces/train_uncond_dcgan.py: updates.Adam(..., regularizer=Regularizer(l2=1e-5)); the paper does not say)."""
    c = base_config()
    for opt in (c.g_optimizer, c.d_optimizer):
        opt.weight_decay = 1e-5
    for section in (c.generator, c.discriminator):
        section.update(dict(image_size=image_size, channels=channels, width=width))
    c.generator.z_dim = c.gan.z_dim
    c.batch_size = 128
    c.eval_batch_size = 128
    return c


def dcgan_spec(size: int, *, crop: int = 0) -> str:
    """Images to [-1, 1] at `size` x `size`: the centre `crop` square first (CelebA's faces: the authors' code
    crops 108 px), else the shorter side resized and centre-cropped (LSUN)."""
    square = f'center_crop({crop})|resize({size})' if crop else f'resize_short({size})|center_crop({size})'
    return f'decode|{square}|value_range(-1, 1)'
