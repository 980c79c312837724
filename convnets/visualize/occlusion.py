"""Occlusion sensitivity (Zeiler and Fergus 2013, sec. 4.2, Fig. 7).

A grey square of ``patch x patch`` pixels slides over the image with ``stride``; at each position the occluded
image goes through the model (all positions batched) and three maps are recorded:

(a) ``activation``: the total activation (sum over positions) of the strongest feature map of ``layer``, the map
    chosen on the unoccluded image (largest total activation);
(b) ``probability``: the softmax probability of the correct class ``label``;
(c) ``class``: the most probable class.

Positions: no padding, the square always lies inside the image. Position ``(i, j)`` covers rows
``[i*stride, i*stride + patch)`` and columns ``[j*stride, j*stride + patch)``; the maps have shape
``(floor((H - patch) / stride) + 1, floor((W - patch) / stride) + 1)`` (`map_shape`).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def map_shape(height: int, width: int, patch: int, stride: int) -> tuple[int, int]:
    """Shape of the occlusion maps for an ``height x width`` image."""
    if patch < 1 or stride < 1:
        raise ValueError(f'occlusion patch and stride must be >= 1, got {patch} and {stride}')
    if patch > height or patch > width:
        raise ValueError(f'occlusion patch {patch} is larger than the image {height}x{width}')
    return (height - patch) // stride + 1, (width - patch) // stride + 1


def occluded_images(image: np.ndarray, patch: int, stride: int, fill: float | None = None) -> np.ndarray:
    """All occluded copies of ``image`` [H, W, C], row-major over positions: [rows * cols, H, W, C].

    ``fill``: the grey value of the square; None -> the image mean (per channel).
    """
    image = np.asarray(image, np.float32)
    h, w, _ = image.shape
    rows, cols = map_shape(h, w, patch, stride)
    value = image.mean(axis=(0, 1)) if fill is None else np.float32(fill)
    out = np.repeat(image[None], rows * cols, axis=0)
    for i in range(rows):
        for j in range(cols):
            out[i * cols + j, i * stride:i * stride + patch, j * stride:j * stride + patch] = value
    return out


def _forward(model: nn.Module, layer: str | None):
    @jax.jit
    def run(variables, x):
        logits, state = model.apply(variables, x, train=False, mutable=['intermediates'])
        probs = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
        if layer is None:
            return probs, None
        act = state['intermediates'][layer]
        act = act[0] if isinstance(act, tuple) else act
        # Total activation of each feature map (sum over spatial positions; dense layers: the unit itself).
        totals = act.reshape(act.shape[0], -1, act.shape[-1]).sum(axis=1)
        return probs, totals.astype(jnp.float32)

    return run


def occlusion_maps(model: nn.Module, variables: Any, image: np.ndarray, label: int, *, patch: int, stride: int,
                   layer: str | None, fill: float | None = None, batch_size: int = 256) -> dict[str, Any]:
    """The three occlusion maps of ``image`` [H, W, C] with correct class ``label`` (see the module docstring).

    Returns ``{'activation': float [R, C] (None when layer is None), 'probability': float [R, C],
    'class': int [R, C], 'feature': the chosen feature map of layer (or None), 'unoccluded_probability',
    'unoccluded_class'}``.
    """
    image = np.asarray(image, np.float32)
    rows, cols = map_shape(image.shape[0], image.shape[1], patch, stride)
    run = _forward(model, layer)
    probs0, totals0 = run(variables, image[None])
    feature = None if totals0 is None else int(np.argmax(np.asarray(totals0)[0]))
    batch = occluded_images(image, patch, stride, fill)
    probs, acts = [], []
    for start in range(0, len(batch), batch_size):
        chunk = batch[start:start + batch_size]
        n = len(chunk)
        if n < batch_size and len(batch) > batch_size:  # Keep one compiled shape: pad the last chunk.
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
        p, t = run(variables, chunk)
        probs.append(np.asarray(p)[:n])
        if t is not None:
            acts.append(np.asarray(t)[:n, feature])
    probs = np.concatenate(probs)
    return {
        'activation': np.concatenate(acts).reshape(rows, cols) if acts else None,
        'probability': probs[:, int(label)].reshape(rows, cols),
        'class': np.argmax(probs, axis=-1).reshape(rows, cols),
        'feature': feature,
        'unoccluded_probability': float(np.asarray(probs0)[0, int(label)]),
        'unoccluded_class': int(np.argmax(np.asarray(probs0)[0])),
    }
