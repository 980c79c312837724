"""The embedded video dataset ``convnets_moving_digits``: deterministic, balanced, the motion is the label, and
one frame carries no information about the label while two frames determine it."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest

from convnets.data import digits, moving_digits
from convnets.data.moving_digits import CANVAS, NUM_FRAMES, STEPS


@functools.cache
def _clips(split: str, n: int) -> dict[str, np.ndarray]:
    return moving_digits.clips(split, n)


def _centre(frames: np.ndarray) -> np.ndarray:
    """Circular centre of mass (y, x) in pixels, [..., 2], of frames [..., H, W, 1] on the torus."""
    mass = frames[..., 0].astype(np.float64)
    phase = np.exp(2j * np.pi * np.arange(CANVAS) / CANVAS)
    angles = np.stack([np.angle(mass.sum(-1) @ phase), np.angle(mass.sum(-2) @ phase)], axis=-1)
    return np.mod(angles, 2 * np.pi) * CANVAS / (2 * np.pi)


def _single_frame_features(video: np.ndarray, t: int) -> np.ndarray:
    angles = _centre(video[:, t]) * 2 * np.pi / CANVAS
    return np.concatenate([np.cos(angles), np.sin(angles)], axis=-1)


def _displacement(video: np.ndarray, t: int = 0) -> np.ndarray:
    """Circular displacement (dy, dx) of the centre of mass from frame t to t + 1, in pixels in (-16, 16]."""
    delta = _centre(video[:, t + 1]) - _centre(video[:, t])
    return -np.mod(-delta + CANVAS / 2, CANVAS) + CANVAS / 2


def test_clips_are_deterministic_and_split_by_handwriting():
    a, b = moving_digits.clip("train", 7), moving_digits.clip("train", 7)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["video"].shape == (NUM_FRAMES, CANVAS, CANVAS, 1) and a["video"].dtype == np.uint8
    train, test = _clips("train", 400), _clips("test", 200)
    assert not np.array_equal(train["video"][:200], test["video"])
    splits = digits.split_indices()
    assert set(train["source"]) <= set(splits["train"]) and set(test["source"]) <= set(splits["test"])
    assert set(train["speed"]) == set(moving_digits.SPEEDS) and set(train["digit"]) == set(range(10))
    with pytest.raises(ValueError, match="unknown split 'val'"):
        moving_digits.clip("val", 0)


def test_labels_are_balanced():
    labels = _clips("train", 400)["label"]
    np.testing.assert_array_equal(np.bincount(labels), [100] * 4)


def test_every_frame_is_the_previous_one_moved_in_the_labelled_direction_only():
    c = _clips("train", 400)
    for video, label, speed in zip(c["video"], c["label"], c["speed"], strict=True):
        for k, step in enumerate(STEPS):
            moved = np.roll(video[:-1], tuple(speed * step), axis=(1, 2))
            assert np.array_equal(moved, video[1:]) == (k == label)
    # The centre of mass moves by exactly `speed` pixels per frame in the labelled direction, in every clip.
    for t in (0, NUM_FRAMES - 2):
        np.testing.assert_allclose(_displacement(c["video"], t), c["speed"][:, None] * STEPS[c["label"]], atol=1e-6)


def test_one_frame_carries_no_label_information_two_frames_determine_it():
    from sklearn.linear_model import LogisticRegression

    train, test = _clips("train", 400), _clips("test", 200)
    for t in (0, NUM_FRAMES - 1):
        single = LogisticRegression().fit(_single_frame_features(train["video"], t), train["label"])
        assert single.score(_single_frame_features(test["video"], t), test["label"]) < 0.35  # chance: 0.25
    two = LogisticRegression().fit(_displacement(train["video"]), train["label"])
    assert two.score(_displacement(test["video"]), test["label"]) == 1.0
    # The position at a fixed frame is independent of the label: a chi-square test over 4 x 4 position cells.
    from scipy.stats import chi2_contingency

    cells = (train["start"] // (CANVAS // 4)) @ np.array([4, 1])
    table = np.stack([np.bincount(cells[train["label"] == k], minlength=16) for k in range(4)])
    assert chi2_contingency(table).pvalue > 0.01


@pytest.mark.slow
def test_builder_records_and_pipeline_batches(moving_digits_dir):
    import tensorflow_datasets as tfds

    from convnets.data import pipeline
    from experiments import default

    builder = moving_digits.ConvnetsMovingDigits(data_dir=moving_digits_dir)
    assert builder.info.features["label"].names == list(moving_digits.DIRECTIONS)
    # The stored PNG frames decode to the generated clips, bit for bit, with their label, digit and speed.
    generated = {moving_digits.clip("test", i)["video"].tobytes(): moving_digits.clip("test", i) for i in range(16)}
    found = []
    for example in tfds.as_numpy(builder.as_dataset(split="test")):
        clip = generated[example["video"].tobytes()]
        assert (example["label"], example["digit"], example["speed"]) == (clip["label"], clip["digit"], clip["speed"])
        found.append(clip["video"].tobytes())
    assert sorted(found) == sorted(generated)

    data = default.get_config().data
    data.update(dict(name=moving_digits.NAME, data_dir=moving_digits_dir, prefetch=0))
    data.train_preprocess = "rename('video', 'image')|random_temporal_crop(8)|random_crop(28)"
    data.eval_preprocess = "rename('video', 'image')|temporal_crop(8)"
    assert pipeline.num_classes(data) == 4
    (batch,) = itertools.islice(pipeline.train_batches(data, global_batch_size=8, seed=0), 1)
    assert batch["image"].shape == (8, 8, 28, 28, 1) and batch["label"].dtype == np.int32
    evals = list(pipeline.eval_batches(data, global_batch_size=8))
    assert [b["image"].shape for b in evals] == [(8, 8, CANVAS, CANVAS, 1)] * 2
    assert sorted(np.concatenate([b["label"] for b in evals]).tolist()) == sorted([0, 1, 2, 3] * 4)
    # Evaluation sees the central 8 frames (4..11) of each clip, as stored.
    centre = {generated_clip["video"][4:12].tobytes() for generated_clip in generated.values()}
    assert {b["image"][i].astype(np.uint8).tobytes() for b in evals for i in range(8)} == centre
