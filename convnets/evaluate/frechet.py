"""The 'frechet' evaluator: a sample-quality number that needs no download — the Fréchet distance between generated
and held-out real digits in the feature space of the project's own LeNet-5 digits classifier, with the real-vs-real
distance at the same N as its floor, and the class coverage of the samples.

The distance. Features of two sets are summarised by their means and covariances (np.cov, ddof = 1) and compared as
Gaussians (the Fréchet / 2-Wasserstein distance; Heusel et al. 2017 use it on Inception features as "FID"):
    d^2 = ||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)),
the matrix square root by scipy.linalg.sqrtm, in float64. Its real part is used: for PSD S1, S2 the product's
eigenvalues are real and >= 0, and an imaginary part comes only from rounding (logged when larger than 1e-3, where
TTUR's fid.py raises an error: a periodic evaluation should not stop a run). When
S1 S2 is singular (fewer samples than feature dimensions) sqrtm can return non-finite values; then eps = 1e-6 is
added to both diagonals and the root recomputed, as in Heusel et al.'s released code (bioinf-jku/TTUR, fid.py).

The features. The classifier is experiments/quickstart.py's LeNet-5 (trained on the embedded convnets_digits);
its penultimate layer F6 (84 units after the scaled tanh, sown in 'intermediates') is the feature (field feature).
Generated and real images come in the GAN's range gan.image_range (the real ones through the GAN config's eval
preprocessing) and both are mapped to the classifier's input exactly as the quickstart's eval spec
'decode|resize(28)|pad(2)|value_range(-0.1, 1.175)' maps a stored digit: scaled to [0, 1] ((x - lo) / (hi - lo)),
resized to 28x28 (bilinear with half-pixel centres, no antialiasing: tf.image.resize's default), zero-padded by 2
to 32x32 and mapped linearly to [-0.1, 1.175] (fields classifier_size, classifier_pad, classifier_range). The
mapping assumes that the GAN's images are whole digit images as stored (any size, one channel).

What an evaluation reports (fields: experiments.gan.frechet_eval):
- `fd`: N = num_samples generated samples (z from `seed`, the same every evaluation) against the real examples of
  `split` ('' : data.eval_split; the first max_real_examples, 0: all);
- `fd_floor`: the first N real examples of `floor_split` ('' : data.train_split: digits the generator was trained
  on, i.e. what a generator that reproduces its training data would score) against the same real `split` set:
  the real-vs-real distance at the same N (`num_floor` < N when that split is smaller; it is then logged);
- `fd_ratio` = fd / fd_floor (1 is as good as real data at this N);
- `fd_untrained`: the same distance for the run's generator at step 0 (its initial parameters, drawn as the task
  draws them from config.seed): where training started;
- `coverage`: the fraction of the classifier's classes predicted (argmax) for at least coverage_threshold of the
  N samples (default 0.01: a class counts when at least 1% of the samples, a tenth of a uniform 10-class share, are
  classified as it, so a handful of stray samples do not cover a class); `coverage_real`: the same for the real
  `split` set; `class_fraction_<k>`: the fraction of samples classified as k; `max_class_fraction`;
- `classifier_top1`: the classifier's accuracy on the real `split` set (a check that the feature space is a trained
  one; needs labels, field labels);
- `num_samples`, `num_real`, `num_floor`, `seconds`.

The classifier. Field classifier_workdir: a finished quickstart run (`python -m convnets.main
--config=experiments/quickstart.py --workdir=...`), restored with convnets.train.loop.restore_for_inference under
the config of classifier_config (a config file path; '' : experiments/quickstart.py) with its data_dir set to
classifier_data_dir ('' : the GAN's data.data_dir). With classifier_workdir '' on the embedded convnets_digits the
evaluator trains that classifier once (the quickstart's full schedule) into <the GAN run's workdir>/digits_classifier
and reuses it afterwards (also after a resume). `train_digits_classifier` trains one on the fly (tests, quick runs).

Inception-based FID on real datasets (CelebA, LSUN, CIFAR-10) is NOT implemented: it needs the Inception-v3 weights
of Heusel et al. (TF's 2015 graph, pool_3 2,048-d features on 299x299 inputs), which cannot be downloaded here. A
user who has them would supply the network (an importable Flax Inception-v3 with those weights converted, as
convnets.weights imports other weights), its pool_3 feature name, its input size and value range; with those, this
module's `frechet_distance` and statistics apply unchanged. The LeNet-5 distance here is comparable only between
runs measured with the same classifier checkpoint, not with published FIDs.
"""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from convnets import parallel
from convnets.evaluate import parzen
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.state import TrainState

SQRTM_EPS = 1e-6  # Added to both covariance diagonals when sqrtm(S1 S2) is not finite (TTUR's fid.py).
IMAG_TOLERANCE = 1e-3
CLASSIFIER_DIR = 'digits_classifier'  # Under the GAN run's workdir, when classifier_workdir is ''.


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean [D] and covariance [D, D] (ddof = 1) of features [n, D], float64."""
    x = np.asarray(features, np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f'frechet: need at least 2 feature rows [n, D] for a covariance, got shape {x.shape}')
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(mu1: np.ndarray, s1: np.ndarray, mu2: np.ndarray, s2: np.ndarray, eps: float = SQRTM_EPS
                     ) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)) (see the module docstring for the eps offset)."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.atleast_2d(np.asarray(s1, np.float64)), np.atleast_2d(np.asarray(s2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (len(mu1), len(mu1)):
        raise ValueError(f'frechet: statistics of different shapes: means {mu1.shape} {mu2.shape}, covariances '
                         f'{s1.shape} {s2.shape}')
    diff = mu1 - mu2
    root = scipy.linalg.sqrtm(s1 @ s2)
    if not np.all(np.isfinite(root)):
        logging.warning('frechet: sqrtm(S1 S2) is not finite (singular product); adding %g to the diagonals', eps)
        offset = np.eye(len(s1)) * eps
        root = scipy.linalg.sqrtm((s1 + offset) @ (s2 + offset))
    if np.iscomplexobj(root):
        if np.max(np.abs(root.imag)) > IMAG_TOLERANCE:
            logging.warning('frechet: sqrtm(S1 S2) has an imaginary part up to %g; using its real part',
                            float(np.max(np.abs(root.imag))))
        root = root.real
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * np.trace(root))


def feature_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Fréchet distance between two feature sets [n, D] and [m, D]."""
    return frechet_distance(*statistics(a), *statistics(b))


def class_coverage(predictions: np.ndarray, num_classes: int, threshold: float) -> tuple[float, np.ndarray]:
    """(the fraction of the num_classes classes predicted for at least `threshold` of the rows, the per-class
    fractions [num_classes])."""
    counts = np.bincount(np.asarray(predictions, np.int64), minlength=num_classes)[:num_classes]
    fractions = counts / max(len(predictions), 1)
    return float(np.mean(fractions >= threshold)), fractions


def to_classifier_input(images: jax.Array, image_range: tuple[float, float], *, size: int = 28, pad: int = 2,
                        value_range: tuple[float, float] = (-0.1, 1.175)) -> jax.Array:
    """Images [n, H, W, C] in image_range -> the quickstart classifier's input, as its eval spec
    'resize(size)|pad(pad)|value_range(*value_range)' maps a stored digit (see the module docstring)."""
    lo, hi = image_range
    x = (images.astype(jnp.float32) - lo) / (hi - lo)  # [0, 1]: the stored pixel / 255
    n, h, w, c = x.shape
    if (h, w) != (size, size):
        x = jax.image.resize(x, (n, size, size, c), 'bilinear', antialias=False)
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))  # zero: the background, as pad() before value_range
    vlo, vhi = value_range
    return vlo + x * (vhi - vlo)


def load_config(path: str) -> ConfigDict:
    """get_config() of the experiment file at `path` ('' : experiments/quickstart.py)."""
    if not path:
        from experiments import quickstart

        return quickstart.get_config()
    spec = importlib.util.spec_from_file_location('frechet_classifier_config', path)
    if spec is None or spec.loader is None:
        raise ValueError(f'frechet: classifier_config={path!r} is not a Python config file with get_config().')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def train_digits_classifier(workdir: str, *, steps: int = 0, data_dir: str | None = None,
                            devices: list | None = None, config_path: str = '') -> ConfigDict:
    """Trains the quickstart LeNet-5 (or config_path's experiment) into `workdir` through convnets.train.loop:
    `steps` > 0 shortens the run (tests), 0 runs the experiment's schedule; no periodic evaluation. Returns the
    config used (pass its data.data_dir as the evaluator's classifier_data_dir)."""
    from convnets.train import loop

    config = load_config(config_path)
    config.data.data_dir = data_dir
    if steps:
        config.num_train_steps = steps
    for ev in config.evals.values():
        ev.every = ''
        ev.at_end = not steps
    loop.train_and_evaluate(config, workdir, devices=devices)
    return config


def load_classifier(ev: ConfigDict, config: ConfigDict, mesh, workdir: str | None = None) -> tuple:
    """(classifier module, its eval variables on the mesh) from ev.classifier_workdir's newest checkpoint. With
    classifier_workdir '' and the embedded convnets_digits, the quickstart LeNet-5 is trained once into
    <workdir>/digits_classifier (the GAN run's workdir) and read from there."""
    from convnets.train import loop

    path = ev.classifier_workdir
    if not path:
        if config.data.name != 'convnets_digits' or not workdir:
            raise ValueError('frechet: set evals.<name>.classifier_workdir to a trained digits classifier, e.g. a run '
                             'of python -m convnets.main --config=experiments/quickstart.py --workdir=/tmp/quickstart '
                             '(or convnets.evaluate.frechet.train_digits_classifier).')
        path = os.path.join(workdir, CLASSIFIER_DIR)
        if not os.path.exists(os.path.join(path, 'results.json')):
            logging.info('frechet: training the quickstart LeNet-5 digits classifier into %s', path)
            train_digits_classifier(path, data_dir=ev.classifier_data_dir or config.data.data_dir,
                                    devices=list(mesh.devices.flat), config_path=ev.classifier_config)
    cconfig = load_config(ev.classifier_config)
    cconfig.data.data_dir = ev.classifier_data_dir or config.data.data_dir
    nets, state = loop.restore_for_inference(cconfig, path, devices=list(mesh.devices.flat))
    if len(nets) != 1:
        raise ValueError(f'frechet: the classifier run has networks {sorted(nets)}; expected one classifier.')
    (name, model), = nets.items()
    return model, state.nets[name].eval_variables


def check(ev: ConfigDict) -> None:
    if ev.num_samples < 2:
        raise ValueError(f'frechet: num_samples={ev.num_samples} must be >= 2 (a covariance needs 2 rows).')
    if not 0 < ev.coverage_threshold <= 1:
        raise ValueError(f'frechet: coverage_threshold={ev.coverage_threshold} must be a fraction in (0, 1].')


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the evaluator of config entry `ev` (see the module docstring)."""
    config = ctx.config
    check(ev)
    batch_size = ev.batch_size or config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'evals.<name>.batch_size')
    mesh = ctx.mesh
    model, variables = load_classifier(ev, config, mesh, ctx.workdir)
    variables = jax.device_put(variables, NamedSharding(mesh, P()))
    from convnets.tasks import gan  # here: the task module imports the evaluators (its `evaluators`)

    image_range = gan.image_range(config)
    sample = parzen.sampler(ctx, batch_size)

    def step(cvars: dict, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        x = to_classifier_input(batch['image'], image_range, size=ev.classifier_size, pad=ev.classifier_pad,
                                value_range=tuple(ev.classifier_range))
        logits, sown = model.apply(cvars, x, train=False, mutable=['intermediates'])
        found = sown.get('intermediates', {})
        if ev.feature not in found:
            raise ValueError(f"frechet: the classifier {type(model).__name__} sows no {ev.feature!r}; its sown "
                             f"intermediates: {', '.join(sorted(found)) or 'none'}.")
        feat = found[ev.feature][0]
        out = {'feature': feat.reshape((feat.shape[0], -1)).astype(jnp.float32),
               'prediction': jnp.argmax(logits, axis=-1), 'mask': batch['mask']}
        if 'label' in batch:
            out['label'] = batch['label']
        return out

    features = parallel.compile_per_example(step, mesh)
    num_classes = getattr(model, 'num_classes', None)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f'frechet: the classifier {type(model).__name__} has no num_classes field (>= 2); coverage '
                         f'needs the number of classes.')

    def real(split: str, limit: int, labels: bool) -> dict[str, np.ndarray]:
        keys = ('image', 'label') if labels else ('image',)
        data = parzen.data_config(config, split, ev.preprocess, keys)
        parts = list(parzen.gathered(data, batch_size, mesh, features, variables, limit))
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def of_samples(images: np.ndarray) -> dict[str, np.ndarray]:
        parts = [features(variables, b) for b in _host_batches(images, batch_size, mesh)]
        out = {k: np.concatenate([parallel.gather_to_host(p[k]) for p in parts]) for k in ('feature', 'prediction',
                                                                                             'mask')}
        keep = out.pop('mask') > 0
        return {k: v[keep] for k, v in out.items()}

    cache: dict[str, dict[str, np.ndarray]] = {}  # The real sets' features: the classifier does not train.

    def evaluate(state: TrainState) -> dict[str, float]:
        start = time.time()
        if not cache:
            cache['real'] = real(ev.split or config.data.eval_split, ev.max_real_examples, ev.labels)
            cache['floor'] = real(ev.floor_split or config.data.train_split, ev.num_samples, False)
            if len(cache['floor']['feature']) < ev.num_samples:
                logging.warning('evals.%s: the floor split has %d examples, fewer than num_samples=%d', ctx.name,
                                len(cache['floor']['feature']), ev.num_samples)
        reference, floor = cache['real'], cache['floor']
        ref_stats = statistics(reference['feature'])
        if 'untrained' not in cache:  # the run's generator at step 0: the distance training starts from
            fresh = gan.initial_generator_variables(config, ctx.nets[gan.GENERATOR])
            g0 = state.nets[gan.GENERATOR].replace(params=fresh['params'], batch_stats=fresh.get('batch_stats', {}))
            untrained = of_samples(sample(state.replace(nets={**state.nets, gan.GENERATOR: g0}), ev.num_samples,
                                          ev.seed))
            cache['untrained'] = frechet_distance(*statistics(untrained['feature']), *ref_stats)
        generated = of_samples(sample(state, ev.num_samples, ev.seed))
        fd = frechet_distance(*statistics(generated['feature']), *ref_stats)
        fd_floor = frechet_distance(*statistics(floor['feature']), *ref_stats)
        coverage, fractions = class_coverage(generated['prediction'], num_classes, ev.coverage_threshold)
        coverage_real, _ = class_coverage(reference['prediction'], num_classes, ev.coverage_threshold)
        out = {'fd': fd, 'fd_floor': fd_floor, 'fd_ratio': fd / fd_floor if fd_floor > 0 else float('inf'),
               'fd_untrained': cache['untrained'],
               'coverage': coverage, 'coverage_real': coverage_real,
               'max_class_fraction': float(fractions.max()),
               **{f'class_fraction_{k}': float(f) for k, f in enumerate(fractions)},
               'num_samples': len(generated['feature']), 'num_real': len(reference['feature']),
               'num_floor': len(floor['feature'])}
        if 'label' in reference:
            out['classifier_top1'] = float(np.mean(reference['prediction'] == reference['label']))
        out['seconds'] = time.time() - start
        return out

    return evaluate


def _host_batches(images: np.ndarray, batch_size: int, mesh) -> Iterator[dict[str, jax.Array]]:
    """Global host arrays in batches of `batch_size` (the last one zero-padded, mask 0), sharded over the mesh; each
    process passes its rows."""
    shard = parallel.Parallel(mesh, 'shard_map').shard_batch
    per_process = batch_size // jax.process_count()
    first = jax.process_index() * per_process
    for start in range(0, len(images), batch_size):
        part = images[start:start + batch_size]
        mask = np.zeros(batch_size, np.float32)
        mask[:len(part)] = 1.0
        part = np.concatenate([part, np.zeros((batch_size - len(part), *part.shape[1:]), part.dtype)])
        yield shard({'image': part[first:first + per_process], 'mask': mask[first:first + per_process]})
