"""GoogLeNet (and ResNet) preprocessing ops (registered into ``convnets.data.ops``).

Section numbers refer to Szegedy et al. 2014, "Going deeper with convolutions" (facts in
``shared/reference/papers.md`` 5; ResNet in 6). Same conventions as ``convnets.data.ops``:
per-example, pure functions of (example, seed), eager and inside ``tf.data`` on images of
dynamic height and width; pixel values stay in 0..255 units and the outputs are float32.

Paper recipes as spec strings (``M`` = ``IMAGENET_RGB_MEAN`` of ``ops_imagenet``)::

    GoogLeNet train:        decode(3)|inception_crop(224)|flip_lr|photometric_distort|subtract_mean(M)
    GoogLeNet eval (scale): decode(3)|subtract_mean(M)|googlenet_crops(224, 256)   # 36 views; 256/288/320/352
    ResNet train:           decode(3)|random_resize_short(256, 480)|random_crop(224)|flip_lr|pca_lighting|...

GoogLeNet's 144-crop evaluation (sec 7) is ``googlenet_crops`` at the four scales 256, 288, 320 and
352, one evaluation view per scale (4 x 36 = 144 crops), with the softmax averaged over all crops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import tensorflow as tf

from convnets.data.ops import Features, OpFn, _hw, _with_image, register
from convnets.data.ops_imagenet import _crop, _five_windows, _positive_int, _resize_short

# Order of the 36 views of googlenet_crops: view = 18 * mirrored + 6 * square + crop.
GOOGLENET_SQUARES = ("left_or_top", "centre", "right_or_bottom")
GOOGLENET_CROPS = ("top_left", "top_right", "bottom_left", "bottom_right", "centre", "whole_square")


def _check_box_args(area_min, area_max, ratio_min, ratio_max, max_attempts, op: str) -> None:
    if not 0 < area_min <= area_max <= 1:
        raise ValueError(f"{op}: need 0 < area_min <= area_max <= 1, got {area_min}, {area_max}")
    if not 0 < ratio_min <= ratio_max:
        raise ValueError(f"{op}: need 0 < ratio_min <= ratio_max, got {ratio_min}, {ratio_max}")
    _positive_int(max_attempts, op, "max_attempts")


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


@register("inception_crop")
def inception_crop(
    size: int | Sequence[int],
    area_min: float = 0.08,
    area_max: float = 1.0,
    ratio_min: float = 3 / 4,
    ratio_max: float = 4 / 3,
    max_attempts: int = 10,
    antialias: bool = False,
) -> OpFn:
    """GoogLeNet's random-sized crop (sec 6), resized bilinearly to ``size``; float32, 0..255 units.

    Sec 6: "sampling of various sized patches of the image whose size is distributed evenly
    between 8% and 100% of the image area and whose aspect ratio is chosen randomly between 3/4
    and 4/3". The box comes from ``inception_crop_box`` (own stateless sampler, seeded by the
    example's seed; see there for the distributions and the centred fallback when sampling
    fails), then the crop is resized to ``size`` (an int or (h, w)) with ``tf.image.resize``.
    Spec strings take literals only: write ``ratio_min=0.75``, not ``3/4``.
    """
    out_h, out_w = _hw(size, "inception_crop")
    _check_box_args(area_min, area_max, ratio_min, ratio_max, max_attempts, "inception_crop")
    box_args = (area_min, area_max, ratio_min, ratio_max, max_attempts)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        top, left, h, w = tf.unstack(inception_crop_box(tf.shape(image), seed, *box_args))
        crop = tf.slice(image, tf.stack([top, left, 0]), tf.stack([h, w, -1]))
        out = tf.image.resize(tf.cast(crop, tf.float32), (out_h, out_w), antialias=antialias)
        out.set_shape([out_h, out_w, image.shape[-1]])
        return _with_image(features, out)

    return fn


PHOTOMETRIC_COMPONENTS = ("brightness", "contrast", "saturation", "hue")


@register("photometric_distort")
def photometric_distort(
    brightness: float = 32.0,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.2,
    random_order: bool = True,
) -> OpFn:
    """GoogLeNet's "photometric distortions" (sec 6, after Howard 2013); float32 in [0, 255].

    The paper gives no strengths. The defaults are those of the TensorFlow-Slim Inception
    preprocessing (``distort_color``): brightness delta ``U(-32, 32)`` (0..255 units), contrast
    factor ``U(1 - contrast, 1 + contrast)`` = [0.5, 1.5] (``tf.image.adjust_contrast``: about
    each channel's mean), saturation factor ``U(1 - saturation, 1 + saturation)`` = [0.5, 1.5],
    hue shift ``U(-hue, hue)`` = +-0.2 of the hue circle. All four draws come from the example's
    seed. With ``random_order`` (default) the four are applied in a random order per image (a
    random permutation from the seed; Slim picks one of four fixed orders), else in the fixed
    order brightness, contrast, saturation, hue. The result is clipped to [0, 255] after every
    component (so hue/saturation see valid colours). Passing 0 disables a component; all four
    0 is the identity (cast to float32). Saturation and hue need RGB images (3 static channels).
    """
    brightness, contrast, saturation, hue = (float(v) for v in (brightness, contrast, saturation, hue))
    if brightness < 0:
        raise ValueError(f"photometric_distort: brightness must be >= 0, got {brightness}")
    for name, value in (("contrast", contrast), ("saturation", saturation)):
        if not 0 <= value <= 1:
            raise ValueError(f"photometric_distort: {name} must be in [0, 1], got {value}")
    if not 0 <= hue <= 0.5:
        raise ValueError(f"photometric_distort: hue must be in [0, 0.5], got {hue}")
    enabled = [brightness > 0, contrast > 0, saturation > 0, hue > 0]

    def clip(x):
        return tf.clip_by_value(x, 0.0, 255.0)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(features["image"], tf.float32)
        if not any(enabled):
            return _with_image(features, image)
        if (saturation > 0 or hue > 0) and image.shape[-1] != 3:
            raise ValueError(f"photometric_distort: saturation/hue need 3 static channels, got shape {image.shape}")
        # Every draw has its own seed, whichever components are enabled: disabling one leaves the others' draws.
        s_order, s_b, s_c, s_s, s_h = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
        delta_b = tf.random.stateless_uniform([], s_b, -brightness, brightness)
        factor_c = tf.random.stateless_uniform([], s_c, 1 - contrast, 1 + contrast)
        factor_s = tf.random.stateless_uniform([], s_s, 1 - saturation, 1 + saturation)
        delta_h = tf.random.stateless_uniform([], s_h, -hue, hue)
        components = [
            lambda x: clip(x + delta_b),
            lambda x: clip(tf.image.adjust_contrast(x, factor_c)),
            lambda x: clip(tf.image.adjust_saturation(x / 255.0, factor_s) * 255.0),
            lambda x: clip(tf.image.adjust_hue(x / 255.0, delta_h) * 255.0),
        ]
        components = [f if on else (lambda x: x) for f, on in zip(components, enabled, strict=True)]
        if not random_order:
            for f in components:
                image = f(image)
            return _with_image(features, image)
        order = tf.argsort(tf.random.stateless_uniform([4], s_order))
        for step in range(4):
            image = tf.switch_case(order[step], [lambda f=f, x=image: f(x) for f in components])
        image.set_shape(features["image"].shape)
        return _with_image(features, image)

    return fn


@register("googlenet_crops")
def googlenet_crops(size: int = 224, scale: int = 256, antialias: bool = False) -> OpFn:
    """GoogLeNet's multi-crop evaluation (sec 7) at ONE scale: ``[36, size, size, C]`` float32.

    Resizes the shorter side to ``scale`` (``resize_short``), takes the left, centre and right
    ``scale x scale`` squares (top, centre and bottom for portrait images; the centre offset
    rounds down), and from each square the four corner and the centre ``size`` crops (as
    ``five_crop``) and the whole square resized (bilinear) to ``size``, plus the mirror images.
    View order, ``view = 18 * mirrored + 6 * square + crop``: square in GOOGLENET_SQUARES
    (left/top, centre, right/bottom), crop in GOOGLENET_CROPS (top-left, top-right, bottom-left,
    bottom-right, centre, whole square); views 18..35 are views 0..17 flipped left-right.
    One view per scale 256, 288, 320, 352 gives the paper's 4 x 3 x 6 x 2 = 144 crops.
    """
    size = _positive_int(size, "googlenet_crops", "size")
    scale = _positive_int(scale, "googlenet_crops", "scale")
    if size > scale:
        raise ValueError(f"googlenet_crops: need size <= scale, got size {size} > scale {scale}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = _resize_short(features["image"], scale, "bilinear", antialias)
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        landscape = width >= height
        long_side = tf.maximum(height, width)
        starts = tf.stack([0, (long_side - scale) // 2, long_side - scale])
        views = []
        for start in tf.unstack(starts):
            top = tf.where(landscape, 0, start)
            left = tf.where(landscape, start, 0)
            square = _crop(image, top, left, scale, scale)
            tops, lefts = _five_windows(square, size, size, "googlenet_crops")
            views += [_crop(square, tops[i], lefts[i], size, size) for i in range(5)]
            views.append(tf.image.resize(square, (size, size), antialias=antialias))
        views = tf.stack(views)
        return _with_image(features, tf.concat([views, tf.reverse(views, axis=[2])], axis=0))

    return fn
