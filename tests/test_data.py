"""Tests of convnets.data: the embedded digits builder, preprocessing ops and pipelines."""

from __future__ import annotations

import collections
import hashlib
import itertools
import socket

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from convnets.data import digits, ops, pipeline
from experiments import default

N_TRAIN, N_TEST = 1437, 360


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("tfds"))
    digits.prepare(path)
    return path


@pytest.fixture
def cfg(data_dir):
    """Returns a factory of `data` config sections (experiments/default.py's) on the prepared digits dataset."""

    def make(**overrides) -> ml_collections.ConfigDict:
        data = default.get_config().data
        data.update(dict(name="convnets_digits", data_dir=data_dir, download=False, cache=True))
        data.update(eval_preprocess="decode|value_range(-0.1, 1.175)")
        data.update(train_preprocess="decode|random_crop(32, pad=2)|flip_lr|value_range(-0.1, 1.175)")
        data.update(overrides)
        return data

    return make


def _read_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    ds = digits.ConvnetsDigits(data_dir=data_dir).as_dataset(split, shuffle_files=False)
    examples = list(ds.as_numpy_iterator())
    return np.stack([e["image"] for e in examples]), np.array([e["label"] for e in examples])


def _keys(images: np.ndarray, labels: np.ndarray) -> collections.Counter:
    """Multiset of (label, image hash): identifies examples independent of order."""
    return collections.Counter(
        (int(label), hashlib.sha1(np.ascontiguousarray(image).tobytes()).hexdigest())
        for image, label in zip(images, labels, strict=True)
    )


def _take(iterator, n: int) -> list[dict]:
    return list(itertools.islice(iterator, n))


def _assert_batches_equal(a: list[dict], b: list[dict]) -> None:
    """Bitwise equality of two lists of batches."""
    assert len(a) == len(b) and all(x.keys() == y.keys() for x, y in zip(a, b, strict=True))
    for x, y in zip(a, b, strict=True):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])


# ----------------------------------------------------------------------------- digits


def test_digits_splits_shapes_and_classes(data_dir):
    for split, n in (("train", N_TRAIN), ("test", N_TEST)):
        images, labels = _read_split(data_dir, split)
        assert images.shape == (n, 32, 32, 1) and images.dtype == np.uint8
        assert labels.min() == 0 and labels.max() == 9
        assert set(labels.tolist()) == set(range(10))
        # White digit on black, using the full 0..255 range.
        assert images[:, 0, 0, 0].max() == 0 and images.max() == 255
    assert digits.ConvnetsDigits(data_dir=data_dir).info.splits["train"].num_examples == N_TRAIN


def test_digits_prepare_is_offline_and_deterministic(data_dir, tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("network access during preparation")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    digits.prepare(str(tmp_path))
    for split in ("train", "test"):
        a, b = _read_split(data_dir, split), _read_split(str(tmp_path), split)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_digits_upsample_matches_tf_bilinear():
    rng = np.random.default_rng(0)
    small = rng.integers(0, 17, size=(3, 8, 8)).astype(np.float64)
    expected = tf.image.resize(small[..., None], (32, 32), method="bilinear").numpy() * 255 / 16
    np.testing.assert_array_equal(
        digits.upsample(small), np.clip(np.round(expected), 0, 255).astype(np.uint8)
    )


# ----------------------------------------------------------------------------- ops

SEED = tf.constant([7, 11], tf.int64)


def _image(h=6, w=5, c=1, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(1, 256, size=(h, w, c)).astype(np.uint8)


def _apply(fn, image, seed=SEED) -> np.ndarray:
    """Applies fn eagerly and inside tf.data; checks both agree and keep the label."""
    features = {"image": tf.constant(image), "label": tf.constant(3, tf.int64)}
    eager = fn(features, seed)
    ds = tf.data.Dataset.from_tensors((features, seed)).map(fn)
    graph = next(iter(ds))
    np.testing.assert_array_equal(eager["image"].numpy(), graph["image"].numpy())
    assert int(eager["label"]) == int(graph["label"]) == 3
    return eager["image"].numpy()


def _seeds(n: int) -> list[tf.Tensor]:
    return [tf.constant([1, s], tf.int64) for s in range(n)]


def test_decode_png_and_noop():
    image = _image(c=1)
    out = _apply(ops.get("decode", channels=1), tf.io.encode_png(image).numpy())
    np.testing.assert_array_equal(out, image)
    np.testing.assert_array_equal(_apply(ops.get("decode"), image), image)
    spec = tf.data.Dataset.from_tensors(({"image": tf.io.encode_png(image)}, SEED)).map(ops.get("decode", 1))
    assert spec.element_spec["image"].shape.as_list() == [None, None, 1]


def test_resize_and_center_crop():
    image = _image(8, 6, 3)
    out = _apply(ops.parse("resize(4)"), image)
    assert out.shape == (4, 4, 3) and out.dtype == np.float32
    assert _apply(ops.parse("resize((16, 12))"), image).shape == (16, 12, 3)
    np.testing.assert_array_equal(_apply(ops.parse("resize((8, 6))"), image), image.astype(np.float32))
    constant = np.full((5, 7, 1), 9, np.uint8)
    np.testing.assert_allclose(_apply(ops.parse("resize(3)"), constant), 9.0)
    np.testing.assert_array_equal(_apply(ops.parse("center_crop(4)"), image), image[2:6, 1:5])
    np.testing.assert_array_equal(_apply(ops.parse("center_crop((3, 6))"), image), image[2:5, :])
    np.testing.assert_array_equal(_apply(ops.parse("pad(2)"), image), np.pad(image, [(2, 2), (2, 2), (0, 0)]))


@pytest.mark.slow  # (~7 s): kept out of the quick loop
def test_random_crop_is_a_window_of_the_padded_image():
    image = _image(6, 5, 2)
    padded = np.pad(image, [(2, 2), (2, 2), (0, 0)])
    op = ops.get("random_crop", (6, 5), pad=2)
    offsets = set()
    for seed in _seeds(40):
        out = _apply(op, image, seed)
        matches = [
            (y, x) for y in range(5) for x in range(5) if np.array_equal(out, padded[y : y + 6, x : x + 5])
        ]
        assert matches, "crop is not a window of the zero-padded image"
        offsets.add(matches[0])
        np.testing.assert_array_equal(out, _apply(op, image, seed))  # same seed, same crop
    assert len(offsets) > 5
    np.testing.assert_array_equal(_apply(ops.get("random_crop", 4), image)[..., 0].shape, (4, 4))


def test_flip_lr():
    image = _image(4, 5, 3)
    outcomes = set()
    for seed in _seeds(20):
        out = _apply(ops.get("flip_lr"), image, seed)
        flipped = np.array_equal(out, image[:, ::-1])
        assert flipped or np.array_equal(out, image)
        outcomes.add(flipped)
    assert outcomes == {True, False}


def test_color_ops():
    gray = _image(3, 4, 1)
    rgb = _apply(ops.parse("to_rgb"), gray)
    np.testing.assert_array_equal(rgb, np.repeat(gray, 3, axis=-1))
    np.testing.assert_array_equal(_apply(ops.parse("to_rgb"), rgb), rgb)
    back = _apply(ops.parse("to_grayscale"), rgb.astype(np.float32))
    np.testing.assert_allclose(back, gray.astype(np.float32), atol=0.05)
    color = _image(3, 4, 3).astype(np.float32)
    expected = color @ np.array([0.2989, 0.587, 0.114], np.float32)
    np.testing.assert_allclose(_apply(ops.parse("to_grayscale"), color)[..., 0], expected, rtol=1e-4)
    np.testing.assert_array_equal(_apply(ops.parse("rgb_to_bgr"), color), color[..., ::-1])
    # Keras' 'caffe' preprocessing: BGR minus the BGR mean == (RGB minus the RGB mean), reversed.
    caffe = _apply(ops.parse("subtract_mean((123.68, 116.779, 103.939))|rgb_to_bgr"), color)
    np.testing.assert_allclose(caffe, color[..., ::-1] - np.array([103.939, 116.779, 123.68], np.float32), rtol=1e-6)
    with pytest.raises(ValueError, match="3 .static. channels"):
        _apply(ops.parse("rgb_to_bgr"), gray)


def test_value_ops():
    image = np.array([[[0], [51], [255]]], np.uint8)
    out = _apply(ops.parse("value_range(-0.1, 1.175)"), image)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, :, 0], [-0.1, -0.1 + 0.2 * 1.275, 1.175], rtol=1e-6)
    np.testing.assert_allclose(_apply(ops.parse("to_float"), image)[0, :, 0], [0, 0.2, 1])
    rgb = np.array([[[10, 20, 30], [110, 120, 130]]], np.uint8)
    out = _apply(ops.parse("normalize((10, 20, 30), (2, 4, 5))"), rgb)
    np.testing.assert_allclose(out, [[[0, 0, 0], [50, 25, 20]]])
    np.testing.assert_allclose(_apply(ops.parse("normalize(10, 2)"), rgb), (rgb - 10) / 2)


def test_parse_seeds_ops_independently_and_purely():
    image = _image(4, 6, 1)
    chain = ops.parse("flip_lr | flip_lr")  # same seed for both would always cancel out
    outs = [_apply(chain, image, seed) for seed in _seeds(20)]
    assert any(not np.array_equal(o, image) for o in outs)
    augment = ops.parse("random_crop(4, pad=1)|flip_lr|value_range(0, 1)")
    a = [_apply(augment, image, seed) for seed in _seeds(10)]
    b = [_apply(augment, image, seed) for seed in _seeds(10)]
    _assert_batches_equal([{"x": x} for x in a], [{"x": x} for x in b])
    assert len({x.tobytes() for x in a}) > 1
    np.testing.assert_array_equal(_apply(ops.parse("  "), image), image)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("resize(32)|bogus", "unknown preprocessing op 'bogus'; valid ops: "),
        ("resize(1, 2, 3)", "resize(size"),
        ("flip_lr(p=0.3)", "flip_lr(*, key='image', boxes_key=None)"),
        ("resize(x)", "must be Python literals"),
        ("resize(32", "cannot parse"),
        ("random_crop(32, pad=-1)", "pad must be a non-negative int"),
        ("normalize(0, 0)", "std must be positive"),
    ],
)
def test_parse_errors(spec, message):
    with pytest.raises(ValueError, match=None) as info:
        ops.parse(spec)
    assert message in str(info.value)
    if "unknown" in message:
        for name in ("decode", "flip_lr", "random_crop", "resize", "value_range"):
            assert name in str(info.value)


# ----------------------------------------------------------------------------- pipeline


def _train(data, batch: int, steps: int, **kwargs) -> list[dict]:
    return _take(pipeline.train_batches(data, global_batch_size=batch, **{"seed": 1, **kwargs}), steps)


def _cat(batches: list[dict], key: str) -> np.ndarray:
    return np.concatenate([b[key] for b in batches])


def _batch_keys(batches: list[dict]) -> collections.Counter:
    """Example multiset of decoded-only batches, without eval padding."""
    keep = _cat(batches, "mask").astype(bool) if "mask" in batches[0] else slice(None)
    return _keys(_cat(batches, "image")[keep].astype(np.uint8), _cat(batches, "label")[keep])


def _assemble(parts: list[list[dict]]) -> list[dict]:
    """Concatenates the process-local batches of every step into global batches."""
    return [{k: np.concatenate([p[k] for p in step]) for k in step[0]} for step in zip(*parts, strict=True)]


def test_train_batches_deterministic_and_typed(cfg):
    data = cfg()
    a, b = _train(data, 32, 5, seed=3), _train(data, 32, 5, seed=3)
    _assert_batches_equal(a, b)
    assert a[0]["image"].shape == (32, 32, 32, 1) and a[0]["image"].dtype == np.float32
    assert a[0]["label"].shape == (32,) and a[0]["label"].dtype == np.int32
    assert a[0]["image"].min() == pytest.approx(-0.1) and a[0]["image"].max() == pytest.approx(1.175)
    assert not np.array_equal(_train(data, 32, 1, seed=4)[0]["label"], a[0]["label"])
    assert pipeline.steps_per_epoch(data, 32) == N_TRAIN // 32
    assert pipeline.num_classes(data) == 10 and pipeline.num_examples(data, "test") == N_TEST
    assert pipeline.element_spec_shape(data) == (32, 32, 1)
    rgb28 = cfg(eval_preprocess="decode|resize(28)|to_rgb")
    assert pipeline.element_spec_shape(rgb28, train=False) == (28, 28, 3)


def test_pipelines_build_without_autograph(cfg, monkeypatch):
    """The pipeline's mapped functions (records.no_autograph) are never rewritten by AutoGraph: that cost ~1 s of
    CPU per pipeline at every start. Counted through AutoGraph's converter, which tf.data calls otherwise."""
    from tensorflow.python.autograph.impl import api as autograph_api

    converted = []
    convert = autograph_api._convert_actual
    monkeypatch.setattr(autograph_api, "_convert_actual",
                        lambda entity, *a, **k: converted.append(entity) or convert(entity, *a, **k))
    data = cfg(train_preprocess="decode|random_crop(32, pad=2)|flip_lr|photometric_distort(hue=0, saturation=0)")
    assert pipeline.element_spec_shape(data) == (32, 32, 1)
    next(pipeline.train_batches(data, global_batch_size=8, seed=0))
    next(pipeline.eval_batches(data, global_batch_size=7))
    assert [e for e in converted if "convnets" in getattr(e, "__module__", "")] == []
    # The counter does see what tf.data converts by default.
    tf.data.Dataset.range(2).map(lambda x: x + 1 if x > 0 else x)
    assert converted


def test_train_batches_resume(cfg):
    data = cfg(shuffle_buffer=200)
    spe = pipeline.steps_per_epoch(data, 128)  # 11, so the run crosses epoch boundaries
    fresh = _train(data, 128, 2 * spe + 3, seed=5)
    for start in (1, spe - 1, spe, 2 * spe + 1):
        _assert_batches_equal(_train(data, 128, 2, seed=5, start_step=start), fresh[start : start + 2])


@pytest.mark.parametrize("cache", [True, False])
def test_train_process_slices_assemble_global_batch(cfg, cache):
    data = cfg(cache=cache)
    steps = pipeline.steps_per_epoch(data, 96) + 2  # crosses an epoch boundary
    full = _train(data, 96, steps, seed=9)
    for count in (2, 4):
        parts = [_train(data, 96, steps, seed=9, process_index=p, process_count=count) for p in range(count)]
        assert parts[0][0]["image"].shape[0] == 96 // count
        _assert_batches_equal(_assemble(parts), full)


@pytest.mark.parametrize("buffer", [10_000, 100])
def test_train_epochs_are_permutations(cfg, data_dir, buffer):
    data = cfg(train_preprocess="decode", shuffle_buffer=buffer)
    batches = _train(data, N_TRAIN // 3, 6)  # 479: an epoch is exactly 3 batches, nothing dropped
    expected = _keys(*_read_split(data_dir, "train"))
    assert _batch_keys(batches[:3]) == expected and _batch_keys(batches[3:]) == expected
    assert not np.array_equal(_cat(batches[:3], "label"), _cat(batches[3:], "label"))


def test_train_tfds_split_reads_disjoint_parts(cfg, data_dir):
    data = cfg(train_preprocess="decode", process_split="tfds_split")
    # 718 examples per process, local batch 359: one epoch is two local batches.
    keys = sum(
        (_batch_keys(_train(data, 718, 2, process_index=p, process_count=2)) for p in range(2)),
        collections.Counter(),
    )
    assert sum(keys.values()) == 2 * (N_TRAIN // 2)
    assert not keys - _keys(*_read_split(data_dir, "train"))


def test_eval_batches_once_in_file_order_padded(cfg, data_dir):
    data = cfg(eval_preprocess="decode")
    batches = list(pipeline.eval_batches(data, global_batch_size=64))
    assert len(batches) == 6 and all(b["image"].shape == (64, 32, 32, 1) for b in batches)
    mask, images, labels = _cat(batches, "mask"), _cat(batches, "image"), _cat(batches, "label")
    assert mask.dtype == np.float32 and mask.sum() == N_TEST and np.all(mask[N_TEST:] == 0)
    ref_images, ref_labels = _read_split(data_dir, "test")
    np.testing.assert_array_equal(images[:N_TEST], ref_images.astype(np.float32))
    np.testing.assert_array_equal(labels[:N_TEST], ref_labels)
    assert not images[N_TEST:].any() and not labels[N_TEST:].any()  # padding is zeros
    for count in (2, 4):
        parts = [
            list(pipeline.eval_batches(data, global_batch_size=64, process_index=p, process_count=count))
            for p in range(count)
        ]
        _assert_batches_equal(_assemble(parts), batches)


def test_eval_tfds_split_covers_every_example_once(cfg, data_dir):
    data = cfg(eval_preprocess="decode", process_split="tfds_split")
    parts = [
        list(pipeline.eval_batches(data, global_batch_size=48, process_index=p, process_count=3))
        for p in range(3)
    ]
    assert len({len(part) for part in parts}) == 1  # every process yields the same number of batches
    assert sum(map(_batch_keys, parts), collections.Counter()) == _keys(*_read_split(data_dir, "test"))


def test_mock_tfds_dataset(cfg, tmp_path):
    data = cfg(
        name="mnist",
        data_dir=str(tmp_path),
        download=True,  # download_and_prepare is a no-op under mock_data
        train_preprocess="decode|random_crop(28, pad=2)|value_range(-1, 1)",
        eval_preprocess="decode|to_float",
        shuffle_buffer=100,
    )
    with tfds.testing.mock_data(num_examples=20):  # images stay encoded under SkipDecoding
        train = _train(data, 8, 5)
        evals = list(pipeline.eval_batches(data, global_batch_size=8))
        assert pipeline.element_spec_shape(data) == (28, 28, 1)
    assert train[0]["image"].shape == (8, 28, 28, 1) and train[0]["image"].dtype == np.float32
    assert train[0]["image"].min() >= -1 and train[0]["image"].max() <= 1
    assert [b["mask"].sum() for b in evals] == [8, 8, 4]


# ----------------------------------------------------------------------------- errors


def test_unknown_dataset(cfg):
    with pytest.raises(ValueError, match="unknown dataset 'mnistt'") as info:
        pipeline.get_builder(cfg(name="mnistt"))
    assert "convnets_digits" in str(info.value) and "Closest matches: mnist" in str(info.value)


@pytest.mark.parametrize("manual", [True, False])
def test_imagenet_without_manual_files(cfg, tmp_path, manual):
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    if manual:
        (manual_dir / "ILSVRC2012_img_val.tar").touch()  # one of the two present: still an error
    data = cfg(name="imagenet2012", data_dir=str(tmp_path), download=True)
    data.manual_dir = str(manual_dir) if manual else None
    with pytest.raises(FileNotFoundError) as info:
        pipeline.get_builder(data)
    message = str(info.value)
    expected_dir = manual_dir if manual else tmp_path / "downloads" / "manual"
    for part in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", str(expected_dir), "image-net.org"):
        assert part in message
    assert "--config.data.manual_dir" in message


def test_not_prepared_and_offline_errors(cfg, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="not prepared .* data.download is False"):
        pipeline.get_builder(cfg(name="mnist", data_dir=str(tmp_path), download=False))

    def offline(self, *args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(RuntimeError, match="could not download/prepare dataset 'mnist'.*data_dir"):
        pipeline.get_builder(cfg(name="mnist", data_dir=str(tmp_path), download=True))


def test_batch_errors(cfg):
    with pytest.raises(ValueError, match="global batch size 30 is not divisible by the process count 4"):
        pipeline.train_batches(cfg(), global_batch_size=30, seed=0, process_index=0, process_count=4)
    with pytest.raises(ValueError, match="not divisible"):
        pipeline.eval_batches(cfg(), global_batch_size=30, process_index=1, process_count=4)
    with pytest.raises(ValueError, match="process_split"):
        pipeline.train_batches(cfg(process_split="bogus"), global_batch_size=32, seed=0)
    with pytest.raises(ValueError, match="global batch size 5000"):
        pipeline.steps_per_epoch(cfg(), 5000)
