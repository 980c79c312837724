"""Clips [T, H, W, C] through the per-frame ops (one random draw for all frames) and the temporal crops."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops, pipeline
from experiments import default
from tests.clips_dataset import STEP

T, H, W = 4, 30, 40
OFFSET = 10.0  # frame t = base + OFFSET * t
SEED = tf.constant([9, 99], tf.int64)


def _clip() -> np.ndarray:
    base = np.random.default_rng(0).uniform(0, 100, (H, W, 3)).astype(np.float32)
    return np.stack([base + OFFSET * t for t in range(T)])


def _seeds(n: int) -> list[tf.Tensor]:
    return [tf.constant([9, s], tf.int64) for s in range(n)]


# Ops that commute with adding a constant (no zero padding, no clipping): outputs must keep the offsets.
OFFSET_SPECS = [
    "random_crop((20, 24))",
    "flip_lr",
    "random_crop(16)|flip_lr",
    "resize((15, 50))",
    "random_resize_short(20, 40)|random_crop(18)",
    "center_crop(12)",
    "inception_crop(16)",
    "random_ten_crop(20)",
    "pca_lighting",
]
OTHER_SPECS = ["random_crop((30, 40), pad=3)", "pad(2)|flip_lr", "photometric_distort", "subtract_mean((1, 2, 3))"]
DETERMINISTIC = ("resize((15, 50))", "center_crop(12)", "subtract_mean((1, 2, 3))")


@pytest.mark.parametrize("spec", OFFSET_SPECS + OTHER_SPECS)
def test_clip_frames_get_the_image_op_with_the_same_draw(spec):
    """Every output frame is what the op makes of that frame alone with the same seed."""
    fn, clip = ops.parse(spec), _clip()
    outputs = set()
    for seed in _seeds(6):
        out = fn({"image": tf.constant(clip)}, seed)["image"].numpy()
        assert out.shape[0] == T and out.dtype == np.float32
        for t in range(T):
            frame = fn({"image": tf.constant(clip[t])}, seed)["image"].numpy()
            np.testing.assert_allclose(out[t], frame, rtol=1e-6, atol=1e-4)
        if spec in OFFSET_SPECS:
            # The same window / flip / shift for all frames: they still differ by the constant only.
            for t in range(1, T):
                np.testing.assert_allclose(out[t] - out[0], OFFSET * t, atol=2e-3)
        outputs.add(out.tobytes())
    if spec not in DETERMINISTIC:
        assert len(outputs) > 1, "the random op drew the same for every seed"


def test_clip_static_shapes_and_boxes():
    spec = ops.parse("random_resize_short(32, 48)|random_crop(28)|flip_lr")
    clip = tf.constant(_clip())
    boxes = tf.constant([[3.0, 4.0, 20.0, 30.0]])
    ds = tf.data.Dataset.from_tensors(({"image": clip, "boxes": boxes}, _seeds(1)[0])).map(spec)
    assert ds.element_spec["image"].shape.as_list() == [T, 28, 28, 3]
    out = next(iter(ds))
    # Boxes follow a clip's (shared) transform exactly as an image's.
    image_out = spec({"image": clip[0], "boxes": boxes}, _seeds(1)[0])
    np.testing.assert_array_equal(out["boxes"].numpy(), image_out["boxes"].numpy())


def test_temporal_crops():
    clip = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) * np.ones((1, 2, 3, 1), np.float32)

    def frames(spec, seed=SEED, x=clip) -> list[int]:
        """The frame numbers the op keeps (frame i has value i)."""
        out = ops.parse(spec)({"image": tf.constant(x)}, seed)["image"].numpy()
        assert out.shape[1:] == (2, 3, 1)
        return out[:, 0, 0, 0].astype(int).tolist()

    assert frames("temporal_crop(4)") == [3, 4, 5, 6]
    assert frames("temporal_crop(4, stride=2)") == [1, 3, 5, 7]
    assert frames("temporal_crop(10)") == list(range(10))
    assert frames("temporal_crop(5)", x=clip[:3]) == [0, 1, 2, 0, 1]  # shorter clips are looped
    starts = set()
    for seed in _seeds(60):
        got = frames("random_temporal_crop(4)", seed)
        assert got == list(range(got[0], got[0] + 4))
        starts.add(got[0])
    assert starts == set(range(7))  # every start 0..6 is drawn
    assert frames("random_temporal_crop(3, stride=3)") in ([0, 3, 6], [1, 4, 7], [2, 5, 8], [3, 6, 9])
    ds = tf.data.Dataset.from_tensors({"image": clip}).map(
        lambda x: ops.parse("random_temporal_crop(5)")(
            {"image": tf.ensure_shape(x["image"], [None, 2, 3, 1])}, SEED
        )
    )
    assert ds.element_spec["image"].shape.as_list() == [5, 2, 3, 1]
    with pytest.raises(ValueError, match=r"must be a clip \[T, H, W, C\]"):
        ops.get("temporal_crop", 4)({"image": tf.zeros([5, 5, 3])}, None)


def test_decode_encoded_frames_and_rename():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (3, 6, 5, 3)).astype(np.uint8)
    encoded = tf.stack([tf.io.encode_png(f) for f in frames])  # a TFDS Video read with SkipDecoding
    out = ops.parse("decode(3, key='video')|rename('video', 'image')|flip_lr")(
        {"video": encoded, "label": 2}, SEED
    )
    assert set(out) == {"image", "label"}
    assert out["image"].dtype == tf.uint8
    image = out["image"].numpy()
    assert np.array_equal(image, frames) or np.array_equal(image, frames[:, :, ::-1])
    ds = tf.data.Dataset.from_tensors({"video": encoded}).map(lambda x: ops.get("decode", 3, key="video")(x, None))
    assert ds.element_spec["video"].shape.as_list() == [3, None, None, 3]  # frame size known after decoding only
    np.testing.assert_array_equal(next(iter(ds))["video"].numpy(), frames)


def _first_frames(out: dict) -> list[list[int]]:
    """The frame numbers in every clip of video_clips' output (frame i has value i)."""
    return out["crops"].numpy()[:, :, 0, 0, 0].astype(int).tolist()


def _video_clips(spec: str, num_frames: int) -> dict:
    video = np.arange(num_frames, dtype=np.float32).reshape(num_frames, 1, 1, 1) * np.ones((1, 2, 3, 1), np.float32)
    out = ops.parse(spec)({"image": tf.constant(video), "label": 5}, SEED)
    assert out["crop_mask"].dtype == tf.float32 and out["label"] == 5
    np.testing.assert_array_equal(out["image"].numpy(), video)  # the video itself is left as it was
    return out


def _clips(starts: list[int], length: int, total: int) -> list[list[int]]:
    return [[(s + i) % total for i in range(length)] for s in starts]


def test_video_clips_at_a_stride():
    out = _video_clips("video_clips(16, 4, 8)", 40)  # C3D sec. 4: 16-frame clips, 8-frame overlap
    assert out["crops"].shape == (4, 16, 2, 3, 1)
    assert _first_frames(out) == _clips([0, 8, 16, 24], 16, 40)
    assert out["crop_mask"].numpy().tolist() == [1, 1, 1, 1]
    # More clips asked than the video has: padded with copies of clip 0, masked out.
    out = _video_clips("video_clips(16, 6, 8)", 40)
    assert _first_frames(out) == _clips([0, 8, 16, 24, 0, 0], 16, 40)
    assert out["crop_mask"].numpy().tolist() == [1, 1, 1, 1, 0, 0]
    # Fewer: evenly spaced, first and last kept (starts 0, 8, 16, 24, 32, 40, 48 of a 64-frame video).
    assert [c[0] for c in _first_frames(_video_clips("video_clips(16, 3, 8)", 64))] == [0, 24, 48]
    assert [c[0] for c in _first_frames(_video_clips("video_clips(16, 4, 8)", 64))] == [0, 16, 32, 48]
    assert [c[0] for c in _first_frames(_video_clips("video_clips(16, 1, 8)", 64))] == [24]  # the middle one
    # A video shorter than a clip: one looped clip.
    out = _video_clips("video_clips(5, 3, 2)", 3)
    assert _first_frames(out) == [[0, 1, 2, 0, 1]] * 3 and out["crop_mask"].numpy().tolist() == [1, 0, 0]


def test_video_clips_evenly_spaced():
    out = _video_clips("video_clips(16, 5)", 40)  # Karpathy et al. sec. 4.1: clips spread over the video
    assert _first_frames(out) == _clips([0, 6, 12, 18, 24], 16, 40)
    assert out["crop_mask"].numpy().tolist() == [1] * 5
    assert _first_frames(_video_clips("video_clips(16, 1)", 40)) == _clips([12], 16, 40)  # temporal_crop's
    assert _first_frames(_video_clips("video_clips(4, 3, stride=0)", 4)) == _clips([0, 0, 0], 4, 4)
    out = _video_clips("video_clips(6, 2)", 4)  # a short video loops, all clips real
    assert _first_frames(out) == [[0, 1, 2, 3, 0, 1]] * 2 and out["crop_mask"].numpy().tolist() == [1, 1]


def test_video_clips_after_spatial_ops_static_shapes_and_errors():
    clip = _clip()  # frame t = base + OFFSET * t, T = 4
    out = ops.parse("resize((20, 24))|center_crop(12)|video_clips(2, 3, 1, outkey='views', maskkey='m')")(
        {"image": tf.constant(clip)}, SEED
    )
    each = ops.parse("resize((20, 24))|center_crop(12)")({"image": tf.constant(clip)}, SEED)["image"].numpy()
    assert out["views"].shape == (3, 2, 12, 12, 3) and out["m"].numpy().tolist() == [1, 1, 1]
    for k, start in enumerate([0, 1, 2]):  # starts 0, 1, 2 of the 4 frames
        np.testing.assert_allclose(out["views"][k].numpy(), each[start : start + 2], rtol=1e-6)
    ds = tf.data.Dataset.from_tensors({"image": clip}).map(
        lambda x: ops.parse("center_crop(16)|video_clips(16, 20)")(
            {"image": tf.ensure_shape(x["image"], [None, H, W, 3])}, SEED
        )
    )
    assert ds.element_spec["crops"].shape.as_list() == [20, 16, 16, 16, 3]
    assert ds.element_spec["crop_mask"].shape.as_list() == [20]
    assert "video_clips" in ops.producers("crop_mask") and "video_clips" in ops.producers("crops")
    for bad, what in (("video_clips(0, 4)", "num_frames"), ("video_clips(16, 2.5)", "num_clips"),
                      ("video_clips(16, 4, -8)", "stride"), ("video_clips(16, True)", "num_clips")):
        with pytest.raises(ValueError, match=f"video_clips: {what} must be a"):
            ops.parse(bad)
    with pytest.raises(ValueError, match=r"must be a clip \[T, H, W, C\]"):
        ops.get("video_clips", 4, 2)({"image": tf.zeros([5, 5, 3])}, SEED)


@pytest.mark.slow  # prepares a TFDS dataset (~2 s)
def test_video_clips_eval_batches(tmp_path):
    """Per-video evaluation batches of the tests' clips dataset (3 test videos of 6 to 9 frames)."""
    data = default.get_config().data
    data.update(dict(name="convnets_test_clips", data_dir=str(tmp_path), prefetch=0))
    data.batch_keys = ("crops", "crop_mask", "label")
    data.eval_preprocess = "rename('video', 'image')|center_crop(16)|video_clips(4, 3, 2)"
    assert pipeline.element_spec(data, train=False)["crops"] == ((3, 4, 16, 16, 3), np.dtype(np.float32))
    (batch,) = list(pipeline.eval_batches(data, global_batch_size=4))
    assert set(batch) == {"crops", "crop_mask", "label", "mask"}
    assert batch["crops"].shape == (4, 3, 4, 16, 16, 3) and batch["crop_mask"].shape == (4, 3)
    assert batch["mask"].tolist() == [1, 1, 1, 0] and sorted(batch["label"][:3]) == [0, 1, 2]
    # Each video's clips start every 2 frames: frame t is base + STEP * t, so clip k starts at STEP * 2k above clip 0.
    for video, mask in zip(batch["crops"][:3], batch["crop_mask"][:3], strict=True):
        np.testing.assert_array_equal(np.diff(video, axis=1), STEP)  # consecutive frames in a clip
        real = int(mask.sum())
        assert mask.tolist() == [1] * real + [0] * (3 - real) and real >= 2  # 6-9 frames: 2 or 3 clips
        for k in range(3):
            np.testing.assert_array_equal(video[k] - video[0], 2 * k * STEP if k < real else 0)
    assert not batch["crops"][3].any() and not batch["crop_mask"][3].any()
