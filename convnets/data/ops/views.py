"""Multi-view ops: evaluation crops stacked as views, and ZF Net's training pick of one of them.

The multi-view ops (``five_crop``, ``ten_crop``, ``flip_views``, ``googlenet_crops``, ``grid_crops``) read ``inkey``
(default 'image') and write a stack of views ``[V, h, w, C]`` to ``outkey`` (default ``'crops'``), leaving
``features['image']`` (and its boxes) as they were. Batched by the pipeline with
``data.keys=('crops', 'label')`` they give ``[B, V, h, w, C]``, and the evaluation averages the softmax over
axis 1: it finds the views under the explicit key 'crops', never by guessing from the rank (a clip
``[T, H, W, C]`` under 'image' has the same rank). Per-channel value ops broadcast over the view axis:
``ten_crop(224)|subtract_mean(M, key='crops')``; ``hflip(key='crops')`` mirrors every view.

``random_ten_crop`` is the training counterpart (ZF Net): ONE of ten_crop's views, written back to ``key``
as an image, its boxes following.

Paper recipes as spec strings (``M`` = ``constants.IMAGENET_RGB_MEAN``)::

    AlexNet eval:          decode|resize((256, 256))|subtract_mean(M)|ten_crop(224)
    ZF Net train:          decode|resize_short(256)|center_crop(256)|subtract_mean_image(P)|random_ten_crop(224)
    VGG eval (Q):          decode|resize_short(Q)|subtract_mean(M)|flip_views   (dense evaluation, variable size)
    GoogLeNet eval (scale): decode(3)|subtract_mean(M)|googlenet_crops(224, 256)   # 36 views; 256/288/320/352
    VGG multi-crop (Q):    decode|resize_short(Q)|subtract_mean(M)|grid_crops(224)   # 50 views; Q = 256, 384, 512

The VGG dense-evaluation images differ in size, so tf.data can only batch them one per batch (or padded);
``...|center_crop(Q)|flip_views`` is the fixed-size approximation. GoogLeNet's 144-crop evaluation (sec 7) is
``googlenet_crops`` at the four scales 256, 288, 320 and 352, one evaluation view per scale (4 x 36 = 144 crops).
VGG's multi-crop evaluation (sec 3.2, Table 5) is ``grid_crops(224)`` at Q = 256, 384 and 512 (3 x 50 = 150 crops).
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

from convnets.data.ops import boxes as box_ops
from convnets.data.ops.core import Features, OpFn, hw_size, positive_int, read, register, replace
from convnets.data.ops.geometry import resize_short_image, spatial_shape, window

# Documented order of the five crops: ten_crop adds the same five, each flipped left-right.
FIVE_CROP_ORDER = ("top_left", "top_right", "bottom_left", "bottom_right", "centre")
# Order of the 36 views of googlenet_crops: view = 18 * mirrored + 6 * square + crop.
GOOGLENET_SQUARES = ("left_or_top", "centre", "right_or_bottom")
GOOGLENET_CROPS = ("top_left", "top_right", "bottom_left", "bottom_right", "centre", "whole_square")


def five_windows(image: tf.Tensor, h: int, w: int, op: str) -> tuple[tf.Tensor, tf.Tensor]:
    """(tops, lefts) of the ``h x w`` crops in FIVE_CROP_ORDER; the centre rounds down like center_crop."""
    height, width = spatial_shape(image)
    checks = [
        tf.debugging.assert_greater_equal(height, h, message=f"{op}: image height is smaller than the crop ({h})"),
        tf.debugging.assert_greater_equal(width, w, message=f"{op}: image width is smaller than the crop ({w})"),
    ]
    with tf.control_dependencies(checks):
        bottom, right = height - h, width - w
    tops = tf.stack([0, 0, bottom, bottom, bottom // 2])
    lefts = tf.stack([0, right, 0, right, right // 2])
    return tops, lefts


def _five(image: tf.Tensor, h: int, w: int, op: str) -> tf.Tensor:
    tops, lefts = five_windows(image, h, w, op)
    return tf.stack([window(image, tops[i], lefts[i], h, w) for i in range(5)])


@register("five_crop")
def five_crop(size: int | Sequence[int], *, inkey: str = "image", outkey: str = "crops") -> OpFn:
    """The four corner crops and the centre crop, stacked ``[5, h, w, C]`` in FIVE_CROP_ORDER, to ``outkey``.

    Order: top-left, top-right, bottom-left, bottom-right, centre (centre offsets round
    down, as ``center_crop``). AlexNet sec 4.1 without the reflections.
    """
    h, w = hw_size(size, "five_crop")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return replace(features, outkey, _five(read(features, inkey, "five_crop"), h, w, "five_crop"))

    return fn


@register("ten_crop")
def ten_crop(size: int | Sequence[int], *, inkey: str = "image", outkey: str = "crops") -> OpFn:
    """Ten evaluation views ``[10, h, w, C]`` to ``outkey``: five_crop's five, then the same five flipped left-right.

    Order: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre, and view 5 + i is
    view i mirrored. AlexNet sec 4.1 ("five 224x224 patches (the four corner patches and the
    center patch) as well as their horizontal reflections (hence ten patches in all)", softmax
    averaged); ZF Net sec 3 ("10 different sub-crops of size 224x224").
    """
    h, w = hw_size(size, "ten_crop")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        five = _five(read(features, inkey, "ten_crop"), h, w, "ten_crop")
        return replace(features, outkey, tf.concat([five, tf.reverse(five, axis=[-2])], axis=0))

    return fn


@register("random_ten_crop")
def random_ten_crop(size: int | Sequence[int], *, key: str = "image", boxes_key: str | None = None) -> OpFn:
    """One of ten_crop's ten views, chosen uniformly per image from its seed; ``[h, w, C]`` back to ``key``.

    ZF Net sec 3 trains on "10 different sub-crops of size 224x224 (corners + center with(out)
    horizontal flips)" of the central 256x256 region, i.e. from these ten views only, where
    AlexNet/VGG take crops at any offset (``random_crop``). Boxes are cropped, clipped and flipped alike.
    """
    h, w = hw_size(size, "random_ten_crop")
    boxes_key = box_ops.follow(key, boxes_key)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "random_ten_crop")
        tops, lefts = five_windows(image, h, w, "random_ten_crop")
        view = tf.random.stateless_uniform([], seed, minval=0, maxval=10, dtype=tf.int32)
        top, left = tops[view % 5], lefts[view % 5]
        crop = window(image, top, left, h, w)
        mirrored = view >= 5

        def follow(b: tf.Tensor) -> tf.Tensor:
            b = box_ops.crop(b, top, left, h, w)
            return tf.where(mirrored, box_ops.flip_lr(b, w), b)

        features = box_ops.transform(features, boxes_key, follow)
        return replace(features, key, tf.where(mirrored, tf.reverse(crop, axis=[-2]), crop))

    return fn


@register("flip_views")
def flip_views(*, inkey: str = "image", outkey: str = "crops") -> OpFn:
    """Stacks the image and its left-right flip as two views ``[2, H, W, C]`` (original first) to ``outkey``.

    VGG sec 3.2 evaluation: the class posteriors of the original and the flipped image are
    averaged (the eval step averages the softmax over the view axis, as for ten_crop).
    """

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, inkey, "flip_views")
        return replace(features, outkey, tf.stack([image, tf.reverse(image, axis=[-2])]))

    return fn


@register("googlenet_crops")
def googlenet_crops(
    size: int = 224, scale: int = 256, antialias: bool = False, *, inkey: str = "image", outkey: str = "crops"
) -> OpFn:
    """GoogLeNet's multi-crop evaluation (sec 7) at ONE scale: ``[36, size, size, C]`` float32, to ``outkey``.

    Resizes the shorter side to ``scale`` (``resize_short``), takes the left, centre and right
    ``scale x scale`` squares (top, centre and bottom for portrait images; the centre offset
    rounds down), and from each square the four corner and the centre ``size`` crops (as
    ``five_crop``) and the whole square resized (bilinear) to ``size``, plus the mirror images.
    View order, ``view = 18 * mirrored + 6 * square + crop``: square in GOOGLENET_SQUARES
    (left/top, centre, right/bottom), crop in GOOGLENET_CROPS (top-left, top-right, bottom-left,
    bottom-right, centre, whole square); views 18..35 are views 0..17 flipped left-right.
    One view per scale 256, 288, 320, 352 gives the paper's 4 x 3 x 6 x 2 = 144 crops.
    """
    size = positive_int(size, "googlenet_crops", "size")
    scale = positive_int(scale, "googlenet_crops", "scale")
    if size > scale:
        raise ValueError(f"googlenet_crops: need size <= scale, got size {size} > scale {scale}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = resize_short_image(read(features, inkey, "googlenet_crops"), scale, "bilinear", antialias)
        height, width = spatial_shape(image)
        landscape = width >= height
        long_side = tf.maximum(height, width)
        starts = tf.stack([0, (long_side - scale) // 2, long_side - scale])
        views = []
        for start in tf.unstack(starts):
            top = tf.where(landscape, 0, start)
            left = tf.where(landscape, start, 0)
            square = window(image, top, left, scale, scale)
            views += list(tf.unstack(_five(square, size, size, "googlenet_crops")))
            views.append(tf.image.resize(square, (size, size), antialias=antialias))
        views = tf.stack(views)
        return replace(features, outkey, tf.concat([views, tf.reverse(views, axis=[-2])], axis=0))

    return fn


def grid_starts(span: tf.Tensor, n: int) -> tf.Tensor:
    """``n`` offsets evenly spaced from 0 to ``span`` (both ends included, rounded down); the centre for n = 1."""
    if n == 1:
        return tf.reshape(span // 2, [1])
    return tf.stack([(i * span) // (n - 1) for i in range(n)])


@register("grid_crops")
def grid_crops(size: int | Sequence[int], n: int = 5, *, inkey: str = "image", outkey: str = "crops") -> OpFn:
    """VGG's multi-crop evaluation (sec 3.2) at one scale: an ``n x n`` regular grid of ``size`` crops over the
    whole image, and their mirror images, stacked ``[2 n^2, h, w, C]`` to ``outkey``.

    The image may have any aspect ratio: crop tops are ``n`` offsets evenly spaced from 0 to ``H - h`` and lefts
    from 0 to ``W - w`` (``grid_starts``: both edges included, rounded down). View order, ``view = n^2 * mirrored
    + n * row + column``; views ``n^2 ..`` are views ``0 ..`` flipped left-right. ``grid_crops(224)`` after
    ``resize_short(Q)`` gives the paper's "50 crops per scale (5 x 5 regular grid with 2 flips)", 150 over
    Q = 256, 384, 512.
    """
    h, w = hw_size(size, "grid_crops")
    n = positive_int(n, "grid_crops", "n")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, inkey, "grid_crops")
        height, width = spatial_shape(image)
        checks = [
            tf.debugging.assert_greater_equal(height, h, message=f"grid_crops: image height is smaller than the crop "
                                              f"({h}); resize it first, e.g. resize_short({max(h, w)})"),
            tf.debugging.assert_greater_equal(width, w, message=f"grid_crops: image width is smaller than the crop "
                                              f"({w}); resize it first, e.g. resize_short({max(h, w)})"),
        ]
        with tf.control_dependencies(checks):
            tops, lefts = grid_starts(height - h, n), grid_starts(width - w, n)
        views = tf.stack([window(image, tops[r], lefts[c], h, w) for r in range(n) for c in range(n)])
        return replace(features, outkey, tf.concat([views, tf.reverse(views, axis=[-2])], axis=0))

    return fn
