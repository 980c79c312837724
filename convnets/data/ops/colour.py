"""Value and colour-space ops: value ranges, normalization, mean subtraction, channel conversions.

They change pixel values only, so they work on any stack of pixels under ``key`` (an image ``[H, W, C]``,
a clip ``[T, H, W, C]``, or views ``[V, h, w, C]`` with ``key='crops'``) and never touch boxes. Inputs are in
0..255 units (uint8 or float32); value ops return float32.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from convnets.data.ops.core import Features, OpFn, per_channel, read, register, replace


@register("to_rgb")
def to_rgb(*, key: str = "image") -> OpFn:
    """Replicates a single channel to three; a no-op for 3-channel images."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "to_rgb")
        if image.shape[-1] == 3:
            return dict(features)
        if image.shape[-1] != 1:
            raise ValueError(f"to_rgb expects 1 or 3 (static) channels, got shape {image.shape}")
        return replace(features, key, tf.image.grayscale_to_rgb(image))

    return fn


@register("rgb_to_bgr")
def rgb_to_bgr(*, key: str = "image") -> OpFn:
    """Reverses the channel order (RGB -> BGR, or back): the Caffe-trained weights of the Keras applications and
    the original VGG / ResNet releases take BGR input."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "rgb_to_bgr")
        if image.shape[-1] != 3:
            raise ValueError(f"rgb_to_bgr expects 3 (static) channels, got shape {image.shape}")
        return replace(features, key, tf.reverse(image, axis=[-1]))

    return fn


@register("to_grayscale")
def to_grayscale(*, key: str = "image") -> OpFn:
    """Converts RGB to one luma channel (ITU-R 601 weights); a no-op for 1-channel images."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "to_grayscale")
        if image.shape[-1] == 1:
            return dict(features)
        if image.shape[-1] != 3:
            raise ValueError(f"to_grayscale expects 1 or 3 (static) channels, got shape {image.shape}")
        return replace(features, key, tf.image.rgb_to_grayscale(image))

    return fn


@register("value_range")
def value_range(lo: float, hi: float, *, key: str = "image") -> OpFn:
    """Maps 0..255 linearly to [lo, hi] as float32 (LeNet-5: lo=-0.1, hi=1.175)."""
    lo, hi = float(lo), float(hi)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(read(features, key, "value_range"), tf.float32)
        return replace(features, key, lo + image * ((hi - lo) / 255.0))

    return fn


@register("normalize")
def normalize(mean: float | Sequence[float], std: float | Sequence[float], *, key: str = "image") -> OpFn:
    """Per-channel ``(x - mean) / std`` with mean and std in 0..255 units; float32."""
    mean_l, std_l = per_channel(mean, "normalize"), per_channel(std, "normalize")
    if any(s <= 0 for s in std_l):
        raise ValueError(f"normalize: std must be positive, got {std!r}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(read(features, key, "normalize"), tf.float32)
        return replace(features, key, (image - tf.constant(mean_l)) / tf.constant(std_l))

    return fn


@register("to_float")
def to_float(*, key: str = "image") -> OpFn:
    """Maps 0..255 to 0..1 float32."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return replace(features, key, tf.cast(read(features, key, "to_float"), tf.float32) / 255.0)

    return fn


@register("subtract_mean")
def subtract_mean(mean: float | Sequence[float], *, key: str = "image") -> OpFn:
    """Subtracts a per-channel mean (0..255 units, one number or one per channel); float32.

    AlexNet sec 2: "subtracting the mean activity over the training set from each pixel";
    VGG sec 2.1: "subtracting the mean RGB value, computed on the training set". See
    ``convnets.data.constants.IMAGENET_RGB_MEAN``.
    """
    mean_l = per_channel(mean, "subtract_mean")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(read(features, key, "subtract_mean"), tf.float32)
        return replace(features, key, image - tf.constant(mean_l))

    return fn


def _load_npy(path: str) -> np.ndarray:
    if not tf.io.gfile.exists(path):
        raise ValueError(f"mean image file {path!r} does not exist")
    with tf.io.gfile.GFile(path, "rb") as f:
        mean = np.load(f, allow_pickle=False)
    if mean.ndim != 3:
        raise ValueError(f"mean image {path!r} must be (H, W, C), got shape {mean.shape}")
    return mean.astype(np.float32)


@register("subtract_mean_image")
def subtract_mean_image(path: str, *, key: str = "image") -> OpFn:
    """Subtracts a per-pixel mean image (ZF Net sec 3: "subtracting the per-pixel mean"); float32.

    ``path`` is a ``.npy`` file (local or any tf.io.gfile path) holding an (H, W, C) array in
    0..255 units, e.g. written with ``np.save(path, compute_mean_image(...))``; it is read
    once, when the op is built. The image (every frame of a clip) must already have shape (H, W, C): a
    mismatch is a ValueError naming both shapes when the shape is static, and an InvalidArgumentError with
    both shapes when it is only known at run time (inside tf.data).
    """
    mean_np = _load_npy(path)
    mean = tf.constant(mean_np)
    expected = list(mean_np.shape)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(read(features, key, "subtract_mean_image"), tf.float32)
        if image.shape.rank is None or image.shape.rank < 3 or not image.shape[-3:].is_compatible_with(expected):
            raise ValueError(
                f"subtract_mean_image: image shape {image.shape.as_list()} != mean image shape {expected} "
                f"from {path!r}; resize/crop to {expected[:2]} first"
            )
        if not image.shape[-3:].is_fully_defined():
            check = tf.debugging.assert_equal(
                tf.shape(image)[-3:],
                expected,
                message=f"subtract_mean_image: image shape (x) != mean image shape {expected} (y) from {path!r}",
            )
            with tf.control_dependencies([check]):
                image = tf.ensure_shape(tf.identity(image), [*image.shape[:-3], *expected])
        return replace(features, key, image - mean)

    return fn


def compute_mean_image(source: Iterable, key: str = "image", max_examples: int | None = None) -> np.ndarray:
    """Mean image (float32, (H, W, C)) of equally sized images, for ``subtract_mean_image``.

    ``source`` yields single images (H, W, C), batches (B, H, W, C), or dicts holding either
    under ``key``; a ``tf.data.Dataset`` is iterated as numpy. Sums in float64. For ZF Net,
    feed the training images after ``decode|resize_short(256)|center_crop(256)``.
    """
    if isinstance(source, tf.data.Dataset):
        source = source.as_numpy_iterator()
    total, count = None, 0
    for item in source:
        images = np.asarray(item[key] if isinstance(item, dict) else item, np.float64)
        if images.ndim == 3:
            images = images[None]
        if images.ndim != 4:
            raise ValueError(f"compute_mean_image: expected (H, W, C) or (B, H, W, C), got shape {images.shape}")
        if max_examples is not None:
            images = images[: max(0, max_examples - count)]
        if total is None:
            total = np.zeros(images.shape[1:], np.float64)
        if images.shape[1:] != total.shape:
            raise ValueError(f"compute_mean_image: image shape {images.shape[1:]} != first image shape {total.shape}")
        total += images.sum(axis=0)
        count += images.shape[0]
        if max_examples is not None and count >= max_examples:
            break
    if not count:
        raise ValueError("compute_mean_image: no images")
    return (total / count).astype(np.float32)
