"""Geometric ops: resizes, padding, crops and flips of an image ``[H, W, C]`` or of every frame of a clip.

Each op works on ``features[key]`` (default 'image'), which may be a clip ``[T, H, W, C]``: then every frame
gets the same resize, the same crop window and the same flip (one random draw per example). Boxes follow the
pixels exactly (see ``convnets.data.ops.boxes``; ``boxes_key`` chooses them, default 'boxes' for 'image').
Ops that resize return float32 in 0..255 units; crops, pads and flips keep the dtype.

Random draws reproduce those of ``tf.image.stateless_random_crop`` / ``stateless_random_flip_left_right``
from the same seed (same op, shape and dtype), so image-only outputs are bitwise those of the tf.image ops
that these ops used before boxes had to follow the draw.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from convnets.data.ops import boxes as box_ops
from convnets.data.ops.core import (
    Features,
    OpFn,
    check_image_rank,
    hw_size,
    non_negative_int,
    positive_int,
    read,
    register,
    replace,
    resize_method,
)


def spatial_shape(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Dynamic (height, width) of an image ``[H, W, C]`` or a clip ``[T, H, W, C]``."""
    shape = tf.shape(image)
    return shape[-3], shape[-2]


def window(image: tf.Tensor, top, left, height: int, width: int) -> tf.Tensor:
    """The ``height x width`` window at ``(top, left)`` of an image or of every frame of a clip (static h, w)."""
    out = image[..., top : top + height, left : left + width, :]
    out.set_shape([*image.shape[:-3], height, width, image.shape[-1]])
    return out


def pad_spatial(image: tf.Tensor, pad: int) -> tf.Tensor:
    """Zero-pads ``pad`` pixels on every side of an image or of every frame of a clip."""
    leading = [[0, 0]] * (image.shape.rank - 3)
    return tf.pad(image, leading + [[pad, pad], [pad, pad], [0, 0]])


def short_side_size(height, width, size) -> tuple[tf.Tensor, tf.Tensor]:
    """(new_h, new_w) with min(new_h, new_w) == size and the long side ``round(long * size / short)``, halves up."""
    h, w, size = (tf.cast(v, tf.int64) for v in (height, width, size))
    short = tf.minimum(h, w)
    # round(dim * size / short) in exact integer arithmetic (half up); the short side becomes `size`.
    new_h = (2 * h * size + short) // (2 * short)
    new_w = (2 * w * size + short) // (2 * short)
    return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def resize_float(image: tf.Tensor, size, method: str = "bilinear", antialias: bool = False) -> tf.Tensor:
    """``tf.image.resize`` of an image or of every frame of a clip, as float32 (0..255 units for pixels).

    uint8 pixels go to the resize kernels as they are: the kernels convert each pixel they read to float32, so the
    result is bit for bit that of resizing the float32 cast image (every method, with or without antialias), without
    a float32 copy of the whole input (~0.3 ms of a 500x375 image, as much as the resize itself).
    """
    if image.dtype != tf.uint8:
        image = tf.cast(image, tf.float32)
    return tf.cast(tf.image.resize(image, size, method=method, antialias=antialias), tf.float32)


def resize_short_image(image: tf.Tensor, size, method: str = "bilinear", antialias: bool = False) -> tf.Tensor:
    """Isotropic resize (float32) of an image or every frame of a clip so that min(h, w) == size."""
    new_h, new_w = short_side_size(*spatial_shape(image), size)
    out = resize_float(image, tf.stack([new_h, new_w]), method, antialias)
    out.set_shape([*image.shape[:-3], None, None, image.shape[-1]])
    return out


def _resize_short_features(features, key, boxes_key, size, method, antialias, op) -> Features:
    image = read(features, key, op)
    check_image_rank(image, op, key)
    height, width = spatial_shape(image)
    out = resize_short_image(image, size, method, antialias)
    new_h, new_w = spatial_shape(out)
    features = box_ops.transform(features, boxes_key, lambda b: box_ops.resize(b, height, width, new_h, new_w))
    return replace(features, key, out)


@register("resize")
def resize(
    size: int | Sequence[int], method: str = "bilinear", *, key: str = "image", boxes_key: str | None = None
) -> OpFn:
    """Resizes to ``size`` (int or (h, w)); returns float32 still in 0..255 units; boxes scaled alike."""
    hw = hw_size(size, "resize")
    method = resize_method(method, "resize")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "resize")
        check_image_rank(image, "resize", key)
        height, width = spatial_shape(image)
        out = resize_float(image, hw, method)
        features = box_ops.transform(features, boxes_key, lambda b: box_ops.resize(b, height, width, *hw))
        return replace(features, key, out)

    return fn


@register("resize_short")
def resize_short(
    size: int, method: str = "bilinear", antialias: bool = False, *, key: str = "image", boxes_key: str | None = None
) -> OpFn:
    """Isotropic rescale so that the SHORTER side equals ``size`` (aspect ratio kept); float32 0..255.

    VGG sec 3.1 (training scale S; evaluation scale Q, sec 3.2), ZF Net sec 3 ("resizing the
    smallest dimension to 256"), and ResNet. The long side is ``round(long * size / short)``
    with halves rounded up: 300x400 -> 256x341, 400x300 -> 341x256, 375x500 -> 256x341.
    Boxes are scaled by the actual new/old ratio of each side.
    """
    size = positive_int(size, "resize_short", "size")
    method = resize_method(method, "resize_short")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _resize_short_features(features, key, boxes_key, size, method, antialias, "resize_short")

    return fn


@register("random_resize_short")
def random_resize_short(
    min_size: int,
    max_size: int,
    method: str = "bilinear",
    antialias: bool = False,
    *,
    key: str = "image",
    boxes_key: str | None = None,
) -> OpFn:
    """Scale jittering (VGG sec 3.1): S ~ uniform integers in [min_size, max_size] per image, then resize_short(S).

    The paper samples S from [S_min, S_max] = [256, 512]; S is drawn from the example's seed (one draw for
    the image, its boxes and every frame of a clip).
    """
    lo = positive_int(min_size, "random_resize_short", "min_size")
    hi = positive_int(max_size, "random_resize_short", "max_size")
    method = resize_method(method, "random_resize_short")
    if lo > hi:
        raise ValueError(f"random_resize_short: need min_size <= max_size, got {lo} > {hi}")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        s = tf.random.stateless_uniform([], seed, minval=lo, maxval=hi + 1, dtype=tf.int64)
        return _resize_short_features(features, key, boxes_key, s, method, antialias, "random_resize_short")

    return fn


@register("center_crop")
def center_crop(size: int | Sequence[int], *, key: str = "image", boxes_key: str | None = None) -> OpFn:
    """Crops the central (h, w) window (offsets round down, like tf.image.central_crop); boxes clipped to it."""
    h, w = hw_size(size, "center_crop")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "center_crop")
        check_image_rank(image, "center_crop", key)
        height, width = spatial_shape(image)
        top, left = (height - h) // 2, (width - w) // 2
        # crop_to_bounding_box (unlike plain slicing) fails loudly on a too-small image.
        out = tf.image.crop_to_bounding_box(image, top, left, h, w)
        features = box_ops.transform(features, boxes_key, lambda b: box_ops.crop(b, top, left, h, w))
        return replace(features, key, out)

    return fn


@register("pad")
def pad(pad: int, *, key: str = "image", boxes_key: str | None = None) -> OpFn:
    """Zero-pads ``pad`` pixels on every side (LeNet-5: 28x28 MNIST -> 32x32 with pad(2)); boxes shift by pad."""
    pad = non_negative_int(pad, "pad", "pad")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "pad")
        check_image_rank(image, "pad", key)
        features = box_ops.transform(features, boxes_key, lambda b: box_ops.shift(b, pad, pad))
        return replace(features, key, pad_spatial(image, pad))

    return fn


def crop_offset(seed: tf.Tensor, height, width, h: int, w: int, op: str) -> tuple[tf.Tensor, tf.Tensor]:
    """Uniform (top, left) of an ``h x w`` window in ``height x width``, drawn from ``seed``.

    The same draw as ``tf.image.stateless_random_crop(image, [h, w, C], seed)`` makes for an image
    ``[height, width, C]``: one int32 uniform in [0, 2**31 - 1) per axis (a draw of shape [3]; the channel
    offset is always 0), modulo the number of offsets on that axis.
    """
    checks = [
        tf.debugging.assert_greater_equal(height, h, message=f"{op}: image height is smaller than the crop ({h})"),
        tf.debugging.assert_greater_equal(width, w, message=f"{op}: image width is smaller than the crop ({w})"),
    ]
    with tf.control_dependencies(checks):
        limit = tf.stack([height - h + 1, width - w + 1])
    draw = tf.random.stateless_uniform([3], seed=seed, minval=0, maxval=tf.int32.max, dtype=tf.int32)
    offset = draw[:2] % limit
    return offset[0], offset[1]


@register("random_crop")
def random_crop(
    size: int | Sequence[int], pad: int = 0, *, key: str = "image", boxes_key: str | None = None
) -> OpFn:
    """Zero-pads ``pad`` pixels on every side, then crops a uniformly random (h, w) window.

    With ``pad > 0`` and ``size`` equal to the image size this is the random-shift
    augmentation of the ResNet CIFAR recipe (pad 4, crop 32). One window for the image, its boxes (shifted
    by the pad, then cropped and clipped) and every frame of a clip.
    """
    h, w = hw_size(size, "random_crop")
    pad = non_negative_int(pad, "random_crop", "pad")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "random_crop")
        check_image_rank(image, "random_crop", key)
        if pad:
            image = pad_spatial(image, pad)
        height, width = spatial_shape(image)
        top, left = crop_offset(seed, height, width, h, w, "random_crop")
        features = box_ops.transform(
            features, boxes_key, lambda b: box_ops.crop(box_ops.shift(b, pad, pad), top, left, h, w)
        )
        return replace(features, key, window(image, top, left, h, w))

    return fn


def flip_draw(seed: tf.Tensor) -> tf.Tensor:
    """Bool: flip or not, the draw ``tf.image.stateless_random_flip_left_right`` makes for one image."""
    return tf.random.stateless_uniform([], seed, minval=0, maxval=1.0) < 0.5


def _flip(features: Features, key: str, boxes_key: tuple[str, ...], flip: tf.Tensor | bool, op: str) -> Features:
    image = read(features, key, op)
    check_image_rank(image, op, key)
    width = spatial_shape(image)[1]
    if flip is True:  # hflip: no draw, no branch
        flipped = tf.reverse(image, axis=[-2])
        features = box_ops.transform(features, boxes_key, lambda b: box_ops.flip_lr(b, width))
    else:
        flipped = tf.cond(flip, lambda: tf.reverse(image, axis=[-2]), lambda: image)
        features = box_ops.transform(features, boxes_key, lambda b: tf.where(flip, box_ops.flip_lr(b, width), b))
    return replace(features, key, flipped)


@register("flip_lr")
def flip_lr(*, key: str = "image", boxes_key: str | None = None) -> OpFn:
    """Flips the image (every frame of a clip, and the boxes) left-right with probability 0.5."""
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _flip(features, key, boxes_key, flip_draw(seed), "flip_lr")

    return fn


@register("hflip")
def hflip(*, key: str = "image", boxes_key: str | None = None) -> OpFn:
    """Deterministic left-right flip of an image [h, w, C], or of every view / frame [V, h, w, C]; boxes too.

    For the flipped view of multi-view evaluation (VGG sec 3.2: "averaging the soft-max
    class posteriors of the original and flipped images"); ``hflip(key='crops')`` flips every view.
    """
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _flip(features, key, boxes_key, True, "hflip")

    return fn


# ----------------------------------------------------------------------------- detection: fixed shapes


def capped_size(height, width, scale, max_size) -> tuple[tf.Tensor, tf.Tensor]:
    """(new_h, new_w) of Fast R-CNN's scaling: shorter side -> ``scale`` unless the longer side would then
    exceed ``max_size``, in which case longer side -> ``max_size``; the other side rounded half up.

    The rule of py-faster-rcnn's ``prep_im_for_blob`` (``im_scale = target_size / im_size_min``; if
    ``round(im_scale * im_size_max) > max_size``: ``im_scale = max_size / im_size_max``), in exact integer
    arithmetic: 375x500 at (600, 1000) -> 600x800; 300x1000 -> 300x1000 (capped: 600/300 * 1000 > 1000).
    """
    h, w, scale, max_size = (tf.cast(v, tf.int64) for v in (height, width, scale, max_size))
    short, long = tf.minimum(h, w), tf.maximum(h, w)
    # round(long * scale / short) > max_size, halves up as everywhere here.
    capped = (2 * long * scale + short) // (2 * short) > max_size
    num = tf.where(capped, max_size, scale)
    den = tf.where(capped, long, short)
    new_h = (2 * h * num + den) // (2 * den)
    new_w = (2 * w * num + den) // (2 * den)
    return tf.cast(new_h, tf.int32), tf.cast(new_w, tf.int32)


def _scales(scale, op: str) -> list[int]:
    values = list(scale) if isinstance(scale, list | tuple) else [scale]
    if not values:
        raise ValueError(f"{op}: scale must be a positive int or a non-empty list of them, got {scale!r}")
    return [positive_int(v, op, "scale") for v in values]


@register("resize_short_capped", produces=("image_scale",))
def resize_short_capped(
    scale: int | Sequence[int],
    max_size: int,
    method: str = "bilinear",
    *,
    key: str = "image",
    boxes_key: str | None = None,
) -> OpFn:
    """Fast R-CNN's image scaling (sec. 2.3): the SHORTER side becomes ``scale`` unless the LONGER side would
    exceed ``max_size``; then the longer side becomes ``max_size`` (see ``capped_size``). float32 0..255.

    ``scale`` may be a list: one of them is drawn uniformly per image (multi-scale training, sec. 2.3 / 5.5:
    "randomly sample a pyramid scale each time an image is sampled"; py-faster-rcnn ``cfg.TRAIN.SCALES``).
    Paper settings: ``resize_short_capped(600, 1000)``; pyramid ``([480, 576, 688, 864, 1200], 2000)``.

    Writes ``features['image_scale']`` float32 ``(new_h / h, new_w / w)``, the exact per-axis ratio the boxes
    were scaled by (multiplied into an existing ``image_scale``, so it always maps to the decoded image):
    detections map back to original pixels as ``boxes / [sy, sx, sy, sx]``. py-faster-rcnn keeps one nominal
    ``im_scale`` for both axes; the per-axis ratio differs from it by the rounding of the new size (< 0.5 px).
    """
    scales = _scales(scale, "resize_short_capped")
    max_size = positive_int(max_size, "resize_short_capped", "max_size")
    method = resize_method(method, "resize_short_capped")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "resize_short_capped")
        check_image_rank(image, "resize_short_capped", key)
        if len(scales) == 1:
            s = tf.constant(scales[0], tf.int64)
        else:
            s = tf.gather(tf.constant(scales, tf.int64), tf.random.stateless_uniform(
                [], seed, minval=0, maxval=len(scales), dtype=tf.int64))
        height, width = spatial_shape(image)
        new_h, new_w = capped_size(height, width, s, max_size)
        out = resize_float(image, tf.stack([new_h, new_w]), method)
        out.set_shape([*image.shape[:-3], None, None, image.shape[-1]])
        features = box_ops.transform(features, boxes_key, lambda b: box_ops.resize(b, height, width, new_h, new_w))
        ratio = tf.cast(tf.stack([new_h, new_w]), tf.float64) / tf.cast(tf.stack([height, width]), tf.float64)
        if "image_scale" in features:
            ratio *= tf.cast(features["image_scale"], tf.float64)
        features = replace(features, "image_scale", tf.cast(ratio, tf.float32))
        return replace(features, key, out)

    return fn


@register("pad_to", produces=("image_size",))
def pad_to(size: int | Sequence[int], *, key: str = "image") -> OpFn:
    """Zero-pads at the BOTTOM and RIGHT to a fixed ``size`` (int or (h, w)) canvas; boxes stay where they are.

    Writes ``features['image_size']`` int32 ``(h, w)``, the size of the image before padding, so that a
    detector clips its boxes to the real image and not to the canvas (py-faster-rcnn pads the images of a
    blob bottom/right in ``im_list_to_blob`` and passes ``im_info = (h, w, scale)`` for the same reason).
    An image larger than the canvas is an error naming both sizes. Put flips before it: a flip after
    padding would move the image to the right of the canvas.
    """
    h, w = hw_size(size, "pad_to")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "pad_to")
        check_image_rank(image, "pad_to", key)
        height, width = spatial_shape(image)
        checks = [
            tf.debugging.assert_less_equal(
                tf.stack([height, width]), tf.constant([h, w]),
                message=f"pad_to: the image is larger than the canvas ({h}, {w}); resize it first "
                "(e.g. resize_short_capped with max_size <= the canvas side)",
            )
        ]
        with tf.control_dependencies(checks):
            leading = [[0, 0]] * (image.shape.rank - 3)
            out = tf.pad(image, leading + [[0, h - height], [0, w - width], [0, 0]])
        out.set_shape([*image.shape[:-3], h, w, image.shape[-1]])
        features = replace(features, "image_size", tf.stack([height, width]))
        return replace(features, key, out)

    return fn
