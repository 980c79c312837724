"""The parity check of imported weights against logits another framework computed (fixtures made by tools/).

A fixture ``tests/fixtures/weights/<framework>_<name>.json`` holds, for one source network: the names and shapes
of its tensors as the source framework lists them, the seeds of the weights and of the input, the input shape
(NHWC), the logits the source framework computed, its parameter count and the versions used. The check generates
the same seeded tensors (convnets.weights.seeded), writes them in the source's file format, imports them through
the same code path as a released file, runs our model and compares.
"""

from __future__ import annotations

import json
import os
from typing import Any

import jax
import numpy as np

from convnets.weights import files, importer, seeded, sources

FIXTURES = os.path.join(os.path.dirname(__file__), 'fixtures', 'weights')
RTOL = 1e-4  # relative to the largest logit magnitude (the bound for fp32 logits)


def fixture(key: str) -> dict[str, Any]:
    with open(os.path.join(FIXTURES, f'{key}.json')) as f:
        return json.load(f)


def seeded_file(fix: dict[str, Any], directory: str) -> str:
    """The fixture's seeded tensors written in the source framework's file format; returns the path."""
    tensors = seeded.seeded_tensors(fix['shapes'], fix['layout'], fix['weight_seed'], fix.get('roles'))
    if fix['layout'] == 'keras':
        layers: dict[str, list[np.ndarray]] = {}
        for name, value in tensors.items():
            layer, index = name.rsplit('/', 1)
            layers.setdefault(layer, []).append(value)
            assert int(index) == len(layers[layer]) - 1, f'{name} out of order'
        path = os.path.join(directory, f'{fix["name"]}.h5')
        files.write_keras_h5(path, layers)
    else:
        path = os.path.join(directory, f'{fix["name"]}.safetensors')
        files.write(path, tensors)
    return path


def num_params(variables: dict[str, Any]) -> int:
    return sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(variables.get('params', {})))


def check(key: str, directory: str) -> dict[str, Any]:
    """Imports the fixture's seeded weights and returns our logits against the source's, with the figures."""
    fix = fixture(key)
    source = sources.get(fix['framework'], fix['name'])
    path = seeded_file(fix, directory)
    model = importer.build_model(source)
    shape = tuple(fix['input_shape'])
    variables = importer.load_file(source, path, model, shape)
    x = seeded.fixed_input(shape, fix['input_seed'])
    ours = np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))
    theirs = np.asarray(fix['logits'], np.float32)
    max_abs = float(np.max(np.abs(ours - theirs)))
    return {'ours': ours, 'theirs': theirs, 'max_abs': max_abs, 'relative': max_abs / float(np.max(np.abs(theirs))),
            'num_params': num_params(variables), 'source_num_params': fix['num_params'], 'variables': variables,
            'source': source, 'path': path}
