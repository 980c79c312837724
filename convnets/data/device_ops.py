"""Preprocessing ops that run on the accelerator, on the batch after it is there (``data.device_preprocess``).

Per-pixel colour work is cheap on an accelerator and dear on the host: GoogLeNet's photometric distortions cost a
host core ~0.9 ms per 224x224 image through TensorFlow's HSV kernels, as much as the fused JPEG decode and crop
(WORKSPACE, issue 16). A recipe can move its last ops here, e.g.::

    data.train_preprocess  = 'decode(3)|inception_crop(224)|flip_lr'                      # tf.data, host
    data.device_preprocess = 'photometric_distort|subtract_mean((123.68, 116.779, 103.939))' # JAX, devices

A spec uses the host grammar and the host ops' names and arguments. Each op is ``fn(image [H, W, C] float32 in
0..255 units, key) -> image`` and makes the same transform as the host op of that name (the same distribution of
draws; tests/test_device_ops.py checks each against the TensorFlow op for given factors); the draws themselves
come from JAX's PRNG. The key of an example is derived from its host seed (the pipeline adds a ``device_seed``
uint32[2] to every training example when ``data.device_preprocess`` is set), so the draws are per example,
independent of the device count and of shard_map / pmap, and repeat exactly after a resume. Only training
batches are transformed: evaluation specs stay on the host.
"""

from __future__ import annotations

import inspect
import zlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from convnets.data.constants import IMAGENET_EIGVAL, IMAGENET_EIGVEC
from convnets.data.ops import core as host_ops
from convnets.data.ops.colour_jitter import pca_lighting_args, photometric_strengths

ImageFn = Callable[[jax.Array, jax.Array], jax.Array]
SEED_KEY = 'device_seed'  # The per-example key data the pipeline adds to training batches.

_REGISTRY: dict[str, Callable[..., ImageFn]] = {}


def register(name: str) -> Callable[[Callable[..., ImageFn]], Callable[..., ImageFn]]:
    def wrap(factory: Callable[..., ImageFn]) -> Callable[..., ImageFn]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    return sorted(_REGISTRY)



# ----------------------------------------------------------------------------------------------- colour


@register('subtract_mean')
def subtract_mean(mean: float | Sequence[float]) -> ImageFn:
    """The host ``subtract_mean``: a per-channel mean in 0..255 units (AlexNet sec. 2, VGG sec. 2.1)."""
    mean_a = jnp.asarray(host_ops.per_channel(mean, 'subtract_mean'), jnp.float32)
    return lambda image, key: image - mean_a


@register('pca_lighting')
def pca_lighting(alpha_std: float = 0.1, eigval: Sequence[float] = IMAGENET_EIGVAL,
                 eigvec: Sequence[Sequence[float]] = IMAGENET_EIGVEC) -> ImageFn:
    """The host ``pca_lighting`` (AlexNet sec. 4.1; VGG's RGB colour shift): adds ``V (alpha * l)`` to every pixel,
    ``alpha ~ N(0, alpha_std)`` per image."""
    alpha_std, scaled = pca_lighting_args(alpha_std, eigval, eigvec)
    scaled = jnp.asarray(scaled, jnp.float32)

    def fn(image: jax.Array, key: jax.Array) -> jax.Array:
        if image.shape[-1] != 3:
            raise ValueError(f'pca_lighting needs RGB images (3 channels), got shape {image.shape}')
        alpha = alpha_std * jax.random.normal(key, (3,), jnp.float32)
        return image + scaled @ alpha

    return fn


register('rgb_colour_shift')(pca_lighting)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    """TensorFlow's RGB -> HSV (its CPU kernel's arithmetic): h in [0, 1), s in [0, 1], v = max channel; any scale."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.maximum(jnp.maximum(r, g), b)
    spread = v - jnp.minimum(jnp.minimum(r, g), b)
    s = jnp.where(v > 0, spread / jnp.where(v > 0, v, 1.0), 0.0)
    norm = 1.0 / (6.0 * jnp.where(spread > 0, spread, 1.0))
    h = jnp.where(r == v, norm * (g - b), jnp.where(g == v, norm * (b - r) + 2.0 / 6.0, norm * (r - g) + 4.0 / 6.0))
    h = jnp.where(spread > 0, h, 0.0)
    h = jnp.where(h < 0, h + 1.0, h)
    return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """TensorFlow's HSV -> RGB (its CPU kernel's six sectors)."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    c = s * v
    m = v - c
    dh = h * 6.0
    sector = jnp.floor(dh).astype(jnp.int32)
    x = c * (1.0 - jnp.abs(jnp.mod(dh, 2.0) - 1.0))
    zero = jnp.zeros_like(c)
    # Sector k of the hue circle -> (r, g, b) before adding m; outside 0..5 (never for h in [0, 1)) all zero.
    table = [(c, x, zero), (x, c, zero), (zero, c, x), (zero, x, c), (x, zero, c), (c, zero, x)]
    out = [zero, zero, zero]
    for k, rgb in enumerate(table):
        out = [jnp.where(sector == k, new, old) for new, old in zip(rgb, out, strict=True)]
    return jnp.stack(out, axis=-1) + m[..., None]


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    """``tf.image.adjust_saturation`` (float images): HSV saturation times ``factor``, clipped to [0, 1]."""
    hsv = rgb_to_hsv(image)
    return hsv_to_rgb(hsv.at[..., 1].set(jnp.clip(hsv[..., 1] * factor, 0.0, 1.0)))


def adjust_hue(image: jax.Array, delta: jax.Array) -> jax.Array:
    """``tf.image.adjust_hue`` (float images): HSV hue plus ``delta``, modulo 1."""
    hsv = rgb_to_hsv(image)
    return hsv_to_rgb(hsv.at[..., 0].set(jnp.mod(hsv[..., 0] + delta, 1.0)))


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    """``tf.image.adjust_contrast``: each channel's values moved away from (or towards) its mean over the image."""
    mean = jnp.mean(image, axis=(-3, -2), keepdims=True)
    return (image - mean) * factor + mean


def _component(x: jax.Array, which: jax.Array, enabled: tuple[bool, ...], brighten: Callable, contrast: Callable,
               factor_s: jax.Array, delta_h: jax.Array) -> jax.Array:
    """Component ``which`` (0 brightness, 1 contrast, 2 saturation, 3 hue; a traced index) of ``x``. Written as
    selects rather than ``lax.switch``, which vmap turns into all four branches: saturation and hue share one HSV
    round trip (each only changes its own channel), so a step costs one round trip instead of two."""
    out = x
    if enabled[2] or enabled[3]:
        h, s, v = jnp.moveaxis(rgb_to_hsv(x), -1, 0)
        s = jnp.where(which == 2, jnp.clip(s * factor_s, 0.0, 1.0), s) if enabled[2] else s
        h = jnp.where(which == 3, jnp.mod(h + delta_h, 1.0), h) if enabled[3] else h
        out = jnp.where((which == 2) & enabled[2] | (which == 3) & enabled[3],
                        hsv_to_rgb(jnp.stack([h, s, v], axis=-1)), out)
    if enabled[0]:
        out = jnp.where(which == 0, brighten(x), out)
    if enabled[1]:
        out = jnp.where(which == 1, contrast(x), out)
    return out


@register('photometric_distort')
def photometric_distort(brightness: float = 32.0, contrast: float = 0.5, saturation: float = 0.5, hue: float = 0.2,
                        random_order: bool = True) -> ImageFn:
    """The host ``photometric_distort`` (GoogLeNet sec. 6; TF-Slim's ``distort_color`` strengths): brightness delta
    ``U(-b, b)``, contrast factor ``U(1 - c, 1 + c)``, saturation factor ``U(1 - s, 1 + s)``, hue shift ``U(-h, h)``,
    in a random order per image (``random_order``) or in that order; brightness and contrast clip to [0, 255],
    saturation and hue keep each pixel's value; 0 disables a component."""
    brightness, contrast, saturation, hue = photometric_strengths(brightness, contrast, saturation, hue)
    enabled = (brightness > 0, contrast > 0, saturation > 0, hue > 0)

    def fn(image: jax.Array, key: jax.Array) -> jax.Array:
        if not any(enabled):
            return image
        if (saturation > 0 or hue > 0) and image.shape[-1] != 3:
            raise ValueError(f'photometric_distort: saturation/hue need RGB images, got shape {image.shape}')
        k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)
        delta_b = jax.random.uniform(k_b, (), jnp.float32, -brightness, brightness)
        factor_c = jax.random.uniform(k_c, (), jnp.float32, 1 - contrast, 1 + contrast)
        factor_s = jax.random.uniform(k_s, (), jnp.float32, 1 - saturation, 1 + saturation)
        delta_h = jax.random.uniform(k_h, (), jnp.float32, -hue, hue)
        brighten = lambda x: jnp.clip(x + delta_b, 0.0, 255.0)  # noqa: E731
        contrast_ = lambda x: jnp.clip(adjust_contrast(x, factor_c), 0.0, 255.0)  # noqa: E731
        if random_order:
            order = jnp.argsort(jax.random.uniform(k_order, (4,)))
            for step in range(4):
                image = _component(image, order[step], enabled, brighten, contrast_, factor_s, delta_h)
        else:
            components = [brighten, contrast_, lambda x: adjust_saturation(x, factor_s),
                          lambda x: adjust_hue(x, delta_h)]
            for f, on in zip(components, enabled, strict=True):
                image = f(image) if on else image
        return jnp.clip(image, 0.0, 255.0) if saturation > 0 or hue > 0 else image

    return fn


# ----------------------------------------------------------------------------------------------- specs


def get(name: str, *args, **kwargs) -> ImageFn:
    """The device op ``name`` with its arguments; ValueError naming the valid ops or the op's signature."""
    if name not in _REGISTRY:
        raise ValueError(f'unknown device preprocessing op {name!r}; device ops: {", ".join(names())} '
                         f'(everything else runs on the host, in data.train_preprocess)')
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f'device op {name}{inspect.signature(factory)}: {e}') from None
    return factory(*args, **kwargs)


def parse(spec: str) -> ImageFn:
    """``'op1(args)|op2|...'`` (the host ops' grammar) -> ``fn(image [H, W, C] float32, key) -> image``; '' is the
    identity."""
    if not spec.strip():
        return lambda image, key: image
    steps = [(position, zlib.crc32(name.encode()) & 0x7FFFFFFF, get(name, *args, **kwargs))
             for position, (name, args, kwargs) in enumerate(host_ops._calls(spec))]

    def apply(image: jax.Array, key: jax.Array) -> jax.Array:
        for position, salt, fn in steps:
            image = fn(image, jax.random.fold_in(jax.random.fold_in(key, position), salt))
        return image

    return apply


def batch_fn(spec: str, image_key: str = 'image') -> Callable[[dict[str, jax.Array]], dict[str, jax.Array]]:
    """``fn(batch) -> batch``: the spec applied to every example of ``batch[image_key]`` (any leading dims: [B, ...]
    under shard_map, [devices, B / devices, ...] under pmap), each with the key of its ``batch['device_seed']``;
    ``device_seed`` is dropped. Per example only, so it runs where each example already lies."""
    per_example = parse(spec)

    def fn(batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        batch = dict(batch)
        if SEED_KEY not in batch or image_key not in batch:
            raise ValueError(f'data.device_preprocess needs {image_key!r} and {SEED_KEY!r} in the training batch, '
                             f'got {", ".join(sorted(batch))}')
        seeds, images = batch.pop(SEED_KEY), batch[image_key]
        one = lambda image, seed: per_example(image, jax.random.wrap_key_data(seed, impl='threefry2x32'))  # noqa: E731
        for _ in range(seeds.ndim - 1):
            one = jax.vmap(one)
        batch[image_key] = one(images.astype(jnp.float32), seeds)
        return batch

    return fn
