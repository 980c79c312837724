"""A released weight file -> the variables of one of our models, through the source's mapping (and back)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from convnets import models
from convnets.weights import files, mapping
from convnets.weights.sources import Source

DEFAULT_INPUT = (1, 224, 224, 3)


def build_model(source: Source, **overrides: Any) -> nn.Module:
    """Our model for ``source`` (its ``model`` config section, with ``overrides``)."""
    config = {**source.model, **overrides}
    return models.get_model(config.pop('name'), **config)


def variable_shapes(model: nn.Module, input_shape: Sequence[int] = DEFAULT_INPUT) -> dict[str, tuple[int, ...]]:
    """Flat path -> shape of every variable ``model.init`` makes (params and batch_stats; no compute)."""
    abstract = jax.eval_shape(lambda: model.init({'params': jax.random.PRNGKey(0), 'dropout': jax.random.PRNGKey(0)},
                                                 jnp.zeros(tuple(input_shape), jnp.float32), train=False))
    return {k: tuple(v.shape) for k, v in mapping.flatten(abstract).items() if not k.startswith('intermediates/')}


def sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def convert_tensors(source: Source, tensors: Mapping[str, np.ndarray], model: nn.Module,
                    input_shape: Sequence[int] = DEFAULT_INPUT, *, what: str | None = None) -> dict[str, Any]:
    """The nested variables ``{'params': ..., 'batch_stats': ...}`` of ``model`` from ``source``'s tensors."""
    flat = mapping.convert(tensors, source.mapping(), variable_shapes(model, input_shape), ignore=source.ignore,
                           what=what or f'The {source.framework} {source.name} weights')
    return mapping.unflatten(flat)


def load_file(source: Source, path: str, model: nn.Module | None = None,
              input_shape: Sequence[int] = DEFAULT_INPUT) -> dict[str, Any]:
    """The variables of ``model`` (default: the source's model) read from the weight file at ``path``."""
    model = model or build_model(source)
    tensors = files.read(path)
    return convert_tensors(source, tensors, model, input_shape, what=f'The tensors of {path}')


def export_tensors(source: Source, variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The source framework's tensors (its names and layouts) from our nested ``variables``; tensors the mapping
    ignores on import are written with neutral values (torch's ``num_batches_tracked`` counters as 0)."""
    flat = {k: np.asarray(v) for k, v in mapping.flatten(variables).items()}
    out = mapping.export(flat, source.mapping())
    if source.framework == 'torchvision':
        for name in list(out):
            if name.endswith('.running_var'):
                out[name.removesuffix('running_var') + 'num_batches_tracked'] = np.zeros((), np.int64)
    return out
