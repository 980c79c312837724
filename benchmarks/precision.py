"""Mixed-precision figures: how far one bfloat16 (or float16) step is from the float32 step, and the quickstart's
top-1 at the same steps in float32 and in the low precision.

  python benchmarks/precision.py [--dtype=bfloat16] [--steps=100,200,300] [--step_models=lenet5,resnet_cifar20]
      [--data_dir=DIR] [--skip_training] [--decay_at=250]

Part 1 (one step, synthetic batch of 16, same initial state): the relative difference of the loss and of the
parameter update (new - old parameters, norm over every leaf) of each model in --step_models against float32, and
of its low-precision update on all local devices against one (XLA_FLAGS=--xla_force_host_platform_device_count=8
simulates 8 on a CPU).
Part 2 (training): experiments/quickstart.py (LeNet-5 on the embedded digits, 1 device) trained max(--steps) steps
in float32 and in --dtype, evaluated on the 360 test digits at every step of --steps; prints top-1 and the train
images/s of each run (--decay_at=N: the rate x0.1 after step N, as the convergence test trains). --data_dir: a TFDS
directory (default TFDS's; the embedded dataset is built there if absent).
"""

import functools
import math
import os
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import ConfigDict

from convnets import parallel, tasks
from convnets.train import loop
from experiments import quickstart

FLAGS = flags.FLAGS
flags.DEFINE_string('dtype', 'bfloat16', 'the low compute dtype compared with float32')
flags.DEFINE_list('steps', ['100', '200', '300'], 'steps at which the quickstart is evaluated')
flags.DEFINE_list('step_models', ['lenet5', 'resnet_cifar20', 'convnet_bn'], 'models of the one-step comparison')
flags.DEFINE_string('data_dir', None, 'TFDS data_dir of the embedded digits (default: TFDS default)')
flags.DEFINE_bool('skip_training', False, 'only the one-step comparison')
flags.DEFINE_integer('decay_at', 0, '> 0: the quickstart\'s rate x0.1 after this step (tests/test_precision.py: 250)')

# name -> (model section, input shape)
STEP_MODELS = {
    'lenet5': (dict(name='lenet5', num_classes=10), (32, 32, 1)),
    'resnet_cifar20': (dict(name='resnet_cifar', depth=20, num_classes=10), (32, 32, 3)),
    'convnet_bn': (dict(name='convnet', num_classes=10, batch_norm=True), (32, 32, 3)),
    'alexnet': (dict(name='alexnet', num_classes=10), (227, 227, 3)),
}


def one_step(dtype: str, model: dict, shape: tuple[int, ...]) -> tuple[float, float, float]:
    """(relative loss difference, relative update difference) of one `dtype` step against float32 on one device,
    and the relative difference of the `dtype` update on all local devices against one device."""
    rng = np.random.default_rng(0)
    batch = {'image': rng.normal(size=(16, *shape)).astype(np.float32),
             'label': rng.integers(0, 10, size=16).astype(np.int32)}
    out, start = {}, {}
    for d, devices in (('float32', 1), (dtype, 1), ('all', jax.local_device_count())):
        config = quickstart.get_config()
        config.model = ConfigDict(model)
        config.dtype = dtype if d == 'all' else d
        task = tasks.get(config.task)
        nets = task.build_nets(config)
        optimizers = task.make_optimizers(config, steps_per_epoch=10, total_steps=10)
        spec = {'image': jax.ShapeDtypeStruct(shape, jnp.float32)}
        # The same float32 parameters for every dtype (a float16 state also holds its loss scale).
        start[d] = jax.jit(functools.partial(task.init_state, config, nets, optimizers, spec))()
        par = parallel.Parallel(parallel.make_mesh(jax.local_devices()[:devices]))
        step = par.compile(task.make_train_step(config, nets, optimizers, axis_name=parallel.AXIS,
                                                loss_is_global=True), donate=False)
        out[d] = step(start[d], par.shard_batch(batch))
    state = start['float32']

    def flat(s):
        return np.concatenate([np.asarray(x, np.float64).ravel() for x in jax.tree.leaves(s.net.params)])

    p0 = flat(state)
    full, low, spread = (flat(out[d][0]) - p0 for d in ('float32', dtype, 'all'))
    loss32, loss_low = float(out['float32'][1]['loss']), float(out[dtype][1]['loss'])
    return (abs(loss_low - loss32) / loss32, float(np.linalg.norm(low - full) / np.linalg.norm(full)),
            float(np.linalg.norm(spread - low) / np.linalg.norm(low)))


def eval_top1(logdir: str) -> dict[int, float]:
    import tensorflow as tf

    out = {}
    for name in os.listdir(logdir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
            for value in event.summary.value:
                if value.tag == 'eval/top1':
                    out[event.step] = float(tf.make_ndarray(value.tensor))
    return out


def train(dtype: str, steps: list[int], workdir: str) -> tuple[dict[int, float], float]:
    config = quickstart.get_config()
    config.dtype = dtype
    if FLAGS.data_dir:
        config.data.data_dir = FLAGS.data_dir
    config.num_train_steps = max(steps)
    if FLAGS.decay_at > 0:
        config.optimizer.boundaries, config.optimizer.boundary_unit = (FLAGS.decay_at,), 'steps'
    config.evals.val.every = f'{math.gcd(*steps)} steps'
    config.checkpoint_every = ''
    results = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    return eval_top1(os.path.join(workdir, 'tensorboard')), results['train_examples_per_s']


def main(argv):
    del argv
    print(f'devices: {jax.devices()[0].device_kind} x1; low precision: {FLAGS.dtype}')
    for name in FLAGS.step_models:
        loss_err, update_err, devices_err = one_step(FLAGS.dtype, *STEP_MODELS[name])
        print(f'one step {name:15s} vs float32: loss rel. diff {loss_err:.2e}, update rel. diff {update_err:.2e}; '
              f'{jax.local_device_count()} devices vs 1: update rel. diff {devices_err:.2e}')
    if FLAGS.skip_training:
        return
    steps = [int(s) for s in FLAGS.steps]
    with tempfile.TemporaryDirectory() as tmp:
        rows = {d: train(d, steps, os.path.join(tmp, d)) for d in ('float32', FLAGS.dtype)}
    print('quickstart top-1 at step ' + ' '.join(f'{s:>7d}' for s in steps) + '   train images/s')
    for d, (top1, speed) in rows.items():
        print(f'  {d:9s}               ' + ' '.join(f'{top1.get(s, float("nan")):7.4f}' for s in steps)
              + f'   {speed:,.0f}')


if __name__ == '__main__':
    app.run(main)
