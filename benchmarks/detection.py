"""Fast R-CNN speed: the VGG16 train step (images/s) and the share of RoI max pooling in it.

  python benchmarks/detection.py [--config=experiments/fast_rcnn_vgg16_voc07.py] [--height=600 --width=1000]
      [--steps=3] [--rois=64] [--proposals=2000] [--svd_ranks=1024,256]

(a) The step: the experiment's own network, optimiser (conv1/conv2 frozen, biases at 2x) and the detection task's
own train step (`convnets.tasks.detection` through `convnets.parallel.Parallel.compile`, as the training loop
builds it), fp32, on synthetic batches of `config.batch_size` (2) images at --height x --width (Fast R-CNN's
600 x 1000 canvas) with --proposals random proposals and a few ground-truth boxes each; the step samples
`rois_per_image` (64) RoIs per image itself. Prints compile time, step time and images/s.
(b) RoI max pooling alone (`convnets.models.detection.roi_pool.roi_max_pool`), forward and backward under jit, on
the conv5_3 map of the same canvas ([2, H/16, W/16, 512], 2 x 64 RoIs): its time and its share of the step (the
issue asks that it not dominate).
(c) Test-time head with and without truncated SVD (Fast R-CNN sec. 3.1): fc6 / fc7 / the sibling layers on
--test_rois pooled RoIs, and the SVD itself (numpy, as the authors' compress_net.py).

Synthetic data: this measures the step alone, not the input pipeline. Figures go to WORKSPACE.md with the machine.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from convnets import parallel
from convnets.models.detection import svd
from convnets.models.detection.roi_pool import roi_max_pool
from convnets.tasks import base
from convnets.tasks import detection as detection_task

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'experiments/fast_rcnn_vgg16_voc07.py', 'Experiment config file.',
                                lock_config=True)
flags.DEFINE_integer('height', 600, 'Canvas height (Fast R-CNN: shorter side 600).')
flags.DEFINE_integer('width', 1000, 'Canvas width (Fast R-CNN: longer side <= 1000).')
flags.DEFINE_integer('steps', 3, 'Timed steps after compilation and one warm-up step.')
flags.DEFINE_integer('proposals', 2000, 'Proposals per image in the synthetic batch (selective search: ~2000).')
flags.DEFINE_integer('gt_boxes', 4, 'Ground-truth boxes per image in the synthetic batch.')
flags.DEFINE_integer('test_rois', 2000, 'RoIs per image of the test-time head timing (c).')
flags.DEFINE_list('svd_ranks', ['1024', '256'], 'Truncated SVD ranks of fc6, fc7 for (c); empty to skip (c).')
flags.DEFINE_bool('step', True, 'Run (a) (the whole train step); --nostep measures only (b) and (c).')


def _boxes(rng: np.random.Generator, n: int, height: int, width: int, min_size: float) -> np.ndarray:
    """[n, 4] random edge boxes (y1, x1, y2, x2) inside the canvas, at least `min_size` a side."""
    y1, x1 = rng.uniform(0, height - min_size, n), rng.uniform(0, width - min_size, n)
    h = rng.uniform(min_size, height - y1)
    w = rng.uniform(min_size, width - x1)
    return np.stack([y1, x1, y1 + h, x1 + w], axis=-1).astype(np.float32)


def synthetic_batch(config, rng: np.random.Generator, height: int, width: int, *, proposals: int | None = None,
                    gt_boxes: int | None = None) -> dict[str, np.ndarray]:
    """A detection batch with every key of `config.data.batch_keys`: random images, proposals and gt boxes
    (`proposals`, `gt_boxes` per image: default the flags; benchmarks/accelerator.py passes them)."""
    n = config.batch_size
    g = FLAGS.gt_boxes if gt_boxes is None else gt_boxes
    p = FLAGS.proposals if proposals is None else proposals
    gt = np.stack([_boxes(rng, g, height, width, 32) for _ in range(n)])
    props = np.stack([_boxes(rng, p, height, width, 16) for _ in range(n)])
    props[:, :g] = gt + rng.normal(0, 4, gt.shape).astype(np.float32)  # some foreground RoIs to sample
    batch = {'image': rng.normal(size=(n, height, width, 3)).astype(np.float32), 'boxes': gt,
             'box_classes': rng.integers(0, config.model.num_classes, (n, g)).astype(np.int32),
             'box_difficult': np.zeros((n, g), np.int32), 'box_mask': np.ones((n, g), np.int32),
             'image_size': np.tile(np.array([[height, width]], np.int32), (n, 1)),
             'proposals': np.clip(props, 0, [height, width, height, width]), 'proposal_mask': np.ones((n, p), bool),
             'image_scale': np.ones((n, 2), np.float32)}  # (h, w) resize ratios; the train step ignores them
    return {k: batch[k] for k in config.data.batch_keys}


def _timed(fn, *args, steps: int) -> tuple[float, float]:
    """(first call incl. compile, mean of `steps` further calls) in seconds."""
    t = time.perf_counter()
    jax.block_until_ready(fn(*args))
    first = time.perf_counter() - t
    jax.block_until_ready(fn(*args))  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        out = fn(*args)
    jax.block_until_ready(out)
    return first, (time.perf_counter() - t) / steps


def bench_step(config, height: int, width: int) -> float:
    """(a): prints and returns the mean train-step time (s)."""
    task = detection_task.TASK
    task.validate(config)
    mesh = parallel.make_mesh(jax.local_devices())
    par = parallel.Parallel(mesh, config.parallel)
    parallel.check_batch_size(config.batch_size, mesh)
    nets = task.build_nets(config)
    optimizers = task.make_optimizers(config, steps_per_epoch=1000, total_steps=config.num_train_steps)
    rng = np.random.default_rng(0)
    local = synthetic_batch(config, rng, height, width)
    spec = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in local.items()}
    state = jax.jit(lambda: task.init_state(config, nets, optimizers, spec),
                    out_shardings=parallel.replicated(mesh))()
    batch = par.shard_batch(local)
    step = par.compile(task.make_train_step(config, nets, optimizers, axis_name=parallel.AXIS,
                                            loss_is_global=par.loss_is_global))
    t = time.perf_counter()
    state, metrics = step(state, batch)  # compiles
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t
    state, metrics = step(state, batch)  # warm-up
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for _ in range(FLAGS.steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    dt = (time.perf_counter() - t) / FLAGS.steps
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.nets['model'].params))
    print(f'(a) train step: model {config.model.name} ({n_params} params), {mesh.devices.size} x '
          f'{jax.devices()[0].platform}, fp32, {config.batch_size} images x {config.detection.rois_per_image} RoIs '
          f'at {height}x{width}, {FLAGS.proposals} proposals/image')
    print(f'    compile + first step (s): {compile_s:.1f}   loss {float(metrics["loss"]):.3f} '
          f'fg_rois {float(metrics["fg_rois"]):.3f}')
    print(f'    step time (s): {dt:.3f}   train images/s: {config.batch_size / dt:.3f}')
    return dt


def bench_roi_pool(config, height: int, width: int) -> float:
    """(b): prints and returns the mean forward + backward time (s) of RoI max pooling at the step's shapes."""
    model = config.model
    stride = 2 ** model.num_pools
    # conv5_3's size with Caffe's ceil-mode pools (600x1000 -> 38x63).
    h, w = height, width
    for _ in range(model.num_pools):
        h, w = -(-h // 2), -(-w // 2)
    b, r, c = config.batch_size, config.detection.rois_per_image, model.stage_widths[-1]
    rng = np.random.default_rng(1)
    fmap = jnp.asarray(rng.normal(size=(b, h, w, c)).astype(np.float32))
    rois = jnp.asarray(np.concatenate([_boxes(rng, r, height, width, 16) for _ in range(b)]))
    batch_indices = jnp.repeat(jnp.arange(b), r)
    size = (model.roi_size, model.roi_size)
    cotangent = jnp.asarray(rng.normal(size=(b * r, *size, c)).astype(np.float32))

    def loss(f):
        return jnp.sum(roi_max_pool(f, rois, batch_indices=batch_indices, output_size=size,
                                    spatial_scale=1.0 / stride) * cotangent)

    fwd = jax.jit(lambda f: roi_max_pool(f, rois, batch_indices=batch_indices, output_size=size,
                                         spatial_scale=1.0 / stride))
    _, fwd_s = _timed(fwd, fmap, steps=5)
    _, both_s = _timed(jax.jit(jax.value_and_grad(loss)), fmap, steps=5)
    print(f'(b) RoI max pooling on [{b}, {h}, {w}, {c}], {b * r} RoIs -> {size[0]}x{size[1]}: forward '
          f'{1000 * fwd_s:.1f} ms, forward + backward {1000 * both_s:.1f} ms')
    return both_s


def bench_svd_head(config, ranks: tuple[int, int]) -> None:
    """(c): the test-time head (fc6, fc7, sibling layers) on `--test_rois` pooled RoIs, full and truncated."""
    model = base.build_model(config.model).clone(dropout_rate=0.0)
    m = config.model
    pooled = jnp.asarray(np.random.default_rng(2).normal(
        size=(1, FLAGS.test_rois, m.roi_size, m.roi_size, m.stage_widths[-1])).astype(np.float32))
    params = jax.jit(lambda: model.init(jax.random.key(0), pooled, method='head'))()['params']
    t = time.perf_counter()
    small_params = svd.compress_params(jax.device_get(params), ranks)
    svd_s = time.perf_counter() - t
    small = model.clone(svd_ranks=ranks)
    _, full_s = _timed(jax.jit(lambda v: model.apply(v, pooled, method='head')), {'params': params}, steps=3)
    _, small_s = _timed(jax.jit(lambda v: small.apply(v, pooled, method='head')), {'params': small_params},
                        steps=3)
    fc6_in = m.roi_size ** 2 * m.stage_widths[-1]
    count = svd.num_params(fc6_in, m.fc_features) + svd.num_params(m.fc_features, m.fc_features)
    small_count = svd.num_params(fc6_in, m.fc_features, ranks[0]) + svd.num_params(m.fc_features, m.fc_features,
                                                                                 ranks[1])
    print(f'(c) test head on {FLAGS.test_rois} RoIs: full {1000 * full_s:.0f} ms, truncated SVD {ranks} '
          f'{1000 * small_s:.0f} ms ({full_s / small_s:.2f}x); fc6+fc7 params {count} -> {small_count}; '
          f'SVD of the trained layers (numpy, float32) {svd_s:.1f} s')


def main(argv):
    del argv
    config = FLAGS.config
    height, width = FLAGS.height, FLAGS.width
    print(f'machine: {jax.devices()[0].device_kind}, {len(jax.local_devices())} local device(s)')
    pool_s = bench_roi_pool(config, height, width)
    if FLAGS.step:
        step_s = bench_step(config, height, width)
        print(f'    RoI pooling share of the step: {100 * pool_s / step_s:.1f}% (forward + backward timed alone)')
    if FLAGS.svd_ranks:
        bench_svd_head(config, tuple(int(r) for r in FLAGS.svd_ranks))


if __name__ == '__main__':
    app.run(main)
