"""Tests of the ImageNet preprocessing ops of AlexNet, ZF Net and VGG (geometry, colour, views of convnets.data.ops)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops, pipeline
from convnets.data.constants import IMAGENET_EIGVAL, IMAGENET_EIGVEC, IMAGENET_RGB_MEAN
from convnets.data.ops.colour import compute_mean_image
from experiments import default
from tests.op_testing import SEED, _apply, _coords, _dynamic, _image

MEAN = f"subtract_mean({IMAGENET_RGB_MEAN})"
NEW_OPS = (
    "resize_short random_resize_short pca_lighting rgb_colour_shift subtract_mean subtract_mean_image "
    "five_crop ten_crop random_ten_crop hflip flip_views"
).split()




def _seeds(n: int) -> list[tf.Tensor]:
    return [tf.constant([1, s], tf.int64) for s in range(n)]


def _many(op, image, n: int, out=lambda x: x) -> np.ndarray:
    """out(op(image)) for n seeds, vectorised by tf.data (one batch)."""
    seeds = tf.stack([tf.range(n, dtype=tf.int64), tf.fill([n], tf.constant(5, tf.int64))], axis=1)
    ds = tf.data.Dataset.from_tensor_slices(seeds).map(lambda s: out(op({"image": tf.constant(image)}, s)["image"]))
    return next(iter(ds.batch(n))).numpy()


def test_new_ops_registered():
    assert set(NEW_OPS) <= set(ops.names())
    for name in ("resize", "center_crop", "random_crop", "flip_lr", "decode", "normalize"):
        assert name in ops.names()


def test_resize_short_shapes_and_rounding():
    for (h, w), expected in [((300, 400), (256, 341)), ((400, 300), (341, 256)), ((375, 500), (256, 341))]:
        out = _apply(ops.parse("resize_short(256)"), _image(h, w))
        assert out.shape == (*expected, 3) and out.dtype == np.float32
    assert _apply(ops.get("resize_short", 100), _image(200, 301, 1)).shape == (100, 151, 1)  # 150.5 rounds up
    image = _image(300, 400)
    reference = tf.image.resize(tf.constant(image, tf.float32), (256, 341)).numpy()
    np.testing.assert_array_equal(_apply(ops.get("resize_short", 256), image), reference)
    np.testing.assert_allclose(_apply(ops.get("resize_short", 64), np.full((80, 90, 3), 7, np.uint8)), 7.0)
    sizes = [(300, 400), (400, 300), (256, 256), (512, 300)]
    ds = _dynamic([_image(h, w, seed=i) for i, (h, w) in enumerate(sizes)]).map(ops.parse("resize_short(256)"))
    assert ds.element_spec["image"].shape.as_list() == [None, None, 3]
    assert [x["image"].shape[:2] for x in ds] == [(256, 341), (341, 256), (256, 256), (437, 256)]
    cropped = _dynamic([_image(300, 400)]).map(ops.parse("resize_short(256)|center_crop(224)"))
    assert cropped.element_spec["image"].shape.as_list() == [224, 224, 3]
    with pytest.raises(ValueError, match="size must be a positive int"):
        ops.parse("resize_short((256, 256))")


def test_random_resize_short_scale_jittering():
    image = _image(2, 3, 1)
    op = ops.get("random_resize_short", 256, 512)
    shapes = _many(op, image, 3000, out=lambda x: tf.shape(x)[:2])
    s = shapes[:, 0]
    assert s.min() == 256 and s.max() == 512
    np.testing.assert_array_equal(shapes[:, 1], (3 * s + 1) // 2)  # aspect ratio kept (round half up)
    counts = np.histogram(s, bins=4, range=(256, 513))[0]
    assert np.all(np.abs(counts - 750) < 120), counts  # roughly uniform
    assert abs(s.mean() - 384) < 5
    a, b = _apply(op, image, _seeds(2)[0]), _apply(op, image, _seeds(2)[1])
    np.testing.assert_array_equal(a, _apply(op, image, _seeds(2)[0]))
    assert a.shape != b.shape
    with pytest.raises(ValueError, match="min_size <= max_size"):
        ops.parse("random_resize_short(512, 256)")


def test_resize_fixed_alexnet():
    out = _apply(ops.parse("resize((256, 256))"), _image(300, 400))
    assert out.shape == (256, 256, 3) and out.dtype == np.float32


def test_pca_lighting_statistics():
    v, lam = np.array(IMAGENET_EIGVEC), np.array(IMAGENET_EIGVAL)
    np.testing.assert_allclose(v.T @ v, np.eye(3), atol=1e-3)
    np.testing.assert_allclose(v @ v.T, np.eye(3), atol=1e-3)
    grey = np.full((4, 5, 3), 128, np.uint8)
    op = ops.get("pca_lighting")
    shifts = []
    for seed in _seeds(3):
        out = _apply(op, grey, seed)
        assert out.dtype == np.float32
        shift = out - 128.0
        np.testing.assert_allclose(shift, np.broadcast_to(shift[0, 0], shift.shape), atol=1e-4)
        shifts.append(shift[0, 0])
    assert len({s.tobytes() for s in shifts}) == 3 and np.abs(shifts).max() > 0.1
    draws = _many(op, np.zeros((1, 1, 3), np.uint8), 2000)[:, 0, 0]
    expected = 0.1**2 * v @ np.diag(lam**2) @ v.T
    cov = np.cov(draws, rowvar=False)
    assert np.linalg.norm(cov - expected) < 0.1 * np.linalg.norm(expected)
    in_basis = np.linalg.solve(v, draws.T).T / lam  # = the alphas a_i
    np.testing.assert_allclose(in_basis.std(axis=0), 0.1, rtol=0.05)
    assert np.all(np.abs(in_basis.mean(axis=0)) < 3 * 0.1 / np.sqrt(2000))
    assert np.abs(np.corrcoef(in_basis, rowvar=False) - np.eye(3)).max() < 0.1
    # Exact formula with custom statistics: shift = eigvec @ (alpha_std * N(0, 1) * eigval).
    custom = ops.get("pca_lighting", 2.0, eigval=(1, 2, 3), eigvec=((0, 1, 0), (1, 0, 0), (0, 0, 1)))
    normal = tf.random.stateless_normal([3], SEED).numpy()
    np.testing.assert_allclose(_apply(custom, grey)[0, 0] - 128, 2.0 * normal[[1, 0, 2]] * [2, 1, 3], rtol=1e-5)
    np.testing.assert_array_equal(_apply(ops.get("rgb_colour_shift"), grey), _apply(op, grey))
    np.testing.assert_array_equal(_apply(ops.get("pca_lighting", 0.0), grey), grey.astype(np.float32))
    with pytest.raises(ValueError, match="3 static channels"):
        _apply(op, grey[..., :1])
    with pytest.raises(ValueError, match=r"eigvec must have shape \(3, 3\)"):
        ops.parse("pca_lighting(eigvec=(1, 2, 3))")


def test_subtract_mean():
    rgb = np.array([[[10, 20, 30], [110, 120, 255]]], np.uint8)
    out = _apply(ops.parse("subtract_mean((10, 20, 30.5))"), rgb)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[[0, 0, -0.5], [100, 100, 224.5]]])
    np.testing.assert_allclose(
        _apply(ops.get("subtract_mean", IMAGENET_RGB_MEAN), rgb), rgb - np.float32([123.68, 116.779, 103.939])
    )


def test_subtract_mean_image(tmp_path):
    mean = np.arange(4 * 5 * 3, dtype=np.float32).reshape(4, 5, 3) / 4
    path = str(tmp_path / "mean.npy")
    np.save(path, mean)
    image = _image(4, 5)
    out = _apply(ops.parse(f"subtract_mean_image({path!r})"), image)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, image.astype(np.float32) - mean)
    op = ops.get("subtract_mean_image", path)
    with pytest.raises(ValueError, match=r"image shape \[5, 5, 3\] != mean image shape \[4, 5, 3\]"):
        op({"image": tf.constant(_image(5, 5))}, SEED)
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"mean image shape \[4, 5, 3\](.|\n)*\[5 5 3\]"):
        next(iter(_dynamic([_image(5, 5)]).map(op)))
    with pytest.raises(ValueError, match="does not exist"):
        ops.parse(f"subtract_mean_image({str(tmp_path / 'missing.npy')!r})")
    images = np.random.default_rng(3).uniform(0, 255, (6, 4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(compute_mean_image([images[:4], images[4:]]), images.mean(0), rtol=1e-6)
    ds = tf.data.Dataset.from_tensor_slices({"image": images, "label": np.zeros(6)})
    np.testing.assert_allclose(compute_mean_image(ds), images.mean(0), rtol=1e-6)
    np.testing.assert_allclose(compute_mean_image(ds, max_examples=2), images[:2].mean(0), rtol=1e-6)


def _expected_five(image: np.ndarray, h: int, w: int) -> list[np.ndarray]:
    H, W = image.shape[:2]
    cy, cx = (H - h) // 2, (W - w) // 2
    offsets = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w), (cy, cx)]  # TL, TR, BL, BR, centre
    return [image[y : y + h, x : x + w] for y, x in offsets]


def test_ten_crop_and_five_crop_exact_windows():
    image = _coords(7, 9)
    five = _expected_five(image, 4, 4)
    out = _apply(ops.parse("ten_crop(4)"), image, key="crops")
    assert out.shape == (10, 4, 4, 2)
    for i in range(5):
        np.testing.assert_array_equal(out[i], five[i])
        np.testing.assert_array_equal(out[5 + i], five[i][:, ::-1])
    assert out[0, 0, 0].tolist() == [0, 0] and out[3, -1, -1].tolist() == [6, 8] and out[4, 0, 0].tolist() == [1, 2]
    np.testing.assert_array_equal(_apply(ops.parse("five_crop(4)"), image, key="crops"), out[:5])
    np.testing.assert_array_equal(
        _apply(ops.parse("ten_crop((3, 5))"), image, key="crops")[:5], np.stack(_expected_five(image, 3, 5))
    )
    # Differently sized images, dynamic shapes, batched to [B, 10, h, w, C].
    images = [_coords(7, 9), _coords(10, 6), _coords(5, 5)]
    # 'image' keeps its own size per example: keep only the views to batch them.
    ds = _dynamic(images).map(ops.parse("ten_crop(5)|keep('crops', 'label')")).batch(3)
    assert ds.element_spec["crops"].shape.as_list() == [None, 10, 5, 5, 2]
    batch = next(iter(ds))["crops"].numpy()
    for b, image in enumerate(images):
        expected = _expected_five(image, 5, 5)
        np.testing.assert_array_equal(batch[b], np.stack(expected + [e[:, ::-1] for e in expected]))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="smaller than the crop"):
        ops.get("ten_crop", 8)({"image": tf.constant(image)}, SEED)
    with pytest.raises(tf.errors.InvalidArgumentError, match="smaller than the crop"):
        next(iter(_dynamic([image]).map(ops.get("ten_crop", 8))))


def test_random_ten_crop_picks_the_ten_views():
    image = _coords(7, 9)
    views = _apply(ops.get("ten_crop", 4), image, key="crops")
    op = ops.get("random_ten_crop", 4)
    for seed in _seeds(2):
        np.testing.assert_array_equal(_apply(op, image, seed), _apply(op, image, seed))
    outs = _many(op, image, 200)
    matches = (outs[:, None] == views[None]).all(axis=(2, 3, 4))  # [draw, view]
    assert np.all(matches.sum(axis=1) == 1)  # every draw is exactly one of the ten views
    assert np.all(matches.sum(axis=0) > 5)  # and every view is drawn


def test_hflip_and_flip_views():
    image = _image(3, 4, 2)
    np.testing.assert_array_equal(_apply(ops.parse("hflip"), image), image[:, ::-1])
    np.testing.assert_array_equal(_apply(ops.parse("hflip|hflip"), image), image)
    views = _apply(ops.parse("flip_views"), image, key="crops")
    np.testing.assert_array_equal(views, np.stack([image, image[:, ::-1]]))
    np.testing.assert_array_equal(
        _apply(ops.parse("ten_crop(2)|hflip(key='crops')"), image, key="crops"),
        _apply(ops.parse("ten_crop(2)"), image, key="crops")[:, :, ::-1],
    )


def test_random_crop_and_center_crop_non_square():
    image = _coords(256, 341)
    offsets = set()
    for seed in _seeds(8):
        out = _apply(ops.get("random_crop", 224), image, seed)
        y, x = out[0, 0].astype(int)
        assert out.shape == (224, 224, 2) and 0 <= y <= 32 and 0 <= x <= 117
        np.testing.assert_array_equal(out, image[y : y + 224, x : x + 224])
        offsets.add((y, x))
    assert len(offsets) > 4
    np.testing.assert_array_equal(_apply(ops.parse("center_crop(224)"), image), image[16:240, 58:282])
    spec = ops.parse("resize_short(256)|random_crop(224)|flip_lr")
    ds = _dynamic([_image(300, 400), _image(500, 375, seed=1)]).map(spec)
    assert ds.element_spec["image"].shape.as_list() == [224, 224, 3]
    assert [x["image"].shape for x in ds] == [(224, 224, 3)] * 2


def _jpeg_dataset(sizes) -> tf.data.Dataset:
    encoded = [tf.io.encode_jpeg(_image(h, w, seed=i)).numpy() for i, (h, w) in enumerate(sizes)]
    return tf.data.Dataset.from_tensor_slices(
        ({"image": encoded, "label": list(range(len(sizes)))}, _seeds(len(sizes)))
    )


@pytest.mark.parametrize(
    "spec, shape, key",
    [
        (
            f"decode(3)|resize((256, 256))|random_crop(224)|flip_lr|pca_lighting(0.1)|{MEAN}",
            [224, 224, 3],
            "image",
        ),
        (f"decode(3)|resize((256, 256))|{MEAN}|ten_crop(224)", [10, 224, 224, 3], "crops"),
        (
            f"decode(3)|random_resize_short(256, 512)|random_crop(224)|flip_lr|rgb_colour_shift|{MEAN}",
            [224, 224, 3],
            "image",
        ),
        ("decode(3)|resize_short(256)|center_crop(256)|random_ten_crop(224)", [224, 224, 3], "image"),
        ("decode(3)|resize_short(384)|subtract_mean((1, 2, 3))|flip_views", [2, None, None, 3], "crops"),
    ],
)
def test_paper_specs_in_tf_data(spec, shape, key):
    sizes = [(300, 400), (375, 500), (500, 333)]
    ds = _jpeg_dataset(sizes).map(lambda x, s: ops.parse(spec)(x, s))
    assert ds.element_spec[key].shape.as_list() == shape and ds.element_spec[key].dtype == tf.float32
    outs = list(ds.as_numpy_iterator())
    assert [int(o["label"]) for o in outs] == [0, 1, 2]
    if None in shape:  # VGG dense evaluation: short side Q, original then flipped view
        assert [o[key].shape for o in outs] == [(2, 384, 512, 3), (2, 384, 512, 3), (2, 577, 384, 3)]
        np.testing.assert_array_equal(outs[0][key][1], outs[0][key][0][:, ::-1])
    else:
        batched = next(iter(ds.batch(3)))[key]
        assert batched.shape == (3, *shape)


def test_ten_crop_eval_batches_through_pipeline(digits_dir):
    data = default.get_config().data
    data.update(dict(name="convnets_digits", data_dir=digits_dir, download=False, prefetch=0))
    data.eval_preprocess = "decode|to_rgb|resize_short(40)|subtract_mean((1, 2, 3))|ten_crop(32)"
    data.batch_keys = ("crops", "label")
    batch = next(pipeline.eval_batches(data, global_batch_size=16))
    assert set(batch) == {"crops", "label", "mask"}
    assert batch["crops"].shape == (16, 10, 32, 32, 3) and batch["mask"].shape == (16,)
    np.testing.assert_array_equal(batch["crops"][:, 5:], batch["crops"][:, :5, :, ::-1])
