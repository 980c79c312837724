"""Train-step benchmark: compile time and steady-state images/s of any experiment on the local devices.

  python benchmarks/train_step.py --config=experiments/quickstart.py [--config.batch_size=256] [--steps=50]
      [--image_shape=224,224,3]

Uses synthetic batches (no input pipeline: this measures the step alone) and the experiment's task, so any
classification experiment (and its --config.dtype) works. The image shape comes from
--image_shape, or else from one batch of the experiment's own train pipeline. Prints one line per figure.
"""

import time

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from convnets import parallel, tasks
from convnets.data import pipeline

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'Experiment config file.', lock_config=True)
flags.DEFINE_integer('steps', 30, 'Timed steps after compilation and one warm-up step.')
flags.DEFINE_list('image_shape', None, 'H,W,C of the model input; default: from the experiment pipeline.')
flags.mark_flag_as_required('config')


def main(argv):
    del argv
    config = FLAGS.config
    mesh = parallel.make_mesh(jax.local_devices())
    par = parallel.Parallel(mesh, config.parallel)
    parallel.check_batch_size(config.batch_size, mesh)
    if FLAGS.image_shape:
        shape = tuple(int(x) for x in FLAGS.image_shape)
    else:
        first = next(pipeline.train_batches(config.data, global_batch_size=config.batch_size, seed=0))
        shape = first['image'].shape[1:]
    # The task's own init and step (as the training loop builds them): config.dtype, aux heads, EMA included.
    task = tasks.get(config.task)
    task.validate(config)
    nets = task.build_nets(config)
    optimizers = task.make_optimizers(config, steps_per_epoch=1000, total_steps=10**6)
    spec = {'image': jax.ShapeDtypeStruct(shape, np.float32), 'label': jax.ShapeDtypeStruct((), np.int32)}
    state = jax.jit(lambda: task.init_state(config, nets, optimizers, spec),
                    out_shardings=parallel.replicated(mesh))()
    rng = np.random.default_rng(0)
    batch = par.shard_batch({
        'image': rng.normal(size=(config.batch_size, *shape)).astype(np.float32),
        'label': rng.integers(0, config.model.get('num_classes', 10), config.batch_size).astype(np.int32)})
    step = par.compile(task.make_train_step(config, nets, optimizers, axis_name=parallel.AXIS,
                                            loss_is_global=par.loss_is_global))
    t = time.perf_counter()
    state, metrics = step(state, batch)  # Compiles.
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - t
    state, metrics = step(state, batch)  # Warm-up.
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for _ in range(FLAGS.steps):
        state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    dt = time.perf_counter() - t
    n_params = sum(int(np.prod(p.shape)) for net in state.nets.values() for p in jax.tree.leaves(net.params))
    name = config_flags.get_config_filename(FLAGS['config'])
    print(f'experiment: {name}  model: {config.model.name}  params: {n_params}')
    print(f'devices: {mesh.devices.size} x {jax.devices()[0].platform}  parallel: {config.parallel}')
    print(f'global batch: {config.batch_size}  image: {"x".join(map(str, shape))}  '
          f'compute dtype: {config.get("dtype", "float32")}')
    print(f'compile + first step (s): {compile_s:.2f}')
    print(f'step time (ms): {1000 * dt / FLAGS.steps:.2f}')
    print(f'train examples/s: {FLAGS.steps * config.batch_size / dt:.1f}')


if __name__ == '__main__':
    app.run(main)
