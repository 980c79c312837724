"""Seeing a generator's samples: fixed-z grids during training, latent interpolations, `--mode=generate`.

- The 'samples' evaluator (a GAN config's `evals.samples`): at every evaluation the SAME `num_samples` noise
  vectors (drawn once from `seed`) go through the generator, so successive grids show one set of samples
  evolving; written to `<workdir>/samples/grid_<step>.png` and TensorBoard (`samples/grid`). With `interpolations`
  > 0 it also draws DCGAN's Fig. 4 walk: rows of `interpolation_steps` images along the straight line between two
  fixed noise vectors (`interpolation_<step>.png`, `samples/interpolation`). Its numbers: the samples' pixel mean
  and standard deviation and the mean per-pixel standard deviation across samples (near 0: every z gives the same
  image, a collapsed generator).
- `generate_from_checkpoint` (`python -m convnets.main --mode=generate --num_samples=N`): N samples of the latest
  checkpoint as `<workdir>/generate/samples.npz` (uint8 images [N, H, W, C] and the float z [N, z_dim]) and a grid
  `<workdir>/generate/grid.png` of the first (at most 256).

Images are mapped from the generator's range (config.gan.image_range) to 0..255 linearly, never min/max-scaled,
so grids of different steps compare.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from ml_collections import ConfigDict

from convnets.tasks import gan
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.state import TrainState
from convnets.visualize import images as im

GRID_MAX = 256


def to_uint8(samples: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Generator outputs in `value_range` -> uint8 0..255 (clipped)."""
    lo, hi = value_range
    return im.to_uint8(np.asarray(samples, np.float64), lo, hi)


def grid(samples_uint8: np.ndarray, cols: int | None = None, scale: int = 1) -> np.ndarray:
    """[N, H, W, C] uint8 -> one tiled image, each tile upsampled `scale` times."""
    return im.tile([im.upsample(s, scale) for s in samples_uint8], cols=cols)


def interpolation_latents(gan_config: ConfigDict, key: jax.Array, rows: int, steps: int) -> jax.Array:
    """[rows * steps, z_dim]: for each row, `steps` points evenly spaced on the segment between two noise vectors
    (endpoints included), row-major."""
    ends = gan.latents(gan_config, key, 2 * rows).reshape((rows, 2, -1))
    t = jnp.linspace(0.0, 1.0, steps)[None, :, None]
    return ((1.0 - t) * ends[:, :1] + t * ends[:, 1:]).reshape((rows * steps, -1))


def _scale(size: int) -> int:
    return max(1, 64 // max(size, 1))


def _write(workdir: str, tb_dir: str, step: int, pictures: dict[str, np.ndarray], sub: str) -> list[str]:
    import tensorflow as tf

    out_dir = os.path.join(workdir, sub)
    paths = [im.save_png(os.path.join(out_dir, f'{name}_{step:08d}.png'), picture)
             for name, picture in pictures.items()]
    writer = tf.summary.create_file_writer(tb_dir)
    with writer.as_default():
        for name, picture in pictures.items():
            tf.summary.image(f'samples/{name}', np.asarray(picture)[None], step=step)
    writer.flush()
    writer.close()
    return paths


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """The 'samples' evaluator of entry `ev` (fields: see experiments/gan.py's samples_eval)."""
    config = ctx.config
    generator = ctx.nets[gan.GENERATOR]
    key = jax.random.PRNGKey(int(ev.seed))
    z = gan.latents(config.gan, jax.random.fold_in(key, 0), int(ev.num_samples))
    walk = (interpolation_latents(config.gan, jax.random.fold_in(key, 1), int(ev.interpolations),
                                  int(ev.interpolation_steps)) if ev.interpolations else None)
    value_range = gan.image_range(config)
    run = jax.jit(lambda variables, noise: gan.generate(generator, variables, noise))

    def evaluate(state: TrainState) -> dict[str, float]:
        variables = state.nets[gan.GENERATOR].eval_variables
        samples = np.asarray(jax.device_get(run(variables, z)), np.float32)
        step = int(jax.device_get(state.step))
        scale = _scale(samples.shape[1])
        pictures = {'grid': grid(to_uint8(samples, value_range), scale=scale)}
        if walk is not None:
            strip = to_uint8(np.asarray(jax.device_get(run(variables, walk))), value_range)
            pictures['interpolation'] = grid(strip, cols=int(ev.interpolation_steps), scale=scale)
        if ctx.workdir and jax.process_index() == 0:
            _write(ctx.workdir, os.path.join(ctx.workdir, 'tensorboard'), step, pictures, 'samples')
        return {'pixel_mean': float(samples.mean()), 'pixel_std': float(samples.std()),
                'sample_spread': float(samples.std(axis=0).mean()), 'num_samples': int(len(samples))}

    return evaluate


def generate_from_checkpoint(config: ConfigDict, workdir: str, num_samples: int, *, seed: int = 0,
                             out_dir: str | None = None, devices: Sequence[jax.Device] | None = None
                             ) -> dict[str, Any]:
    """`--mode=generate`: `num_samples` images from the latest checkpoint's generator (see the module docstring)."""
    from convnets.train import loop

    if config.task != 'gan':
        raise ValueError(f'--mode=generate draws samples from a GAN generator; this config trains task '
                         f'{config.task!r}. Use a GAN experiment (experiments/gan_quickstart.py, dcgan_*.py).')
    if num_samples < 1:
        raise ValueError(f'--num_samples={num_samples}: ask for at least 1 sample.')
    nets, state = loop.restore_for_inference(config, workdir, devices=devices)
    generator = nets[gan.GENERATOR]
    variables = state.nets[gan.GENERATOR].eval_variables
    run = jax.jit(lambda noise: gan.generate(generator, variables, noise))
    z = gan.latents(config.gan, jax.random.PRNGKey(seed), num_samples)
    chunks = [np.asarray(jax.device_get(run(z[i:i + 256]))) for i in range(0, num_samples, 256)]
    samples = to_uint8(np.concatenate(chunks), gan.image_range(config))
    out_dir = out_dir or os.path.join(workdir, 'generate')
    epath.Path(out_dir).mkdir(parents=True, exist_ok=True)  # local or gs://
    npz = os.path.join(out_dir, 'samples.npz')
    with epath.Path(npz).open('wb') as f:
        np.savez_compressed(f, images=samples, z=np.asarray(z))
    picture = im.save_png(os.path.join(out_dir, 'grid.png'),
                          grid(samples[:GRID_MAX], scale=_scale(samples.shape[1])))
    return {'step': int(jax.device_get(state.step)), 'npz': npz, 'grid': picture, 'num_samples': num_samples}
