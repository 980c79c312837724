"""The 'parzen' evaluator: the Gaussian Parzen-window log-likelihood of test data under a generator's samples
(Goodfellow et al. 2014, "Generative Adversarial Nets", Sec. 5 and Table 1, after Breuleux, Bengio and Vincent 2011).

The estimator. N samples mu_1..mu_N of the generator (flattened to D values each) are the centres of isotropic
Gaussians of width sigma; a data point x gets
    log p(x) = log (1/N) sum_j exp(-||x - mu_j||^2 / (2 sigma^2))  -  D log(sigma sqrt(2 pi)),
computed with a logsumexp (stable for D = 784 and small sigma). The squared distances are formed once per batch
of data as ||x||^2 + ||mu||^2 - 2 x.mu (float32, HIGHEST matmul precision, clamped at 0) on the devices, the data
split over the mesh and the samples replicated; every sigma of the grid is scored from the same distances.

The protocol, from the authors' script (goodfeli/adversarial, parzen_ll.py):
- N = 10,000 samples (`-n 10000`; field num_samples) of the trained generator;
- sigma from the grid numpy.logspace(-1, 0, 10) (`--sigma_start -1 --sigma_end 0 -c 10`; field sigmas), the one
  with the highest mean log-likelihood of the validation data (cross_validate_sigma). The validation data are
  MNIST train examples 50,000-60,000 (get_valid), of which the script keeps the first `limit_size` = 1,000 by
  default (field max_validation_examples; 0 keeps all);
- the test split's mean log-likelihood and its standard error ll.std() / sqrt(n) (numpy's std: ddof = 0).
  Table 1: MNIST 225 +- 2, TFD 2057 +- 26.
Data and samples are compared in the generator's value range (config.gan.image_range; the MNIST GAN's sigmoid gives
[0, 1], pylearn2's MNIST is scaled to [0, 1] too); the eval preprocessing (field preprocess, '' :
data.eval_preprocess) must map the data to that range. The log-likelihood depends on the scale: the same model
measured on [-1, 1] data differs by D log 2.

Results: `log_likelihood` (test mean), `std_error`, `sigma` (chosen), `validation_log_likelihood` (at that sigma),
`num_samples`, `num_examples` (test), `num_validation`, `seconds`.

`sampler` (the generator's samples over the mesh, gathered to the host) and `gathered` (per-example outputs of
an eval split) are shared with the 'frechet' and 'gan_svm' evaluators.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.precision import Policy
from convnets.train.state import TrainState


def log_likelihoods(x: jax.Array, mu: jax.Array, sigmas: jax.Array) -> jax.Array:
    """Parzen log-densities [n, S] of the rows of x [n, D] under the Gaussian windows of width sigmas[s] [S]
    centred on the rows of mu [N, D]."""
    x = x.astype(jnp.float32)
    mu = mu.astype(jnp.float32)
    cross = jnp.matmul(x, mu.T, precision=jax.lax.Precision.HIGHEST)
    d2 = jnp.maximum(jnp.sum(x * x, axis=1)[:, None] + jnp.sum(mu * mu, axis=1)[None, :] - 2.0 * cross, 0.0)
    sigmas = sigmas.astype(jnp.float32)
    n, dim = mu.shape
    # [n, N] -> [n, S]: log mean_j exp(-d2 / (2 s^2)), then the Gaussian's normaliser in D dimensions.
    e = jax.nn.logsumexp(-d2[:, None, :] / (2.0 * sigmas[None, :, None] ** 2), axis=2) - jnp.log(float(n))
    return e - dim * jnp.log(sigmas * np.sqrt(2.0 * np.pi))[None, :]


def select_sigma(sigmas: Sequence[float], validation_ll: np.ndarray) -> tuple[float, int]:
    """The grid's sigma with the highest mean validation log-likelihood (validation_ll [n, S]); ties: the first."""
    means = np.asarray(validation_ll, np.float64).mean(axis=0)
    best = int(np.argmax(means))
    return float(sigmas[best]), best


def sampler(ctx: EvalContext, batch_size: int) -> Callable[[TrainState, int, int], np.ndarray]:
    """`sample(state, num, seed)`: `num` samples [num, H, W, C] of the state's generator (inference mode), float32
    on the host, from z = gan.latents(config.gan, PRNGKey(seed), num): the same z for every state and any number of
    devices.

    Generates `batch_size` (a multiple of the device count) samples per call, the z split over the mesh; with
    several processes each passes its rows of the (identical) global z and every process gathers all samples."""
    from convnets.tasks import gan  # here: the task module imports the evaluators (its `evaluators`)

    parallel.check_batch_size(batch_size, ctx.mesh, 'the sample batch size')
    generator = ctx.nets[gan.GENERATOR]
    policy = Policy.from_config(ctx.config)  # G runs in the run's compute dtype; its samples come back float32

    def step(state: TrainState, batch: dict[str, jax.Array]) -> jax.Array:
        return gan.generate(generator, state.nets[gan.GENERATOR].eval_variables, batch['z'], policy
                            ).astype(jnp.float32)

    run = parallel.compile_per_example(step, ctx.mesh)
    shard = parallel.Parallel(ctx.mesh, 'shard_map').shard_batch
    per_process = batch_size // jax.process_count()
    first = jax.process_index() * per_process

    def sample(state: TrainState, num: int, seed: int) -> np.ndarray:
        z = np.asarray(gan.latents(ctx.config.gan, jax.random.PRNGKey(seed), num))
        z = np.concatenate([z, np.zeros((-num % batch_size, z.shape[1]), z.dtype)])  # whole batches
        out = []
        for start in range(0, len(z), batch_size):
            local = z[start:start + batch_size][first:first + per_process]
            out.append(parallel.gather_to_host(run(state, shard({'z': local}))))
        return np.concatenate(out)[:num].astype(np.float32)

    return sample


def data_config(config: ConfigDict, split: str, preprocess: str, keys: tuple[str, ...] = ('image',)) -> ConfigDict:
    """config.data reading `split` with eval spec `preprocess` ('' : data.eval_preprocess) and batch keys `keys`."""
    data = ConfigDict(config.data.to_dict())
    data.eval_split = split
    data.eval_preprocess = preprocess or config.data.eval_preprocess
    data.batch_keys = tuple(keys)
    return data


def gathered(data: ConfigDict, batch_size: int, mesh, fn, first, limit: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """`fn(first, batch)` (compiled per example: a dict of per-row outputs) on every eval batch of `data`, gathered
    to the host with the padding rows dropped; at most `limit` real rows in all (0: every one). With several
    processes every process gathers every row, so limits are global."""
    shard = parallel.Parallel(mesh, 'shard_map').shard_batch
    count = 0
    for local in pipeline.eval_batches(data, global_batch_size=batch_size, process_index=jax.process_index(),
                                       process_count=jax.process_count()):
        out = {k: parallel.gather_to_host(v) for k, v in fn(first, shard(local)).items()}
        real = out.pop('mask') > 0
        if limit:
            real &= np.cumsum(real) <= limit - count
        count += int(real.sum())
        yield {k: v[real] for k, v in out.items()}
        if limit and count >= limit:
            return


def check(ev: ConfigDict) -> None:
    """ValueError for settings of a 'parzen' entry that cannot work."""
    if ev.num_samples < 1:
        raise ValueError(f'parzen: num_samples={ev.num_samples} must be >= 1 (the paper: 10,000).')
    if not ev.sigmas or any(s <= 0 for s in ev.sigmas):
        raise ValueError(f'parzen: sigmas={tuple(ev.sigmas)} must be a non-empty tuple of positive widths (the '
                         f"authors' grid: numpy.logspace(-1, 0, 10)).")
    if ev.max_validation_examples < 0:
        raise ValueError(f'parzen: max_validation_examples={ev.max_validation_examples} must be >= 0 (0: all).')


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the evaluator of config entry `ev` (fields: `experiments.gan.parzen_eval`)."""
    config = ctx.config
    check(ev)
    batch_size = ev.batch_size or config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'evals.<name>.batch_size')
    sigmas = tuple(float(s) for s in ev.sigmas)
    mesh = ctx.mesh
    sample = sampler(ctx, ev.sample_batch_size or batch_size)

    def step(centres: jax.Array, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        x = batch['image'].reshape((batch['image'].shape[0], -1))
        return {'ll': log_likelihoods(x, centres, jnp.asarray(sigmas)), 'mask': batch['mask']}

    score = parallel.compile_per_example(step, mesh)
    replicate = NamedSharding(mesh, P())

    def split_lls(centres: jax.Array, split: str, limit: int) -> np.ndarray:
        """[n, S] log-likelihoods of the (real) examples of `split`, in file order."""
        data = data_config(config, split, ev.preprocess)
        parts = [b['ll'] for b in gathered(data, batch_size, mesh, score, centres, limit)]
        return np.concatenate(parts).astype(np.float64)

    def evaluate(state: TrainState) -> dict[str, float]:
        start = time.time()
        samples = sample(state, ev.num_samples, ev.seed)
        centres = jax.device_put(samples.reshape((len(samples), -1)), replicate)
        valid = split_lls(centres, ev.validation_split or config.data.train_split, ev.max_validation_examples)
        sigma, best = select_sigma(sigmas, valid) if len(sigmas) > 1 else (sigmas[0], 0)
        if len(sigmas) > 1 and best in (int(np.argmin(sigmas)), int(np.argmax(sigmas))):
            logging.warning('evals.%s: the chosen sigma %g is at the edge of the grid %s; the best width may lie '
                            'outside it (widen evals.%s.sigmas)', ctx.name, sigma, sigmas, ctx.name)
        test = split_lls(centres, ev.split or config.data.eval_split, 0)[:, best]
        logging.info('evals.%s: sigma %g (validation mean log-likelihood per sigma: %s)', ctx.name, sigma,
                     ', '.join(f'{s:.3g}: {v:.1f}' for s, v in zip(sigmas, valid.mean(axis=0), strict=True)))
        return {'log_likelihood': float(test.mean()), 'std_error': float(test.std() / np.sqrt(len(test))),
                'sigma': sigma, 'validation_log_likelihood': float(valid[:, best].mean()),
                'num_samples': int(ev.num_samples), 'num_examples': len(test), 'num_validation': len(valid),
                'seconds': time.time() - start}

    return evaluate

