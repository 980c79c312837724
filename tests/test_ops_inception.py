"""Tests of the GoogLeNet / ResNet preprocessing ops (inception crop, photometric distortions, 144-crop views)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops
from convnets.data.constants import IMAGENET_RGB_MEAN
from convnets.data.ops.inception import inception_crop_box
from tests.op_testing import SEED, _apply, _coords, _dynamic, _eager, _image

MEAN = f"subtract_mean({IMAGENET_RGB_MEAN})"
GOOGLENET_TRAIN = f"decode(3)|inception_crop(224)|flip_lr|photometric_distort|{MEAN}"





def _seeds(n: int) -> list[tf.Tensor]:
    return [tf.constant([1, s], tf.int64) for s in range(n)]


def _many(fn, n: int) -> np.ndarray:
    """fn(seed) for n seeds, vectorised by tf.data (one batch)."""
    seeds = tf.stack([tf.range(n, dtype=tf.int64), tf.fill([n], tf.constant(5, tf.int64))], axis=1)
    return next(iter(tf.data.Dataset.from_tensor_slices(seeds).map(fn).batch(n))).numpy()


def test_new_ops_registered():
    assert {"inception_crop", "photometric_distort", "googlenet_crops"} <= set(ops.names())


def test_inception_crop_shapes_values_and_determinism():
    for shape in [(300, 400, 3), (500, 333, 3), (17, 23, 1), (224, 224, 3)]:
        image = _image(*shape)
        out = (_apply if shape[2] == 1 else _eager)(ops.get("inception_crop", 224), image)
        assert out.shape == (224, 224, shape[2]) and out.dtype == np.float32
        assert out.min() >= 0 and out.max() <= 255
        # Exactly the bilinear resize of the box that inception_crop_box reports.
        top, left, h, w = inception_crop_box(shape, SEED).numpy()
        expected = tf.image.resize(tf.constant(image[top : top + h, left : left + w], tf.float32), (224, 224))
        np.testing.assert_array_equal(out, expected.numpy())
    image = _image(300, 400)
    op = ops.get("inception_crop", (32, 48))
    outs = [_eager(op, image, seed) for seed in _seeds(6)]
    assert outs[0].shape == (32, 48, 3)
    np.testing.assert_array_equal(outs[0], _apply(op, image, _seeds(6)[0]))
    assert len({o.tobytes() for o in outs}) == 6
    np.testing.assert_array_equal(_eager(op, np.full((50, 70, 3), 9, np.uint8)), 9.0)
    sizes = [(300, 400), (400, 300), (64, 64), (500, 333)]
    ds = _dynamic([_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]).map(ops.parse("inception_crop(24)"))
    assert ds.element_spec["image"].shape.as_list() == [24, 24, 3]
    assert [x["image"].shape for x in ds] == [(24, 24, 3)] * 4
    for bad in ("inception_crop(224, area_min=0)", "inception_crop(224, 0.5, 0.4)", "inception_crop(224, ratio_min=2)"):
        with pytest.raises(ValueError, match="inception_crop"):
            ops.parse(bad)


@pytest.mark.parametrize("shape", [(300, 400), (400, 300), (256, 256)])
def test_inception_crop_box_statistics(shape):
    H, W = shape
    n = 2000
    top, left, h, w = _many(lambda s: inception_crop_box((H, W, 3), s), n).T.astype(np.float64)
    frac, ratio = h * w / (H * W), w / h
    assert np.all((frac >= 0.08 - 1e-9) & (frac <= 1 + 1e-9))
    assert np.all((ratio >= 0.75 - 1e-9) & (ratio <= 4 / 3 + 1e-9))
    assert frac.min() < 0.1 and frac.max() > 0.8  # spread over the whole range
    assert np.all((top >= 0) & (left >= 0) & (top + h <= H) & (left + w <= W))
    assert (top == 0).any() and (top + h == H).any() and (left == 0).any() and (left + w == W).any()
    # Area "distributed evenly": flat density where every candidate fits (area fractions below 0.5).
    counts = np.histogram(frac, bins=4, range=(0.1, 0.5))[0]
    assert np.all(np.abs(counts - counts.mean()) < 0.15 * counts.mean()), counts
    # Log-uniform aspect ratio: symmetric between portrait and landscape.
    small = np.log(ratio[frac < 0.5])
    assert abs(small.mean()) < 0.02 and abs((small > 0).mean() - 0.5) < 0.05
    assert np.abs(np.histogram(small, bins=4, range=(np.log(0.75), np.log(4 / 3)))[0] / small.size - 0.25).max() < 0.04
    assert len({(a, b) for a, b in zip(top, left, strict=True)}) > n // 2


def test_inception_crop_box_fallback_and_custom_ranges():
    # No box of area >= 50% with w / h in [3/4, 4/3] fits: centred box with the ratio clamped.
    np.testing.assert_array_equal(inception_crop_box((10, 200), SEED, area_min=0.5), [0, 93, 10, 13])
    np.testing.assert_array_equal(inception_crop_box((200, 10), SEED, area_min=0.5), [93, 0, 13, 10])
    np.testing.assert_array_equal(inception_crop_box((3, 3), SEED, area_min=0.5, area_max=0.6), [0, 0, 3, 3])
    image = _coords(10, 200)
    expected = tf.image.resize(image[:, 93:106], (4, 4)).numpy()
    np.testing.assert_array_equal(_apply(ops.get("inception_crop", 4, area_min=0.5), image), expected)
    top, left, h, w = _many(lambda s: inception_crop_box(tf.constant([100, 100]), s, 0.25, 0.25, 1.0, 1.0), 50).T
    assert np.all((h == 50) & (w == 50))
    assert len(set(zip(top, left, strict=True))) > 40


def _images(op, image, n: int) -> np.ndarray:
    """op(image) for n seeds, vectorised (one tf.data trace)."""
    return _many(lambda s: op({"image": tf.constant(image)}, s)["image"], n)


def test_photometric_distort_range_determinism_identity():
    image = _image(20, 30)
    op = ops.get("photometric_distort")
    out = _apply(op, image)  # eager == tf.data static == tf.data dynamic
    np.testing.assert_array_equal(out, _apply(op, image))
    outs = _images(op, image, 20)
    assert outs.dtype == np.float32 and outs.shape == (20, *image.shape) and outs.min() >= 0 and outs.max() <= 255
    assert sum(np.abs(o - image).max() > 1 for o in outs) >= 18
    assert len({o.tobytes() for o in outs}) == 20
    off = ops.parse("photometric_distort(0, 0, 0, 0)")
    np.testing.assert_array_equal(_apply(off, image), image.astype(np.float32))
    np.testing.assert_array_equal(_eager(off, image[..., :1]), image[..., :1].astype(np.float32))
    # Fixed order: same draws, different composition for most seeds.
    fixed = _images(ops.get("photometric_distort", random_order=False), image, 20)
    assert sum(not np.array_equal(a, b) for a, b in zip(fixed, outs, strict=True)) >= 15
    with pytest.raises(ValueError, match="3 static channels"):
        op({"image": tf.constant(image[..., :1])}, SEED)
    assert _eager(ops.parse("photometric_distort(saturation=0, hue=0)"), image[..., :1]).shape == (20, 30, 1)
    for bad in ("contrast=2", "saturation=-0.1", "hue=0.7", "brightness=-1"):
        with pytest.raises(ValueError, match="photometric_distort"):
            ops.parse(f"photometric_distort({bad})")


def _photometric_reference(image: np.ndarray, seed: tf.Tensor, order: tuple[int, ...]) -> np.ndarray:
    """Slim's distort_color written out: the same draws (the op's seed split), components in [0, 1] scale,
    clipped after every one."""
    _, s_b, s_c, s_s, s_h = tf.unstack(tf.random.experimental.stateless_split(seed, 5))
    delta_b = tf.random.stateless_uniform([], s_b, -32.0, 32.0)
    factor_c = tf.random.stateless_uniform([], s_c, 0.5, 1.5)
    factor_s = tf.random.stateless_uniform([], s_s, 0.5, 1.5)
    delta_h = tf.random.stateless_uniform([], s_h, -0.2, 0.2)
    x = tf.constant(image, tf.float32) / 255.0
    components = [
        lambda x: x + delta_b / 255.0,
        lambda x: tf.image.adjust_contrast(x, factor_c),
        lambda x: tf.image.adjust_saturation(x, factor_s),
        lambda x: tf.image.adjust_hue(x, delta_h),
    ]
    for i in order:
        x = tf.clip_by_value(components[i](x), 0.0, 1.0)
    return (x * 255.0).numpy()


def test_photometric_distort_matches_clip_every_component_reference():
    """The op skips the rescaling and the clips that cannot change a value (saturation and hue keep each pixel's
    HSV value); the result is the clip-after-every-component composition, to float rounding, in the fixed order
    and in the drawn order."""
    image = _image(24, 32).astype(np.float32)
    fixed = ops.get("photometric_distort", random_order=False)
    drawn = ops.get("photometric_distort")
    for seed in _seeds(12):
        out = fixed({"image": tf.constant(image)}, seed)["image"].numpy()
        np.testing.assert_allclose(out, _photometric_reference(image, seed, (0, 1, 2, 3)), atol=2e-3)
        order_seed = tf.random.experimental.stateless_split(seed, 5)[0]
        order = tuple(int(i) for i in tf.argsort(tf.random.stateless_uniform([4], order_seed)))
        out = drawn({"image": tf.constant(image)}, seed)["image"].numpy()
        np.testing.assert_allclose(out, _photometric_reference(image, seed, order), atol=2e-3)
        assert out.min() >= 0 and out.max() <= 255


def test_photometric_distort_grey_and_components():
    ramp = np.linspace(20, 230, 12 * 16).reshape(12, 16, 1)
    grey = np.repeat(ramp, 3, axis=-1).astype(np.float32)
    full = _images(ops.get("photometric_distort"), grey, 10)
    # On grey images hue and saturation do nothing: same as brightness and contrast alone, and still grey.
    np.testing.assert_allclose(full, _images(ops.get("photometric_distort", saturation=0, hue=0), grey, 10), atol=2e-3)
    np.testing.assert_allclose(full, full[..., :1].repeat(3, axis=-1), atol=2e-3)
    assert np.all(np.abs(full - grey).max(axis=(1, 2, 3)) > 0.5)
    flat = np.full((4, 5, 3), 128, np.uint8)  # a flat grey image: only brightness changes it
    np.testing.assert_allclose(_images(ops.get("photometric_distort", brightness=0), flat, 10), 128, atol=2e-3)

    def draws(image, **kwargs):
        op = ops.get("photometric_distort", **{"brightness": 0, "contrast": 0, "saturation": 0, "hue": 0, **kwargs})
        return _many(lambda s: op({"image": tf.constant(image, tf.float32)}, s)["image"], 1000)

    shift = draws(np.full((1, 1, 3), 128.0), brightness=32)[:, 0, 0] - 128  # U(-32, 32), same for all channels
    np.testing.assert_array_equal(shift, shift[:, :1].repeat(3, axis=1))
    assert -32 <= shift.min() < -30 and 30 < shift.max() <= 32 and abs(shift.mean()) < 2
    pair = np.array([[[100.0] * 3, [200.0] * 3]])
    out = draws(pair, contrast=0.5)[:, 0]
    factor = (out[:, 1, 0] - out[:, 0, 0]) / 100  # about the mean 150
    np.testing.assert_allclose(out[:, 0, 0] + out[:, 1, 0], 300, atol=1e-3)
    assert 0.5 <= factor.min() < 0.55 and 1.45 < factor.max() <= 1.5
    pink = np.array([[[200.0, 100.0, 100.0]]])  # hue 0, saturation 0.5, value 200/255
    hsv = tf.image.rgb_to_hsv(draws(pink, saturation=0.5) / 255).numpy()[:, 0, 0]
    np.testing.assert_allclose(hsv[:, 2], 200 / 255, atol=1e-5)
    assert 0.25 - 1e-4 <= hsv[:, 1].min() < 0.27 and 0.73 < hsv[:, 1].max() <= 0.75 + 1e-4
    hsv = tf.image.rgb_to_hsv(draws(pink, hue=0.2) / 255).numpy()[:, 0, 0]
    delta = (hsv[:, 0] + 0.5) % 1 - 0.5
    np.testing.assert_allclose(hsv[:, 1:], np.broadcast_to([0.5, 200 / 255], hsv[:, 1:].shape), atol=1e-3)
    assert -0.2 - 1e-4 <= delta.min() < -0.18 and 0.18 < delta.max() <= 0.2 + 1e-4


def _expected_crops(image: np.ndarray, size: int) -> list[np.ndarray]:
    """The 18 unmirrored views of googlenet_crops on an image whose short side already is the scale."""
    H, W = image.shape[:2]
    s = min(H, W)
    views = []
    for start in (0, (max(H, W) - s) // 2, max(H, W) - s):
        square = image[:, start : start + s] if W >= H else image[start : start + s]
        c, e = (s - size) // 2, s - size
        views += [square[y : y + size, x : x + size] for y, x in [(0, 0), (0, e), (e, 0), (e, e), (c, c)]]
        views.append(tf.image.resize(square, (size, size)).numpy())
    return views


def test_googlenet_crops_exact_windows():
    for h, w in [(8, 12), (13, 8), (8, 8)]:  # landscape, portrait, square
        image = _coords(h, w)
        out = _eager(ops.parse("googlenet_crops(4, 8)"), image, key="crops")
        assert out.shape == (36, 4, 4, 2) and out.dtype == np.float32
        expected = np.stack(_expected_crops(image, 4))
        np.testing.assert_array_equal(out[:18], expected)
        np.testing.assert_array_equal(out[18:], expected[:, :, ::-1])
    out = _apply(ops.get("googlenet_crops", 4, 8), _coords(8, 13), key="crops")  # eager == static == dynamic
    assert out[6 * 2 + 3, -1, -1].tolist() == [7, 12]  # right square (columns 5..12), bottom-right crop
    assert out[6 * 1 + 4, 0, 0].tolist() == [2, 4]  # centre square (columns 2..9), centre crop
    assert out[18 + 6 * 0 + 0, 0, 0].tolist() == [0, 3]  # mirrored top-left crop of the left square
    # With resizing: the views are windows of resize_short(scale).
    image = _image(300, 400)
    resized = ops.parse("resize_short(256)")({"image": tf.constant(image)}, SEED)["image"].numpy()
    out = _eager(ops.get("googlenet_crops", 224, 256), image, key="crops")
    assert out.shape == (36, 224, 224, 3) and resized.shape == (256, 341, 3)
    np.testing.assert_array_equal(out[:18], np.stack(_expected_crops(resized, 224)))
    np.testing.assert_array_equal(out[6 * 1 + 4], resized[16:240, 58:282])
    # Differently sized images, dynamic shapes, batched to [B, 36, size, size, C].
    images = [_image(20, 30, seed=1), _image(30, 20, seed=2), _image(25, 25, seed=3)]
    ds = _dynamic(images).map(ops.parse("googlenet_crops(12, 16)|keep('crops')")).batch(3)
    assert ds.element_spec["crops"].shape.as_list() == [None, 36, 12, 12, 3]
    batch = next(iter(ds))["crops"].numpy()
    for b, image in enumerate(images):
        np.testing.assert_array_equal(batch[b], _eager(ops.get("googlenet_crops", 12, 16), image, key="crops"))
    with pytest.raises(ValueError, match="size <= scale"):
        ops.parse("googlenet_crops(288, 256)")


def test_random_resize_short_resnet_scale_augmentation():
    op = ops.get("random_resize_short", 256, 480)
    shapes = _many(lambda s: tf.shape(op({"image": tf.zeros((2, 3, 1), tf.uint8)}, s)["image"])[:2], 2000)
    assert shapes[:, 0].min() == 256 and shapes[:, 0].max() == 480
    np.testing.assert_array_equal(shapes[:, 1], (3 * shapes[:, 0] + 1) // 2)


def _jpeg_dataset(sizes) -> tf.data.Dataset:
    encoded = [tf.io.encode_jpeg(_image(h, w, seed=i)).numpy() for i, (h, w) in enumerate(sizes)]
    return tf.data.Dataset.from_tensor_slices(
        ({"image": encoded, "label": list(range(len(sizes)))}, tf.stack(_seeds(len(sizes))))
    )


@pytest.mark.parametrize(
    "spec, shape, key",
    [
        (GOOGLENET_TRAIN, [224, 224, 3], "image"),
        (f"decode(3)|{MEAN}|googlenet_crops(224, 288)|keep('crops', 'label')", [36, 224, 224, 3], "crops"),
        (
            f"decode(3)|random_resize_short(256, 480)|random_crop(224)|flip_lr|pca_lighting|{MEAN}",
            [224, 224, 3],
            "image",
        ),
    ],
)
def test_paper_specs_in_tf_data(spec, shape, key):
    ds = _jpeg_dataset([(300, 400), (375, 500), (500, 333)]).map(lambda x, s: ops.parse(spec)(x, s))
    assert ds.element_spec[key].shape.as_list() == shape and ds.element_spec[key].dtype == tf.float32
    batch = next(iter(ds.batch(3)))
    assert batch[key].shape == (3, *shape) and batch["label"].numpy().tolist() == [0, 1, 2]
    if spec == GOOGLENET_TRAIN:  # 0..255 values minus the mean
        values = batch["image"].numpy() + np.float32(IMAGENET_RGB_MEAN)
        assert values.min() >= -1e-3 and values.max() <= 255 + 1e-3
        again = next(iter(ds.batch(3)))["image"].numpy()
        np.testing.assert_array_equal(batch["image"].numpy(), again)
