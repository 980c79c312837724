"""Small image helpers for the visualisations: scaling to uint8, colour maps, grids, upsampling, PNG files.

Everything here works on numpy arrays: images are ``uint8`` ``HxWx1`` (grey) or ``HxWx3`` (RGB).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from etils import epath
from PIL import Image

# Anchor colours of matplotlib's 'viridis' (dark blue -> green -> yellow), interpolated linearly.
_VIRIDIS = np.array([[68, 1, 84], [72, 40, 120], [62, 74, 137], [49, 104, 142], [38, 130, 142],
                     [31, 158, 137], [53, 183, 121], [109, 205, 89], [180, 222, 44], [253, 231, 37]], np.float64)
# A categorical palette (tab10) for class maps; class c gets colour c mod 10.
TAB10 = np.array([[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189],
                  [140, 86, 75], [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]], np.uint8)


def to_uint8(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scales ``x`` linearly so that ``lo`` (default: min) -> 0 and ``hi`` (default: max) -> 255; constant -> 0."""
    x = np.asarray(x, np.float64)
    lo = float(np.min(x)) if lo is None else lo
    hi = float(np.max(x)) if hi is None else hi
    if hi <= lo:
        return np.zeros(x.shape, np.uint8)
    return np.round(np.clip((x - lo) / (hi - lo), 0.0, 1.0) * 255.0).astype(np.uint8)


def as_display(image: np.ndarray) -> np.ndarray:
    """A model input (any value range, HxWxC) as uint8 for display: min/max scaled; C not in (1, 3) -> mean."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[-1] not in (1, 3):
        image = image.mean(axis=-1, keepdims=True)
    return image if image.dtype == np.uint8 else to_uint8(image)


def colormap(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """A 2-D map as an RGB uint8 image with the viridis colour map (``lo``/``hi`` as in `to_uint8`)."""
    t = to_uint8(x, lo, hi).astype(np.float64) / 255.0 * (len(_VIRIDIS) - 1)
    i = np.minimum(np.floor(t).astype(int), len(_VIRIDIS) - 2)
    f = (t - i)[..., None]
    return np.round(_VIRIDIS[i] * (1 - f) + _VIRIDIS[i + 1] * f).astype(np.uint8)


def class_colormap(classes: np.ndarray) -> np.ndarray:
    """A 2-D map of integer class ids as an RGB uint8 image (tab10 palette, id mod 10)."""
    return TAB10[np.asarray(classes, np.int64) % len(TAB10)]


def upsample(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upsampling of an HxW[xC] image by an integer factor."""
    image = np.asarray(image)
    if factor <= 1:
        return image
    return np.repeat(np.repeat(image, factor, axis=0), factor, axis=1)


def resize_nearest(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an HxW[xC] image to ``height x width`` (e.g. an occlusion map to image size)."""
    image = np.asarray(image)
    rows = np.minimum((np.arange(height) * image.shape[0]) // height, image.shape[0] - 1)
    cols = np.minimum((np.arange(width) * image.shape[1]) // width, image.shape[1] - 1)
    return image[rows][:, cols]


def grid_shape(n: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid for ``n`` tiles (``cols`` fixed if given)."""
    cols = cols or max(1, math.ceil(math.sqrt(n)))
    return max(1, math.ceil(n / cols)), cols


def tile(tiles: Sequence[np.ndarray], cols: int | None = None, pad: int = 1, pad_value: int = 255) -> np.ndarray:
    """Tiles equally-shaped HxWxC uint8 images into a grid with ``pad`` pixels between and around them.

    Shape: ``(rows * H + (rows + 1) * pad, cols * W + (cols + 1) * pad, C)``; unused slots are ``pad_value``.
    """
    tiles = [np.asarray(t) for t in tiles]
    if not tiles:
        raise ValueError('tile() needs at least one image')
    h, w, c = tiles[0].shape
    rows, cols = grid_shape(len(tiles), cols)
    out = np.full((rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c), pad_value, np.uint8)
    for k, t in enumerate(tiles):
        r, q = divmod(k, cols)
        y, x = pad + r * (h + pad), pad + q * (w + pad)
        out[y:y + h, x:x + w] = t
    return out


def same_channels(*images: np.ndarray) -> list[np.ndarray]:
    """Converts grey images to RGB when any of them is RGB, so that they can be tiled together."""
    rgb = any(np.asarray(i).shape[-1] == 3 for i in images)
    return [np.repeat(i, 3, axis=-1) if rgb and i.shape[-1] == 1 else np.asarray(i) for i in images]


def hstack(images: Sequence[np.ndarray], gap: int = 4, pad_value: int = 255) -> np.ndarray:
    """Puts images side by side (top-aligned) with ``gap`` pixels between them."""
    images = same_channels(*images)
    h = max(i.shape[0] for i in images)
    w = sum(i.shape[1] for i in images) + gap * (len(images) - 1)
    out = np.full((h, w, images[0].shape[-1]), pad_value, np.uint8)
    x = 0
    for i in images:
        out[:i.shape[0], x:x + i.shape[1]] = i
        x += i.shape[1] + gap
    return out


def save_png(path: str, image: np.ndarray) -> str:
    """Writes an HxW, HxWx1 or HxWx3 uint8 image as PNG (creating the directory); returns ``path``."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f'save_png expects uint8, got {image.dtype}')
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    target = epath.Path(path)  # a local or gs:// path (the workdir may be on GCS)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open('wb') as f:
        Image.fromarray(image).save(f, format='PNG')
    return path
