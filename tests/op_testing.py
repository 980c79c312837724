"""Helpers shared by the preprocessing-op tests: test images, and applying an op eagerly and inside tf.data."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

SEED = tf.constant([7, 11], tf.int64)


def _image(h, w, c=3, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, c)).astype(np.uint8)


def _coords(h, w) -> np.ndarray:
    """Float image whose two channels are each pixel's row and column."""
    y, x = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    return np.stack([y, x], axis=-1).astype(np.float32)


def _dynamic(images, seeds=None) -> tf.data.Dataset:
    """Dataset of ({'image', 'label'}, seed) with image height and width unknown (None), as from ImageNet."""
    seeds = seeds or [SEED] * len(images)
    spec = tf.TensorSpec([None, None, images[0].shape[-1]], tf.as_dtype(images[0].dtype))
    return tf.data.Dataset.from_generator(
        lambda: (({"image": im, "label": 3}, s) for im, s in zip(images, seeds, strict=True)),
        output_signature=({"image": spec, "label": tf.TensorSpec([], tf.int32)}, tf.TensorSpec([2], tf.int64)),
    )


def _apply(fn, image, seed=SEED, key="image") -> np.ndarray:
    """Applies fn eagerly, in tf.data with static and with dynamic (None) image shape; all must agree.

    Returns the output feature ``key`` ('crops' for the multi-view ops).
    """
    eager = fn({"image": tf.constant(image), "label": tf.constant(3)}, seed)[key].numpy()
    static = tf.data.Dataset.from_tensors(({"image": image, "label": 3}, seed)).map(fn)
    for ds in (static, _dynamic([image], [seed]).map(fn)):
        out = next(iter(ds))
        np.testing.assert_array_equal(out[key].numpy(), eager)
        assert int(out["label"]) == 3
    return eager


def _eager(fn, image, seed=SEED, key="image") -> np.ndarray:
    return fn({"image": tf.constant(image)}, seed)[key].numpy()
