"""Device preprocessing ops (convnets.data.device_ops) against their TensorFlow counterparts, and their batching."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf

from convnets.data import device_ops
from convnets.data.constants import IMAGENET_EIGVAL, IMAGENET_EIGVEC


def _rgb(h: int = 24, w: int = 20, seed: int = 0) -> np.ndarray:
    """0..255 float RGB with grey, saturated and black pixels (the HSV kernels' edge cases)."""
    image = np.random.default_rng(seed).uniform(0, 255, (h, w, 3)).astype(np.float32)
    image[0, :4] = 0.0
    image[1, :4] = [[100, 100, 100], [255, 0, 0], [0, 255, 0], [0, 0, 255]]
    image[2, :3] = [[255, 255, 0], [10, 10, 200], [200, 10, 200]]
    return image


def _key(i: int) -> jax.Array:
    return jax.random.wrap_key_data(jnp.array([7, i], jnp.uint32), impl='threefry2x32')


def test_hsv_conversions_match_tensorflow():
    for scale in (1.0 / 255, 1.0):
        image = _rgb() * scale
        hsv = np.asarray(device_ops.rgb_to_hsv(jnp.asarray(image)))
        np.testing.assert_allclose(hsv, tf.image.rgb_to_hsv(image).numpy(), atol=1e-5 * max(scale * 255, 1))
        np.testing.assert_allclose(np.asarray(device_ops.hsv_to_rgb(jnp.asarray(hsv))), image, atol=2e-4 * scale * 255)


@pytest.mark.parametrize('factor', [0.5, 0.9, 1.4])
def test_colour_adjustments_match_tensorflow(factor):
    image = _rgb()
    np.testing.assert_allclose(device_ops.adjust_saturation(jnp.asarray(image), factor),
                               tf.image.adjust_saturation(image, factor).numpy(), atol=2e-3)
    np.testing.assert_allclose(device_ops.adjust_contrast(jnp.asarray(image), factor),
                               tf.image.adjust_contrast(image, factor).numpy(), atol=2e-3)
    delta = (factor - 1) * 0.4  # -0.2 .. 0.16 of the hue circle
    np.testing.assert_allclose(device_ops.adjust_hue(jnp.asarray(image), delta),
                               tf.image.adjust_hue(image, delta).numpy(), atol=2e-3)


def _draws(key: jax.Array) -> tuple[list[float], list[int]]:
    """The op's draws from its key: brightness, contrast, saturation, hue; and the component order."""
    k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)
    ranges = ((-32, 32), (0.5, 1.5), (0.5, 1.5), (-0.2, 0.2))
    draws = [float(jax.random.uniform(k, (), jnp.float32, lo, hi))
             for k, (lo, hi) in zip((k_b, k_c, k_s, k_h), ranges, strict=True)]
    return draws, [int(i) for i in jnp.argsort(jax.random.uniform(k_order, (4,)))]


def _tf_reference(image: np.ndarray, draws: list[float], order: list[int]) -> np.ndarray:
    """TF-Slim's distort_color with these draws, in [0, 1] scale, clipped after every component."""
    b, c, s, h = draws
    components = [lambda x: x + b / 255, lambda x: tf.image.adjust_contrast(x, c),
                  lambda x: tf.image.adjust_saturation(x, s), lambda x: tf.image.adjust_hue(x, h)]
    x = tf.constant(image / 255.0, tf.float32)
    for i in order:
        x = tf.clip_by_value(components[i](x), 0.0, 1.0)
    return x.numpy() * 255


def test_photometric_distort_matches_the_tensorflow_components():
    image = _rgb()
    fixed, drawn = device_ops.get('photometric_distort', random_order=False), device_ops.get('photometric_distort')
    orders = set()
    for i in range(12):
        draws, order = _draws(_key(i))
        orders.add(tuple(order))
        np.testing.assert_allclose(fixed(jnp.asarray(image), _key(i)), _tf_reference(image, draws, [0, 1, 2, 3]),
                                   atol=5e-3)
        out = np.asarray(drawn(jnp.asarray(image), _key(i)))
        np.testing.assert_allclose(out, _tf_reference(image, draws, order), atol=5e-3)
        assert out.min() >= 0 and out.max() <= 255
    assert len(orders) >= 6  # The order is drawn per image.
    off = device_ops.get('photometric_distort', 0, 0, 0, 0)
    np.testing.assert_array_equal(off(jnp.asarray(image), _key(0)), image)


def test_subtract_mean_and_pca_lighting():
    image = _rgb()
    mean = (123.68, 116.779, 103.939)
    np.testing.assert_allclose(device_ops.parse(f'subtract_mean({mean})')(jnp.asarray(image), _key(0)),
                               image - np.float32(mean), rtol=1e-6)
    op = jax.jit(jax.vmap(device_ops.get('pca_lighting', 0.1)))
    keys = jax.vmap(_key)(jnp.arange(4000))
    shifts = np.asarray(op(jnp.zeros((4000, 1, 1, 3)), keys))[:, 0, 0]
    # Covariance alpha_std^2 V diag(l)^2 V^T (AlexNet sec. 4.1).
    scaled = np.asarray(IMAGENET_EIGVEC) * np.asarray(IMAGENET_EIGVAL)[None, :]
    expected = 0.01 * scaled @ scaled.T
    np.testing.assert_allclose(np.cov(shifts.T), expected, atol=0.1 * np.abs(expected).max())
    assert np.abs(shifts.mean(0)).max() < 0.1 * np.sqrt(np.diag(expected)).max()


def test_batch_fn_per_example_any_layout():
    spec = 'photometric_distort|subtract_mean(100)'
    fn = jax.jit(device_ops.batch_fn(spec))
    images = np.stack([_rgb(8, 6, seed=i) for i in range(8)])
    seeds = np.stack([[3, i] for i in range(8)]).astype(np.uint32)
    out = fn({'image': images, 'label': np.arange(8), 'device_seed': seeds})
    assert set(out) == {'image', 'label'} and out['image'].shape == (8, 8, 6, 3) and out['image'].dtype == jnp.float32
    np.testing.assert_array_equal(out['label'], np.arange(8))
    # Each example is its own: the same as alone, and as in the pmap layout [devices, per device, ...].
    one = device_ops.parse(spec)
    for i in (0, 5):
        np.testing.assert_allclose(out['image'][i], one(jnp.asarray(images[i]), _key_data(seeds[i])), atol=1e-3)
    stacked = fn({'image': images.reshape(2, 4, 8, 6, 3), 'device_seed': seeds.reshape(2, 4, 2)})
    np.testing.assert_allclose(stacked['image'].reshape(out['image'].shape), out['image'], atol=1e-4)
    # Same image, different seeds: different draws.
    same = fn({'image': np.repeat(images[:1], 8, 0), 'device_seed': seeds})['image']
    assert len({np.asarray(x).tobytes() for x in same}) == 8
    with pytest.raises(ValueError, match='device_seed'):
        fn({'image': images})


def _key_data(seed: np.ndarray) -> jax.Array:
    return jax.random.wrap_key_data(jnp.asarray(seed), impl='threefry2x32')


def test_parse_errors():
    with pytest.raises(ValueError, match='device ops: pca_lighting, photometric_distort, rgb_colour_shift'):
        device_ops.parse('decode|photometric_distort')
    with pytest.raises(ValueError, match='photometric_distort'):
        device_ops.parse('photometric_distort(hue=0.7)')
    with pytest.raises(ValueError, match=r'subtract_mean\(mean'):
        device_ops.parse('subtract_mean')
    assert device_ops.parse('')(jnp.ones(3), _key(0)).shape == (3,)
