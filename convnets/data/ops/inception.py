"""GoogLeNet's random-sized crop (Szegedy et al. 2014, sec 6): the box sampler and the ``inception_crop`` op.

Facts in ``shared/reference/papers.md`` 5. Works on an image ``[H, W, C]`` or every frame of a clip (one box
for all frames) under ``key``; boxes follow (see ``convnets.data.ops.boxes``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Sequence

import tensorflow as tf

from convnets.data.ops import boxes as box_ops
from convnets.data.ops.core import (
    Features,
    OpFn,
    check_image_rank,
    hw_size,
    positive_int,
    read,
    register,
    register_fused_decode,
    replace,
)
from convnets.data.ops.decode import decode_window
from convnets.data.ops.geometry import resize_float, spatial_shape


def _check_box_args(area_min, area_max, ratio_min, ratio_max, max_attempts, op: str) -> None:
    if not 0 < area_min <= area_max <= 1:
        raise ValueError(f"{op}: need 0 < area_min <= area_max <= 1, got {area_min}, {area_max}")
    if not 0 < ratio_min <= ratio_max:
        raise ValueError(f"{op}: need 0 < ratio_min <= ratio_max, got {ratio_min}, {ratio_max}")
    positive_int(max_attempts, op, "max_attempts")


def inception_crop_box(
    image_shape,
    seed: tf.Tensor,
    area_min: float = 0.08,
    area_max: float = 1.0,
    ratio_min: float = 3 / 4,
    ratio_max: float = 4 / 3,
    max_attempts: int = 10,
) -> tf.Tensor:
    """The crop box ``[top, left, height, width]`` (int32) that ``inception_crop`` takes.

    ``image_shape`` is ``(H, W, ...)`` (ints or ``tf.shape(image)``). Up to ``max_attempts``
    candidates are drawn at once from ``seed``: area ``A ~ U(area_min, area_max) * H * W`` (the
    paper's "distributed evenly"), aspect ratio ``r = w / h`` log-uniform in ``[ratio_min,
    ratio_max]`` (symmetric between portrait and landscape; the paper only says "chosen
    randomly"), ``w = round(sqrt(A r))``, ``h = round(sqrt(A / r))``. The first candidate that
    fits in the image and whose ROUNDED box still has area fraction in ``[area_min, area_max]``
    and ``w / h`` in ``[ratio_min, ratio_max]`` is taken, at a uniformly random offset.
    If none fits (rare, except for very elongated or tiny images), the fallback is the centred
    box of the whole image with its aspect ratio clamped into ``[ratio_min, ratio_max]`` (the
    whole image if it already is in range, as torchvision's RandomResizedCrop); only the
    fallback may violate the area range.
    """
    _check_box_args(area_min, area_max, ratio_min, ratio_max, max_attempts, "inception_crop_box")
    shape = tf.convert_to_tensor(image_shape)
    height, width = tf.cast(shape[0], tf.float64), tf.cast(shape[1], tf.float64)
    total = height * width
    s_area, s_ratio, s_top, s_left = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
    n = max_attempts
    area = tf.random.stateless_uniform([n], s_area, area_min, area_max, tf.float64) * total
    log_ratio = tf.random.stateless_uniform([n], s_ratio, math.log(ratio_min), math.log(ratio_max), tf.float64)
    ratio = tf.exp(log_ratio)
    w = tf.round(tf.sqrt(area * ratio))
    h = tf.round(tf.sqrt(area / ratio))
    valid = (
        (w >= 1)
        & (h >= 1)
        & (w <= width)
        & (h <= height)
        & (h * w >= area_min * total)
        & (h * w <= area_max * total)
        & (w >= ratio_min * h)
        & (w <= ratio_max * h)
    )
    first = tf.argmax(tf.cast(valid, tf.int32), output_type=tf.int32)
    # Fallback: centred, largest box with w / h clamped into [ratio_min, ratio_max].
    image_ratio = width / height
    fb_w = tf.where(image_ratio > ratio_max, tf.floor(height * ratio_max + 1e-9), width)
    fb_h = tf.where(image_ratio < ratio_min, tf.floor(width / ratio_min + 1e-9), height)
    found = tf.reduce_any(valid)
    box_h = tf.maximum(tf.where(found, h[first], fb_h), 1.0)
    box_w = tf.maximum(tf.where(found, w[first], fb_w), 1.0)
    u_top = tf.random.stateless_uniform([], s_top, dtype=tf.float64)
    u_left = tf.random.stateless_uniform([], s_left, dtype=tf.float64)
    top = tf.where(found, tf.minimum(tf.floor(u_top * (height - box_h + 1)), height - box_h), (height - box_h) // 2)
    left = tf.where(found, tf.minimum(tf.floor(u_left * (width - box_w + 1)), width - box_w), (width - box_w) // 2)
    return tf.cast(tf.stack([top, left, box_h, box_w]), tf.int32)


def _crop_resized(
    features: Features, key: str, boxes_key, crop: tf.Tensor, box, out_hw: tuple[int, int], antialias: bool
) -> Features:
    """Features with ``crop`` (the box ``[top, left, h, w]`` of features[key]) resized to ``out_hw``; boxes follow."""
    top, left, h, w = box
    out_h, out_w = out_hw
    out = resize_float(crop, (out_h, out_w), antialias=antialias)
    out.set_shape([*crop.shape[:-3], out_h, out_w, crop.shape[-1]])

    def follow(b: tf.Tensor) -> tf.Tensor:
        # Clipped after scaling, so that rounding cannot put an edge past the output border.
        b = box_ops.scale(box_ops.shift(b, -top, -left), out_h / h, out_w / w)
        return box_ops.clip(b, out_h, out_w)

    return replace(box_ops.transform(features, boxes_key, follow), key, out)


def _inception_args(size, area_min, area_max, ratio_min, ratio_max, max_attempts, key, boxes_key):
    """(output size, box sampler arguments, boxes key) of ``inception_crop`` and its fused decode, checked once."""
    _check_box_args(area_min, area_max, ratio_min, ratio_max, max_attempts, "inception_crop")
    box_args = (area_min, area_max, ratio_min, ratio_max, max_attempts)
    return hw_size(size, "inception_crop"), box_args, box_ops.follow(key, boxes_key)


@register("inception_crop")
def inception_crop(
    size: int | Sequence[int],
    area_min: float = 0.08,
    area_max: float = 1.0,
    ratio_min: float = 3 / 4,
    ratio_max: float = 4 / 3,
    max_attempts: int = 10,
    antialias: bool = False,
    *,
    key: str = "image",
    boxes_key: str | None = None,
) -> OpFn:
    """GoogLeNet's random-sized crop (sec 6), resized bilinearly to ``size``; float32, 0..255 units.

    Sec 6: "sampling of various sized patches of the image whose size is distributed evenly
    between 8% and 100% of the image area and whose aspect ratio is chosen randomly between 3/4
    and 4/3". The box comes from ``inception_crop_box`` (own stateless sampler, seeded by the
    example's seed; see there for the distributions and the centred fallback when sampling
    fails), then the crop is resized to ``size`` (an int or (h, w)) with ``tf.image.resize``.
    Boxes are cropped, clipped and scaled alike. Spec strings take literals only: write
    ``ratio_min=0.75``, not ``3/4``. Right after ``decode`` (``'decode(3)|inception_crop(224)'``) on a JPEG,
    only the box is decoded (``inception_crop_fused``): same box, same pixels, less work.
    """
    out_hw, box_args, boxes_key = _inception_args(size, area_min, area_max, ratio_min, ratio_max, max_attempts,
                                                  key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "inception_crop")
        check_image_rank(image, "inception_crop", key)
        top, left, h, w = tf.unstack(inception_crop_box(tf.stack(spatial_shape(image)), seed, *box_args))
        leading = image.shape.rank - 3
        crop = tf.slice(image, tf.stack([0] * leading + [top, left, 0]), tf.stack([-1] * leading + [h, w, -1]))
        crop.set_shape([*image.shape[:-3], None, None, image.shape[-1]])
        return _crop_resized(features, key, boxes_key, crop, (top, left, h, w), out_hw, antialias)

    return fn


@register_fused_decode("inception_crop")
def inception_crop_fused(channels: int | None, *args, **kwargs) -> OpFn:
    """``decode(channels)|inception_crop(*args, **kwargs)`` for one ENCODED image: the box is drawn from the encoded
    image's shape (``tf.io.extract_jpeg_shape``), with the same seed, and only the box is decoded
    (``decode_window``). The arguments are ``inception_crop``'s, bound to its signature (one set of defaults)."""
    bound = inspect.signature(inception_crop).bind(*args, **kwargs)
    bound.apply_defaults()
    a = bound.arguments
    key, antialias = a["key"], a["antialias"]
    out_hw, box_args, boxes_key = _inception_args(a["size"], a["area_min"], a["area_max"], a["ratio_min"],
                                                  a["ratio_max"], a["max_attempts"], key, a["boxes_key"])

    def fn(features: Features, seed: tf.Tensor) -> Features:
        encoded = read(features, key, "inception_crop")
        crop, box = decode_window(encoded, channels, lambda shape: inception_crop_box(shape[:2], seed, *box_args))
        return _crop_resized(features, key, boxes_key, crop, tf.unstack(box), out_hw, antialias)

    return fn
