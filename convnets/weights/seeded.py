"""Seeded stand-ins for released weights, in the source framework's own layout, for the parity tests.

Numpy only and free of package imports, so that the fixture scripts in ``tools/`` load it by path in an environment
with torch or Keras and without JAX. The same names, shapes and seed give the same arrays in both places.

Values are chosen so that a deep network's logits stay finite and informative: conv and linear weights
N(0, 2 / fan_in) (He), BatchNorm scales U(0.5, 1.5), shifts and running means N(0, 0.1), running variances
U(0.5, 1.5), biases N(0, 0.1). Each tensor has its own stream (seeded by the seed and the CRC of its name), so a
tensor's values do not depend on which other tensors exist.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence

import numpy as np

LAYOUTS = ('torch', 'keras')


def _fan_in(shape: Sequence[int], layout: str) -> int:
    if layout == 'torch':  # (out, in, kh, kw) or (out, in)
        return math.prod(shape[1:])
    return math.prod(shape[:-1])  # keras: (kh, kw, in, out) or (in, out)


def _role(name: str, shape: Sequence[int]) -> str:
    leaf = name.rsplit('.', 1)[-1].rsplit('/', 1)[-1]
    if leaf == 'num_batches_tracked':
        return 'counter'
    if 'running_var' in leaf or 'moving_variance' in leaf:
        return 'variance'
    if len(shape) >= 2:
        return 'weight'
    return 'scale' if leaf in ('weight', 'gamma') else 'shift'


def seeded_tensor(name: str, shape: Sequence[int], layout: str, seed: int = 0, role: str | None = None
                  ) -> np.ndarray:
    """One tensor (see the module docstring); ``role`` overrides what the name and shape suggest."""
    if layout not in LAYOUTS:
        raise ValueError(f'layout must be one of {LAYOUTS}, got {layout!r}')
    shape = tuple(int(d) for d in shape)
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    role = role or _role(name, shape)
    if role == 'counter':
        return np.zeros(shape, np.int64)
    if role == 'weight':
        return (rng.standard_normal(shape, np.float32) * np.float32(math.sqrt(2.0 / _fan_in(shape, layout))))
    if role in ('scale', 'variance'):
        return rng.uniform(0.5, 1.5, shape).astype(np.float32)
    return (rng.standard_normal(shape, np.float32) * np.float32(0.1))


def seeded_tensors(shapes: Mapping[str, Sequence[int]], layout: str, seed: int = 0,
                   roles: Mapping[str, str] | None = None) -> dict[str, np.ndarray]:
    """Every tensor of ``shapes`` (name -> shape), in the order given. ``roles``: per-name overrides."""
    roles = roles or {}
    return {name: seeded_tensor(name, shape, layout, seed, roles.get(name)) for name, shape in shapes.items()}


def fixed_input(shape: Sequence[int], seed: int = 1) -> np.ndarray:
    """The parity input, NHWC float32, N(0, 1) (what a normalised image looks like to the first layer)."""
    return np.random.default_rng(seed).standard_normal(tuple(shape), np.float32)
