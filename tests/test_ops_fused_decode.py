"""The fused JPEG decode + crop (``decode|inception_crop``): the window decode equals decode-then-crop bit for bit
(4:2:0, 4:2:2, 4:4:4, progressive, grayscale JPEGs; PNG falls back), the fused chain equals the unfused one for
the same seeds (eagerly, in tf.data, and through the real ImageNet pipeline), the parser's fusion rules, the
tf.data options, and the input-pipeline benchmark in tiny mode."""

from __future__ import annotations

import importlib.util
import io
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from convnets.data import ops, pipeline
from convnets.data.ops import inception
from convnets.data.ops.decode import decode_window
from convnets.data.ops.geometry import resize_float
from experiments import default
from tests.op_testing import SEED

# GoogLeNet's chain without photometric_distort (slow to trace; it comes after the fused step like flip_lr).
CHAIN = "decode(3)|inception_crop(40)|flip_lr|subtract_mean((120.0, 110.0, 100.0))"


def _pixels(h: int, w: int, c: int = 3, seed: int = 0) -> np.ndarray:
    """Smooth field plus noise: chroma varies between neighbouring pixels, as in photographs."""
    y, x = np.mgrid[0:h, 0:w]
    base = 128 + 60 * np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None]
    noise = np.random.default_rng(seed).normal(0, 25, (h, w, c))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _encode(pixels: np.ndarray, fmt: str = "JPEG", **kwargs) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buf, fmt, **kwargs)
    return buf.getvalue()


# (name, encoded, channels to decode with): chroma 4:2:0 / 4:2:2 / 4:4:4, progressive, grayscale, PNG.
IMAGES = [
    ("420", _encode(_pixels(75, 100), quality=90, subsampling=2), 3),
    ("422", _encode(_pixels(100, 75, seed=1), quality=90, subsampling=1), 3),
    ("444", _encode(_pixels(41, 57, seed=2), quality=75, subsampling=0), 3),
    ("progressive", _encode(_pixels(66, 50, seed=3), quality=90, progressive=True), 3),
    ("gray", _encode(_pixels(48, 37, 1, seed=4)), 1),
    ("gray_as_rgb", _encode(_pixels(48, 37, 1, seed=4)), 3),
    ("png", _encode(_pixels(30, 45, seed=5), "PNG"), 3),
]
# The fast subset checks the subsampled kinds, where a naive window decode differs (ImageNet's JPEGs are 4:2:0).
KINDS = [pytest.param(*image, id=image[0], marks=() if image[0] == "420" else pytest.mark.slow) for image in IMAGES]


def _windows(h: int, w: int, n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """Random windows plus the edge cases: whole image, 1x1 corners, lefts on iMCU (16 px) boundaries."""
    rng = np.random.default_rng(seed)
    out = [(0, 0, h, w), (0, 0, 1, 1), (h - 1, w - 1, 1, 1), (3, 16, h - 5, min(17, w - 16)), (1, 32, 9, w - 33)]
    for _ in range(n):
        hh, ww = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
        out.append((int(rng.integers(0, h - hh + 1)), int(rng.integers(0, w - ww + 1)), hh, ww))
    return out


@pytest.mark.parametrize("name, encoded, channels", KINDS)
def test_window_decode_is_decode_then_crop_bit_for_bit(name, encoded, channels):
    full = tf.io.decode_image(encoded, channels=channels).numpy()
    h, w = full.shape[:2]
    windows = _windows(h, w, 20, seed=len(name))
    # Eagerly (a few windows: eager calls are slow) and inside tf.data (a graph, windows as data).
    for win in windows[:4]:
        top, left, hh, ww = win
        pixels, window = decode_window(tf.constant(encoded), channels, lambda shape, win=win: tf.constant(win))
        np.testing.assert_array_equal(pixels.numpy(), full[top : top + hh, left : left + ww], err_msg=f"{name} {win}")
        np.testing.assert_array_equal(window.numpy(), win)
    ds = tf.data.Dataset.from_tensor_slices(np.array(windows, np.int32)).map(
        lambda win: decode_window(tf.constant(encoded), channels, lambda shape: win)[0]
    )
    assert ds.element_spec.shape.as_list() == [None, None, channels]
    for (top, left, hh, ww), pixels in zip(windows, ds, strict=True):
        np.testing.assert_array_equal(pixels.numpy(), full[top : top + hh, left : left + ww], err_msg=f"{name}")


@pytest.mark.slow
def test_fused_chain_equals_unfused_chain_for_the_same_seeds():
    fused, unfused = ops.parse(CHAIN), ops.parse(CHAIN, fuse_decode=False)
    decode = ops.get("decode", 3)
    boxes = tf.constant([[5.0, 10.0, 60.0, 70.0], [0.0, 0.0, 75.0, 100.0]])

    def both(encoded: tf.Tensor, seed: tf.Tensor) -> tuple[dict, dict]:
        # The pipeline decodes unfused specs first (records.example_fn); decode in the spec is then a no-op.
        a = fused({"image": encoded, "boxes": boxes}, seed)
        b = unfused({**decode({"image": encoded}, seed), "boxes": boxes}, seed)
        return {k: a[k] for k in ("image", "boxes")}, {k: b[k] for k in ("image", "boxes")}

    a, b = both(tf.constant(IMAGES[0][1]), SEED)  # eagerly
    assert a["image"].shape == (40, 40, 3)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
    # In tf.data, encoded images of unknown size, 4 JPEG kinds x 3 seeds.
    pairs = list(itertools.product([e for _, e, _ in IMAGES[:4]], range(3)))
    seeds = tf.constant([[9, s] for _, s in pairs], tf.int64)
    ds = tf.data.Dataset.from_tensor_slices(([e for e, _ in pairs], seeds)).map(both)
    images = set()
    for (_, s), (a, b) in zip(pairs, ds, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy(), err_msg=f"{key} seed {s}")
        images.add(a["image"].numpy().tobytes())
    assert len(images) == len(pairs)


def test_fused_decode_takes_the_ops_arguments_as_given():
    """The fused op binds inception_crop's own signature: positional and keyword arguments, non-default values."""
    spec = "decode(3)|inception_crop((24, 32), 0.3, 0.9, ratio_max=1.2, max_attempts=3, antialias=True)"
    fused, unfused = ops.parse(spec), ops.parse(spec, fuse_decode=False)
    encoded = tf.constant(IMAGES[0][1])
    for s in range(3):
        seed = tf.constant([4, s], tf.int64)
        a = fused({"image": encoded}, seed)["image"].numpy()
        b = unfused(ops.get("decode", 3)({"image": encoded}, seed), seed)["image"].numpy()
        assert a.shape == (24, 32, 3)
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="inception_crop"):
        ops.parse("decode(3)|inception_crop(24, bogus=1)")


def test_fusion_rules_of_the_parser():
    assert ops.fused_decodes(CHAIN) == {"image": 3}
    assert ops.fused_decodes("decode|inception_crop(224)") == {"image": None}
    assert ops.fused_decodes(CHAIN, fuse_decode=False) == {}
    for spec in ("decode(3)|resize_short(256)|center_crop(224)", "decode(3)|flip_lr|inception_crop(224)",
                 "decode(3, key='other')|inception_crop(224)", "inception_crop(224)", "", "decode(3)"):
        assert ops.fused_decodes(spec) == {}, spec
    # A fused decode later in the chain is still fused by parse (not left encoded by the pipeline): same pixels.
    encoded = tf.constant(IMAGES[0][1])
    later = "rename('image', 'raw')|decode(3, key='raw')|inception_crop(16, key='raw')"
    np.testing.assert_array_equal(ops.parse(later)({"image": encoded}, SEED)["raw"],
                                  ops.parse(later, fuse_decode=False)({"image": encoded}, SEED)["raw"])
    # Bad arguments are still reported with the op's signature.
    with pytest.raises(ValueError, match=r"inception_crop\(size"):
        ops.parse("decode(3)|inception_crop(224, area_min=0)")
    with pytest.raises(ValueError, match=r"decode\(channels"):
        ops.parse("decode(3, 4)|inception_crop(224)")


def test_resize_reads_uint8_pixels_without_changing_a_bit():
    """The resize ops skip the float32 copy of uint8 images: the kernels give the same bits as on the cast image."""
    rng = np.random.default_rng(3)
    for shape, size in [((37, 53, 3), (20, 31)), ((2, 19, 23, 3), (40, 9))]:
        pixels = tf.constant(rng.integers(0, 256, shape, dtype=np.uint8))
        for method, antialias in itertools.product(("bilinear", "nearest", "bicubic", "area"), (False, True)):
            out = resize_float(pixels, size, method, antialias)
            assert out.dtype == tf.float32
            expected = tf.image.resize(tf.cast(pixels, tf.float32), size, method=method, antialias=antialias)
            np.testing.assert_array_equal(out.numpy(), expected.numpy(), err_msg=f"{method} {antialias}")


def test_tf_data_options_from_the_config():
    data = default.get_config().data
    options = pipeline.options(data)
    assert options.deterministic and options.threading.max_intra_op_parallelism == 1
    assert options.threading.private_threadpool_size is None and options.autotune.ram_budget is None
    data.threads, data.ram_budget_gb = 3, 0.5
    options = pipeline.options(data)
    assert options.threading.private_threadpool_size == 3 and options.autotune.ram_budget == 2**29
    data.threads = -1
    with pytest.raises(ValueError, match="data.threads"):
        pipeline.options(data)


@pytest.mark.slow
def test_imagenet_pipeline_fused_batches_equal_unfused(imagenet_dir, monkeypatch):
    """Through the real pipeline (TFDS imagenet2012 records): the images stay encoded for the fused op, and the
    batches are bitwise those of the unfused pipeline, after a resume too."""
    from experiments import googlenet

    data = googlenet.get_config().data
    data.data_dir, data.manual_dir = imagenet_dir
    data.train_preprocess = data.train_preprocess.replace("inception_crop(224)", "inception_crop(32)").replace(
        "|photometric_distort", "")
    windows = []
    monkeypatch.setattr(inception, "decode_window", lambda *a: windows.append(1) or decode_window(*a))

    def batches(fused: bool, start: int = 0) -> list[dict]:
        data.fuse_decode = fused
        return list(itertools.islice(pipeline.train_batches(data, global_batch_size=8, seed=2, start_step=start), 4))

    fused, unfused = batches(True), batches(False)
    assert windows, "the fused op was not used"
    resumed = batches(True, start=2)
    for a, b in zip(fused, unfused, strict=True):
        assert a["image"].shape == (8, 32, 32, 3)
        np.testing.assert_array_equal(a["image"], b["image"])
        np.testing.assert_array_equal(a["label"], b["label"])
    np.testing.assert_array_equal(resumed[0]["image"], fused[2]["image"])


@pytest.mark.slow
def test_input_pipeline_benchmark_tiny():
    path = os.path.join(os.path.dirname(__file__), "..", "benchmarks", "input_pipeline.py")
    spec = importlib.util.spec_from_file_location("bench_input_pipeline", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    chains = bench.chains()
    assert {"alexnet", "vgg", "googlenet", "resnet", "googlenet_eval", "decode"} <= set(chains)
    assert "random_resize_short(256, 512)" in chains["vgg"] and "inception_crop(224)" in chains["googlenet"]
    lines = []
    selected = {name: chains[name] for name in ("googlenet", "decode")}
    rows = bench.run(selected, ["tfds", "memory"], images=8, threads=1, seconds=0.05, batch=4, tiny=True,
                     echo=lines.append)
    assert [(r["chain"], r["source"], r["decode"]) for r in rows] == [
        ("googlenet", "tfds", "fused"), ("googlenet", "tfds", "unfused"), ("googlenet", "memory", "fused"),
        ("googlenet", "memory", "unfused"), ("decode", "tfds", "no fusion"), ("decode", "memory", "no fusion"),
        ("googlenet_device", "cpu", "jax"),
    ]
    assert chains["googlenet_all_host"].startswith(chains["googlenet"] + "|photometric_distort|subtract_mean(")
    assert all(r["images_s"] > 0 for r in rows)
    assert all(r["per_core"] == r["images_s"] and r["per_cpu_s"] > 0 for r in rows[:-1])
    assert any("images/s" in line for line in lines) and "8 JPEGs" in lines[0]
