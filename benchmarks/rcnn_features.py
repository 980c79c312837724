"""R-CNN feature extraction benchmark: regions/s of warping + the classifier's forward pass, on the local devices.

  python benchmarks/rcnn_features.py --config=experiments/rcnn_alexnet_voc07.py [--images=2] [--regions=2000]
      [--chunk=256] [--canvas=500] [--repeats=3]

What R-CNN's test time is made of (sec. 2.2 "Test-time detection": "13s/image on a GPU or 53s/image on a CPU" for
~2000 regions with AlexNet): every proposal of an image warped to the network's input (227 for AlexNet, with 16
pixels of context) and pushed through it, here to fc7 and pool5 as the 'rcnn_svm' evaluator does
(`convnets.evaluate.region_features.extract`: on device, `chunk` regions per classifier call). Synthetic images
(a `canvas` square) and random proposals; random weights (the speed does not depend on them). Prints compile
time, seconds per image and regions/s.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from convnets.evaluate import region_features
from convnets.tasks import base

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'An R-CNN experiment config.', lock_config=True)
flags.DEFINE_integer('images', 2, 'Images per call.')
flags.DEFINE_integer('regions', 2000, 'Proposals per image (R-CNN: ~2000 selective search boxes).')
flags.DEFINE_integer('chunk', 256, 'Regions per classifier call (the evaluator\'s region_chunk).')
flags.DEFINE_integer('canvas', 500, 'Image side (VOC images are at most 500 px).')
flags.DEFINE_integer('repeats', 3, 'Timed calls after compilation.')
flags.mark_flag_as_required('config')


def main(argv):
    del argv
    config = FLAGS.config
    model = base.build_model(config.model)
    size = config.rcnn.warp_size
    variables = jax.jit(lambda: model.init(jax.random.key(0), jnp.zeros((1, size, size, 3))))()
    b, p, s = FLAGS.images, FLAGS.regions, FLAGS.canvas
    rng = np.random.default_rng(0)
    corner = rng.uniform(0, s - 40, size=(b, p, 2))
    extent = rng.uniform(20, s / 2, size=(b, p, 2))
    props = np.concatenate([corner, np.minimum(corner + extent, s)], axis=-1).astype(np.float32)
    g = 4
    batch = {'image': jnp.asarray(rng.normal(size=(b, s, s, 3)).astype(np.float32)),
             'proposals': jnp.asarray(props), 'proposal_mask': jnp.ones((b, p), bool),
             'boxes': jnp.asarray(props[:, :g]), 'box_classes': jnp.zeros((b, g), jnp.int32),
             'box_mask': jnp.ones((b, g), bool), 'box_difficult': jnp.zeros((b, g), bool)}
    config.unlock()
    config.detection.proposals = 'batch'
    layers = tuple(sorted({config.evals.val.layer, config.evals.val.bbox_layer}))
    fn = jax.jit(lambda v, x: region_features.extract(config, model, v, x, layers=layers, softmax=True,
                                                      num_classes=config.model.num_classes - 1, chunk=FLAGS.chunk))
    start = time.time()
    jax.block_until_ready(fn(variables, batch))
    compile_s = time.time() - start
    start = time.time()
    for _ in range(FLAGS.repeats):
        jax.block_until_ready(fn(variables, batch))
    per_call = (time.time() - start) / FLAGS.repeats
    regions = b * (p + g)
    print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}  model: {config.model.name} at {size}x{size}  '
          f'layers: {",".join(layers)}  chunk: {FLAGS.chunk}')
    print(f'compile_s: {compile_s:.1f}')
    print(f's_per_image: {per_call / b:.2f}  ({p + g} regions)')
    print(f'regions_per_s: {regions / per_call:.1f}')


if __name__ == '__main__':
    app.run(main)
