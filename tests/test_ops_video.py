"""Clips [T, H, W, C] through the per-frame ops (one random draw for all frames) and the temporal crops."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops

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
