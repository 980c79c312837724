"""Random colour augmentations: AlexNet's PCA lighting (= VGG's RGB colour shift) and GoogLeNet's
photometric distortions.

Pure functions of (example, seed); one draw per example, shared by every frame of a clip under ``key``.
Pixel values in 0..255 units; the outputs are float32. Boxes are never touched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow as tf

from convnets.data.constants import IMAGENET_EIGVAL, IMAGENET_EIGVEC
from convnets.data.ops.core import Features, OpFn, read, register, replace


def _as_matrix(values, shape: tuple[int, ...], what: str) -> np.ndarray:
    try:
        array = np.asarray(values, np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"pca_lighting: {what} must be numbers of shape {shape}, got {values!r}") from None
    if array.shape != shape:
        raise ValueError(f"pca_lighting: {what} must have shape {shape}, got {array.shape}")
    return array


def pca_lighting_args(alpha_std, eigval, eigvec) -> tuple[float, np.ndarray]:
    """(alpha_std, ``V diag(l)``: column i = l_i p_i) of ``pca_lighting``, checked (also for the device op)."""
    alpha_std = float(alpha_std)
    if alpha_std < 0:
        raise ValueError(f"pca_lighting: alpha_std must be >= 0, got {alpha_std}")
    return alpha_std, _as_matrix(eigvec, (3, 3), "eigvec") * _as_matrix(eigval, (3,), "eigval")[None, :]


@register("pca_lighting")
def pca_lighting(
    alpha_std: float = 0.1,
    eigval: Sequence[float] = IMAGENET_EIGVAL,
    eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC,
    *,
    key: str = "image",
) -> OpFn:
    """AlexNet's PCA colour augmentation (sec 4.1); returns float32, 0..255 units, not clipped.

    Adds ``[p1, p2, p3] [a1 l1, a2 l2, a3 l3]^T`` to every RGB pixel, with ``a_i ~ N(0, alpha_std)``
    drawn once per image from its seed (so once per image per epoch in the training stream),
    ``l_i`` = ``eigval`` and ``p_i`` = the columns of ``eigvec``. The defaults are
    ``constants.IMAGENET_EIGVAL`` / ``IMAGENET_EIGVEC`` (see there for their source and units). The
    shift has covariance ``alpha_std**2 * V diag(l)**2 V^T``.
    This is also VGG's "random RGB colour shift" (sec 3.1), registered as ``rgb_colour_shift``.
    """
    alpha_std, scaled = pca_lighting_args(alpha_std, eigval, eigvec)
    scaled = tf.constant(scaled, tf.float32)  # column i = l_i p_i

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(read(features, key, "pca_lighting"), tf.float32)
        if image.shape[-1] != 3:
            raise ValueError(f"pca_lighting needs RGB images with 3 static channels, got shape {image.shape}")
        alpha = alpha_std * tf.random.stateless_normal([3], seed)
        shift = tf.linalg.matvec(scaled, alpha)
        return replace(features, key, image + shift)

    return fn


register("rgb_colour_shift")(pca_lighting)

PHOTOMETRIC_COMPONENTS = ("brightness", "contrast", "saturation", "hue")


def photometric_strengths(brightness, contrast, saturation, hue) -> tuple[float, float, float, float]:
    """The four strengths of ``photometric_distort`` as floats, checked (also for the device op)."""
    brightness, contrast, saturation, hue = (float(v) for v in (brightness, contrast, saturation, hue))
    if brightness < 0:
        raise ValueError(f"photometric_distort: brightness must be >= 0, got {brightness}")
    for name, value in (("contrast", contrast), ("saturation", saturation)):
        if not 0 <= value <= 1:
            raise ValueError(f"photometric_distort: {name} must be in [0, 1], got {value}")
    if not 0 <= hue <= 0.5:
        raise ValueError(f"photometric_distort: hue must be in [0, 0.5], got {hue}")
    return brightness, contrast, saturation, hue


@register("photometric_distort")
def photometric_distort(
    brightness: float = 32.0,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.2,
    random_order: bool = True,
    *,
    key: str = "image",
) -> OpFn:
    """GoogLeNet's "photometric distortions" (sec 6, after Howard 2013); float32 in [0, 255].

    The paper gives no strengths. The defaults are those of the TensorFlow-Slim Inception
    preprocessing (``distort_color``): brightness delta ``U(-32, 32)`` (0..255 units), contrast
    factor ``U(1 - contrast, 1 + contrast)`` = [0.5, 1.5] (``tf.image.adjust_contrast``: about
    each channel's mean, per frame for a clip), saturation factor ``U(1 - saturation, 1 + saturation)``
    = [0.5, 1.5], hue shift ``U(-hue, hue)`` = +-0.2 of the hue circle. All four draws come from the
    example's seed. With ``random_order`` (default) the four are applied in a random order per image (a
    random permutation from the seed; Slim picks one of four fixed orders), else in the fixed
    order brightness, contrast, saturation, hue. Brightness and contrast clip to [0, 255] (so
    saturation and hue see valid colours); saturation and hue keep each pixel's HSV value and so stay
    within [0, 255] by themselves (one final clip only catches float rounding). TensorFlow's HSV kernels
    are scale-invariant, so they run on the 0..255 values directly (no /255, *255 passes). Passing 0
    disables a component; all four 0 is the identity (cast to float32). Saturation and hue need RGB
    images (3 static channels).
    """
    brightness, contrast, saturation, hue = photometric_strengths(brightness, contrast, saturation, hue)
    enabled = [brightness > 0, contrast > 0, saturation > 0, hue > 0]

    def clip(x):
        return tf.clip_by_value(x, 0.0, 255.0)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        original = read(features, key, "photometric_distort")
        image = tf.cast(original, tf.float32)
        if not any(enabled):
            return replace(features, key, image)
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
            # HSV with the pixel's value (max channel) kept: no clip needed, and no rescaling to [0, 1].
            lambda x: tf.image.adjust_saturation(x, factor_s),
            lambda x: tf.image.adjust_hue(x, delta_h),
        ]
        components = [f if on else (lambda x: x) for f, on in zip(components, enabled, strict=True)]
        if not random_order:
            for f in components:
                image = f(image)
        else:
            order = tf.argsort(tf.random.stateless_uniform([4], s_order))
            for step in range(4):
                image = tf.switch_case(order[step], [lambda f=f, x=image: f(x) for f in components])
            image.set_shape(original.shape)
        if saturation > 0 or hue > 0:
            image = clip(image)  # Float rounding of the HSV round trip can leave 255 by an ulp.
        return replace(features, key, image)

    return fn
