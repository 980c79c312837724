"""Makes the Keras parity fixtures ``tests/fixtures/weights/keras_<name>.json`` (VGG16, VGG19, ResNet50).

Run with a Python that has Keras 3 (any backend; TensorFlow here) and convnets installed::

    python tools/weight_fixtures_keras.py [vgg16 vgg19 resnet50]

For each network: the Keras application is built with ``weights=None, include_top=True,
classifier_activation=None`` (logits); its weights are listed layer by layer in Keras' order as ``'<layer>/<i>'``
-> shape (the manifest: the names :func:`convnets.weights.files.read` gives the tensors of a released legacy h5
file); seeded stand-ins (:mod:`convnets.weights.seeded`, layout 'keras', seed 0) are set with
``layer.set_weights``; the model runs on ``seeded.fixed_input`` (seed 1, batch 2); the fixture records the
manifest, the roles given to the seeded generator, the seeds, the input shape, Keras' logits, the trainable
parameter count and the versions. ``tests/test_weights_keras.py`` regenerates the same tensors without Keras,
imports them through the h5 reader and compares our logits.

The script also proves that the reader reads Keras' own files: it saves the seeded model with Keras' legacy h5
writer (``save_weights_to_hdf5_group``, the layout of the released application weights), as a whole legacy
``.h5`` model (weights under ``model_weights``) and as a Keras 3 ``.weights.h5`` file, reads each back with
``convnets.weights.files.read`` and checks every tensor equals its seeded value, by name. A Keras 3
``.weights.h5`` file does not store layer names: Keras 3 addresses each layer by its class name in snake case,
made unique in the order of ``model.layers`` (``conv2d``, ``conv2d_1``, ...; keras/src/saving/saving_lib.py,
``_save_container_state``: "Do NOT address the saveable via `saveable.name`") and loads by that order, so the
reader gives names such as ``conv2d_5/0``; the check translates them with the model's layer order.

Input sizes: VGG at 224 (fc1 reads a 7x7x512 map, as in the released weights); ResNet50 at 64, the smallest
convenient size that Keras accepts without pretrained weights (its minimum is 32) and at which every stage keeps a
map of at least 2x2 with the same shapes in Keras and in our model; the weights do not depend on it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import h5py
import keras
import numpy as np
import tensorflow as tf
from keras.src.legacy.saving import legacy_h5_format
from keras.src.utils import naming

from convnets.weights import files, seeded

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, 'tests', 'fixtures', 'weights')
WEIGHT_SEED, INPUT_SEED, BATCH = 0, 1, 2
NETWORKS: dict[str, tuple[Callable[..., keras.Model], int]] = {
    'vgg16': (keras.applications.VGG16, 224),
    'vgg19': (keras.applications.VGG19, 224),
    'resnet50': (keras.applications.ResNet50, 64),
}
# The seeded generator's role of each Keras variable (by its name within the layer): BN's gamma a scale, beta and
# the moving mean shifts, the moving variance a variance; kernels He-scaled weights; biases small shifts.
ROLES = {'kernel': 'weight', 'bias': 'shift', 'gamma': 'scale', 'beta': 'shift', 'moving_mean': 'shift',
         'moving_variance': 'variance'}


def manifest(model: keras.Model) -> tuple[dict[str, list[int]], dict[str, str]]:
    """``'<layer>/<i>'`` -> shape and -> seeded role, every layer's weights in Keras' (and the h5 files') order."""
    shapes: dict[str, list[int]] = {}
    roles: dict[str, str] = {}
    for layer in model.layers:
        for i, variable in enumerate(layer.weights):
            name = f'{layer.name}/{i}'
            shapes[name] = [int(d) for d in variable.shape]
            roles[name] = ROLES[variable.name]
    return shapes, roles


def set_seeded(model: keras.Model, tensors: dict[str, np.ndarray]) -> None:
    for layer in model.layers:
        if layer.weights:
            layer.set_weights([tensors[f'{layer.name}/{i}'] for i in range(len(layer.weights))])


def keras3_layer_names(model: keras.Model) -> dict[str, str]:
    """Keras 3 ``.weights.h5`` layer key -> the layer's name: the snake-case class name, numbered from its second
    use in ``model.layers`` order (keras/src/saving/saving_lib.py ``_save_container_state``, ``_get_unique_name``)."""
    used: dict[str, int] = {}
    out = {}
    for layer in model.layers:
        key = naming.to_snake_case(layer.__class__.__name__)
        if key in used:
            used[key] += 1
            key = f'{key}_{used[key]}'
        else:
            used[key] = 0
        out[key] = layer.name
    return out


def check_reader(model: keras.Model, tensors: dict[str, np.ndarray], directory: str) -> dict[str, str]:
    """Saves ``model`` with Keras' own writers, reads each file with convnets' reader and checks every tensor."""
    paths = {'legacy_h5_weights': os.path.join(directory, 'legacy.h5'),
             'legacy_h5_model': os.path.join(directory, 'model.h5'),
             'keras3_weights_h5': os.path.join(directory, 'keras3.weights.h5')}
    with h5py.File(paths['legacy_h5_weights'], 'w') as f:  # the layout of the released application files
        legacy_h5_format.save_weights_to_hdf5_group(f, model)
    legacy_h5_format.save_model_to_hdf5(model, paths['legacy_h5_model'], include_optimizer=False)
    model.save_weights(paths['keras3_weights_h5'])
    results = {}
    for kind, path in paths.items():
        read = files.read(path)
        if kind == 'keras3_weights_h5':
            layer_names = keras3_layer_names(model)
            read = {f'{layer_names[layer]}/{i}': value
                    for (layer, i), value in ((key.rsplit('/', 1), value) for key, value in read.items())}
        assert sorted(read) == sorted(tensors), f'{kind}: names differ: {sorted(set(read) ^ set(tensors))[:10]}'
        for name, value in tensors.items():
            np.testing.assert_array_equal(read[name], value, err_msg=f'{kind}: {name}')
        results[kind] = f'{len(read)} tensors read back equal by name'
        os.remove(path)
    return results


def make(name: str) -> dict[str, Any]:
    """The fixture of network ``name`` (see the module docstring)."""
    build, size = NETWORKS[name]
    model = build(weights=None, include_top=True, classifier_activation=None, input_shape=(size, size, 3))
    shapes, roles = manifest(model)
    tensors = seeded.seeded_tensors(shapes, 'keras', seed=WEIGHT_SEED, roles=roles)
    set_seeded(model, tensors)
    input_shape = [BATCH, size, size, 3]
    x = seeded.fixed_input(input_shape, seed=INPUT_SEED)
    logits = np.asarray(model(x, training=False), np.float32)
    with tempfile.TemporaryDirectory() as directory:
        reader = check_reader(model, tensors, directory)
    trainable = int(sum(np.prod(v.shape) for v in model.trainable_weights))
    non_trainable = int(sum(np.prod(v.shape) for v in model.non_trainable_weights))
    assert trainable + non_trainable == model.count_params()
    print(f'{name}: {len(shapes)} tensors, {trainable:,} trainable + {non_trainable:,} non-trainable parameters; '
          f'reader: {reader}', file=sys.stderr)
    return {
        'framework': 'keras', 'name': name, 'layout': 'keras', 'shapes': shapes, 'roles': roles,
        'weight_seed': WEIGHT_SEED, 'input_seed': INPUT_SEED, 'input_shape': input_shape,
        'logits': [[float(v) for v in row] for row in logits], 'num_params': trainable,
        'num_non_trainable': non_trainable, 'reader_check': reader,
        'versions': {'keras': keras.__version__, 'keras_backend': keras.backend.backend(),
                     'tensorflow': tf.__version__, 'numpy': np.__version__},
        'made_by': f'tools/weight_fixtures_keras.py: keras.applications.{build.__name__}(weights=None, '
                   f'include_top=True, classifier_activation=None, input_shape=({size}, {size}, 3))',
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('names', nargs='*', help=f'networks (default: all of {", ".join(NETWORKS)})')
    names = parser.parse_args(argv).names or list(NETWORKS)
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        parser.error(f'unknown network(s) {", ".join(unknown)}; valid: {", ".join(NETWORKS)}')
    os.makedirs(OUT_DIR, exist_ok=True)
    for name in names:
        fixture = make(name)
        path = os.path.join(OUT_DIR, f'keras_{name}.json')
        with open(path, 'w') as f:
            json.dump(fixture, f, indent=1)
            f.write('\n')
        print(f'wrote {os.path.relpath(path, ROOT)}', file=sys.stderr)


if __name__ == '__main__':
    main()
