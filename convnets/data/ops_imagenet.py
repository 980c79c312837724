"""ImageNet preprocessing ops of AlexNet, ZF Net and VGG (registered into ``convnets.data.ops``).

Section numbers refer to the papers (facts collected in ``shared/reference/papers.md`` 2-4).
All ops follow the conventions of ``convnets.data.ops``: per-example, pure functions of
(example, seed), working eagerly and inside ``tf.data`` on images of dynamic (None) height
and width, as decoded ImageNet JPEGs come. Pixel values stay in 0..255 units; the ops that
resize or change values return float32.

Multi-view ops (``ten_crop``, ``five_crop``, ``flip_views``) return a stack of views
``[V, h, w, C]`` instead of one ``[h, w, C]`` image; batched by the pipeline they give
``[B, V, h, w, C]``, and the evaluation averages the softmax over axis 1. Per-channel value
ops (``subtract_mean``, ``normalize``, ``value_range``) broadcast over the view axis.

Paper recipes as spec strings (``M`` = ``IMAGENET_RGB_MEAN``, ``P`` = a mean-image path)::

    AlexNet train: decode|resize((256, 256))|random_crop(224)|flip_lr|pca_lighting(0.1)|subtract_mean(M)
    AlexNet eval:  decode|resize((256, 256))|subtract_mean(M)|ten_crop(224)
    ZF Net train:  decode|resize_short(256)|center_crop(256)|subtract_mean_image(P)|random_ten_crop(224)
    ZF Net eval:   decode|resize_short(256)|center_crop(256)|subtract_mean_image(P)|ten_crop(224)
    VGG train:     decode|random_resize_short(256, 512)|random_crop(224)|flip_lr|rgb_colour_shift|subtract_mean(M)
    VGG eval (Q):  decode|resize_short(Q)|subtract_mean(M)|flip_views   (dense evaluation, variable size)

The VGG dense-evaluation images differ in size, so tf.data can only batch them one per batch
(or padded); ``...|center_crop(Q)|flip_views`` is the fixed-size approximation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import tensorflow as tf

from convnets.data.ops import Features, OpFn, _hw, _per_channel, _with_image, register

# AlexNet sec 4.1 PCA colour augmentation needs the eigen-decomposition of the 3x3 covariance of
# ImageNet RGB pixel values, which the paper does not print. These are the widely used values of
# the fb.resnet.torch / Caffe ports (fb.resnet.torch: eigval (0.2175, 0.0188, 0.0045) for pixels in
# 0..1), times 255 so that they apply to pixels in 0..255 units: the shift is then exactly 255 times
# fb.resnet.torch's. Eigenvalues in decreasing order; eigenvector i is COLUMN i of IMAGENET_EIGVEC,
# rows are the R, G, B components (orthonormal to the 4 printed digits).
IMAGENET_EIGVAL = (55.46, 4.794, 1.148)
IMAGENET_EIGVEC = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)
# Per-channel RGB mean of the ILSVRC-2012 training set in 0..255 units, as released with the VGG
# Caffe models (BGR 103.939, 116.779, 123.68). Use it as subtract_mean(IMAGENET_RGB_MEAN).
IMAGENET_RGB_MEAN = (123.68, 116.779, 103.939)

# Documented order of the five crops: ten_crop adds the same five, each flipped left-right.
FIVE_CROP_ORDER = ("top_left", "top_right", "bottom_left", "bottom_right", "centre")


def _positive_int(value, op: str, what: str, method: str = "bilinear") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{op}: {what} must be a positive int, got {value!r}")
    if method not in ("bilinear", "nearest", "bicubic", "area"):
        raise ValueError(f"{op}: unsupported method {method!r}")
    return value


def _resize_short(image: tf.Tensor, size, method: str, antialias: bool) -> tf.Tensor:
    """Isotropic bilinear resize so that min(h, w) == size; the long side is rounded half up."""
    shape = tf.shape(image, out_type=tf.int64)
    h, w, size = shape[0], shape[1], tf.cast(size, tf.int64)
    short = tf.minimum(h, w)
    # round(dim * size / short) in exact integer arithmetic (half up); the short side becomes `size`.
    new_h = (2 * h * size + short) // (2 * short)
    new_w = (2 * w * size + short) // (2 * short)
    new_hw = tf.cast(tf.stack([new_h, new_w]), tf.int32)
    out = tf.image.resize(tf.cast(image, tf.float32), new_hw, method=method, antialias=antialias)
    out.set_shape([None, None, image.shape[-1]])
    return out


@register("resize_short")
def resize_short(size: int, method: str = "bilinear", antialias: bool = False) -> OpFn:
    """Isotropic rescale so that the SHORTER side equals ``size`` (aspect ratio kept); float32 0..255.

    VGG sec 3.1 (training scale S; evaluation scale Q, sec 3.2), ZF Net sec 3 ("resizing the
    smallest dimension to 256"), and ResNet. The long side is ``round(long * size / short)``
    with halves rounded up: 300x400 -> 256x341, 400x300 -> 341x256, 375x500 -> 256x341.
    """
    size = _positive_int(size, "resize_short", "size", method)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _with_image(features, _resize_short(features["image"], size, method, antialias))

    return fn


@register("random_resize_short")
def random_resize_short(min_size: int, max_size: int, method: str = "bilinear", antialias: bool = False) -> OpFn:
    """Scale jittering (VGG sec 3.1): S ~ uniform integers in [min_size, max_size] per image, then resize_short(S).

    The paper samples S from [S_min, S_max] = [256, 512]; S is drawn from the example's seed.
    """
    lo = _positive_int(min_size, "random_resize_short", "min_size")
    hi = _positive_int(max_size, "random_resize_short", "max_size", method)
    if lo > hi:
        raise ValueError(f"random_resize_short: need min_size <= max_size, got {lo} > {hi}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        s = tf.random.stateless_uniform([], seed, minval=lo, maxval=hi + 1, dtype=tf.int64)
        return _with_image(features, _resize_short(features["image"], s, method, antialias))

    return fn


def _as_matrix(values, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        array = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"pca_lighting: {what} must be numbers of shape {shape}, got {values!r}") from None
    if array.shape != shape:
        raise ValueError(f"pca_lighting: {what} must have shape {shape}, got {array.shape}")
    return array


@register("pca_lighting")
def pca_lighting(
    alpha_std: float = 0.1,
    eigval: Sequence[float] = IMAGENET_EIGVAL,
    eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC,
) -> OpFn:
    """AlexNet's PCA colour augmentation (sec 4.1); returns float32, 0..255 units, not clipped.

    Adds ``[p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T`` to every RGB pixel, with ``a_i ~ N(0, alpha_std)``
    drawn once per image from its seed (so once per image per epoch in the training stream),
    ``l_i`` = ``eigval`` and ``p_i`` = the columns of ``eigvec``. The defaults are
    ``IMAGENET_EIGVAL`` / ``IMAGENET_EIGVEC`` (see there for their source and units). The
    shift has covariance ``alpha_std**2 * V diag(l)**2 V^T``.
    This is also VGG's "random RGB colour shift" (sec 3.1), registered as ``rgb_colour_shift``.
    """
    alpha_std = float(alpha_std)
    if alpha_std < 0:
        raise ValueError(f"pca_lighting: alpha_std must be >= 0, got {alpha_std}")
    scaled = _as_matrix(eigvec, (3, 3), "eigvec") * _as_matrix(eigval, (3,), "eigval")[None, :]
    scaled = tf.constant(scaled, tf.float32)  # column i = l_i p_i

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(features["image"], tf.float32)
        if image.shape[-1] != 3:
            raise ValueError(f"pca_lighting needs RGB images with 3 static channels, got shape {image.shape}")
        alpha = alpha_std * tf.random.stateless_normal([3], seed)
        shift = tf.linalg.matvec(scaled, alpha)
        return _with_image(features, image + shift)

    return fn


register("rgb_colour_shift")(pca_lighting)


@register("subtract_mean")
def subtract_mean(mean: float | Sequence[float]) -> OpFn:
    """Subtracts a per-channel mean (0..255 units, one number or one per channel); float32.

    AlexNet sec 2: "subtracting the mean activity over the training set from each pixel";
    VGG sec 2.1: "subtracting the mean RGB value, computed on the training set". See
    ``IMAGENET_RGB_MEAN``.
    """
    mean_l = _per_channel(mean, "subtract_mean")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _with_image(features, tf.cast(features["image"], tf.float32) - tf.constant(mean_l))

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
def subtract_mean_image(path: str) -> OpFn:
    """Subtracts a per-pixel mean image (ZF Net sec 3: "subtracting the per-pixel mean"); float32.

    ``path`` is a ``.npy`` file (local or any tf.io.gfile path) holding an (H, W, C) array in
    0..255 units, e.g. written with ``np.save(path, compute_mean_image(...))``; it is read
    once, when the op is built. The image must already have shape (H, W, C): a mismatch is a
    ValueError naming both shapes when the shape is static, and an InvalidArgumentError with
    both shapes when it is only known at run time (inside tf.data).
    """
    mean_np = _load_npy(path)
    mean = tf.constant(mean_np)
    expected = list(mean_np.shape)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(features["image"], tf.float32)
        if not image.shape.is_compatible_with(expected):
            raise ValueError(
                f"subtract_mean_image: image shape {image.shape.as_list()} != mean image shape {expected} "
                f"from {path!r}; resize/crop to {expected[:2]} first"
            )
        if not image.shape.is_fully_defined():
            check = tf.debugging.assert_equal(
                tf.shape(image),
                expected,
                message=f"subtract_mean_image: image shape (x) != mean image shape {expected} (y) from {path!r}",
            )
            with tf.control_dependencies([check]):
                image = tf.ensure_shape(tf.identity(image), expected)
        return _with_image(features, image - mean)

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


def _five_windows(image: tf.Tensor, h: int, w: int, op: str) -> tuple[tf.Tensor, tf.Tensor]:
    """(tops, lefts) of the crops in FIVE_CROP_ORDER; the centre rounds down like center_crop."""
    shape = tf.shape(image)
    height, width = shape[-3], shape[-2]
    checks = [
        tf.debugging.assert_greater_equal(height, h, message=f"{op}: image height is smaller than the crop ({h})"),
        tf.debugging.assert_greater_equal(width, w, message=f"{op}: image width is smaller than the crop ({w})"),
    ]
    with tf.control_dependencies(checks):
        bottom, right = height - h, width - w
    tops = tf.stack([0, 0, bottom, bottom, bottom // 2])
    lefts = tf.stack([0, right, 0, right, right // 2])
    return tops, lefts


def _crop(image: tf.Tensor, top, left, h: int, w: int) -> tf.Tensor:
    crop = image[top : top + h, left : left + w]
    crop.set_shape([h, w, image.shape[-1]])
    return crop


@register("five_crop")
def five_crop(size: int | Sequence[int]) -> OpFn:
    """The four corner crops and the centre crop, stacked ``[5, h, w, C]`` in FIVE_CROP_ORDER.

    Order: top-left, top-right, bottom-left, bottom-right, centre (centre offsets round
    down, as ``center_crop``). AlexNet sec 4.1 without the reflections.
    """
    h, w = _hw(size, "five_crop")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        tops, lefts = _five_windows(image, h, w, "five_crop")
        crops = tf.stack([_crop(image, tops[i], lefts[i], h, w) for i in range(5)])
        return _with_image(features, crops)

    return fn


@register("ten_crop")
def ten_crop(size: int | Sequence[int]) -> OpFn:
    """Ten evaluation views ``[10, h, w, C]``: five_crop's five, then the same five flipped left-right.

    Order: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right, 4 centre, and view 5 + i is
    view i mirrored. AlexNet sec 4.1 ("five 224x224 patches (the four corner patches and the
    center patch) as well as their horizontal reflections (hence ten patches in all)", softmax
    averaged); ZF Net sec 3 ("10 different sub-crops of size 224x224").
    """
    h, w = _hw(size, "ten_crop")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        tops, lefts = _five_windows(image, h, w, "ten_crop")
        five = tf.stack([_crop(image, tops[i], lefts[i], h, w) for i in range(5)])
        crops = tf.concat([five, tf.reverse(five, axis=[2])], axis=0)
        return _with_image(features, crops)

    return fn


@register("random_ten_crop")
def random_ten_crop(size: int | Sequence[int]) -> OpFn:
    """One of ten_crop's ten views, chosen uniformly per image from its seed; ``[h, w, C]``.

    ZF Net sec 3 trains on "10 different sub-crops of size 224x224 (corners + center with(out)
    horizontal flips)" of the central 256x256 region, i.e. from these ten views only, where
    AlexNet/VGG take crops at any offset (``random_crop``).
    """
    h, w = _hw(size, "random_ten_crop")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        tops, lefts = _five_windows(image, h, w, "random_ten_crop")
        view = tf.random.stateless_uniform([], seed, minval=0, maxval=10, dtype=tf.int32)
        crop = _crop(image, tops[view % 5], lefts[view % 5], h, w)
        return _with_image(features, tf.where(view >= 5, tf.reverse(crop, axis=[1]), crop))

    return fn


@register("hflip")
def hflip() -> OpFn:
    """Deterministic horizontal (left-right) flip of an image [h, w, C] or of every view [V, h, w, C].

    For the flipped view of multi-view evaluation (VGG sec 3.2: "averaging the soft-max
    class posteriors of the original and flipped images").
    """

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _with_image(features, tf.reverse(features["image"], axis=[-2]))

    return fn


@register("flip_views")
def flip_views() -> OpFn:
    """Stacks the image and its left-right flip as two views ``[2, H, W, C]`` (original first).

    VGG sec 3.2 evaluation: the class posteriors of the original and the flipped image are
    averaged (the eval step averages the softmax over the view axis, as for ten_crop).
    """

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        return _with_image(features, tf.stack([image, tf.reverse(image, axis=[-2])]))

    return fn
