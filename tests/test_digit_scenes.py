"""The embedded detection dataset ``convnets_digit_scenes``: deterministic, exact boxes, the difficult rule,
balanced classes, disjoint handwriting in train and test, and fixed-shape batches through the pipeline.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import os

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from convnets.data import digit_scenes, digits, pipeline
from experiments import default

N_SCENES = 300  # Scenes of the statistical tests (about 0.5 s to generate).
PREPARED = 40  # Examples per split in the prepared test dataset.
KEYS = ("image", "boxes", "box_classes", "box_difficult", "box_mask", "image_scale", "image_size")


@pytest.fixture(scope="module")
def scenes() -> list[dict]:
    return [digit_scenes.scene("train", i) for i in range(N_SCENES)]


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory) -> str:
    """A data_dir with the first PREPARED scenes of each split, prepared by the real builder."""
    data_dir = str(tmp_path_factory.mktemp("tfds_scenes"))
    config = tfds.download.DownloadConfig(max_examples_per_split=PREPARED)
    digit_scenes.ConvnetsDigitScenes(data_dir=data_dir).download_and_prepare(download_config=config)
    return data_dir


def test_scenes_are_deterministic():
    a, b = digit_scenes.record("test", 7), digit_scenes.record("test", 7)
    assert a["image"] == b["image"] and a["image/filename"] == "test_000007.png"
    for key in a["objects"]:
        np.testing.assert_array_equal(a["objects"][key], b["objects"][key])
    assert digit_scenes.record("test", 8)["image"] != a["image"]
    assert digit_scenes.record("train", 7)["image"] != a["image"]


def test_boxes_are_tight_around_the_pasted_pixels(scenes):
    for s in scenes:
        image, background, owner = s["image"].astype(int), s["background"].astype(int), s["owner"]
        height, width = owner.shape
        assert 96 <= height <= 128 and 96 <= width <= 128 and image.shape == (height, width, 3)
        assert 1 <= len(s["boxes"]) <= 5
        # Only pasted pixels change: outside every digit the image is the background.
        np.testing.assert_array_equal(image[owner < 0], background[owner < 0])
        for k, box in enumerate(s["boxes"]):
            rows, cols = np.nonzero(owner == k)
            assert rows.size > 0
            assert box.tolist() == [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]
            # The digit stands out from the background where it is visible.
            assert np.abs(image[owner == k] - background[owner == k]).max(axis=-1).mean() > 40


def test_the_difficult_rule(scenes):
    heights = np.concatenate([s["boxes"][:, 2] - s["boxes"][:, 0] for s in scenes])
    visible = np.concatenate([s["visible"] for s in scenes])
    difficult = np.concatenate([s["difficult"] for s in scenes])
    truncated = np.concatenate([s["truncated"] for s in scenes])
    rule = (heights < digit_scenes.DIFFICULT_MIN_HEIGHT) | (visible < digit_scenes.DIFFICULT_MIN_VISIBLE)
    np.testing.assert_array_equal(difficult, rule)
    assert np.all(visible >= 0.15) and np.all(visible <= 1)
    # Both reasons occur, and most objects are not difficult.
    assert (heights < 10).sum() >= 20 and ((visible < 0.5) & (heights >= 10)).sum() >= 3
    assert 0.05 < difficult.mean() < 0.2 and 0.05 < truncated.mean() < 0.3


def test_classes_are_balanced_and_splits_use_different_handwriting(scenes):
    labels = np.concatenate([s["labels"] for s in scenes])
    counts = np.bincount(labels, minlength=10)
    assert counts.min() > 0.7 * counts.mean() and counts.max() < 1.3 * counts.mean(), counts
    split = digits.split_indices()
    train_sources = np.concatenate([s["source"] for s in scenes])
    test_sources = np.concatenate([digit_scenes.scene("test", i)["source"] for i in range(50)])
    assert set(train_sources) <= set(split["train"]) and set(test_sources) <= set(split["test"])
    from sklearn.datasets import load_digits

    target = load_digits().target
    np.testing.assert_array_equal(target[train_sources], labels)


def _data(data_dir: str):
    data = default.get_config().data
    data.update(dict(name="convnets_digit_scenes", data_dir=data_dir, shuffle_buffer=100, prefetch=0))
    fixed = "pad_to(128)|pad_boxes(8)"
    data.train_preprocess = f"decode(3)|objects_to_boxes|resize_short_capped(96, 128)|flip_lr|{fixed}"
    data.eval_preprocess = f"decode(3)|objects_to_boxes|resize_short_capped(96, 128)|{fixed}"
    data.batch_keys = KEYS
    return data


def _check_row(batch: dict, row: int, scene: dict, flipped: bool | None) -> bool:
    """Row ``row`` of the batch is ``scene`` resized (flipped if so), padded, with its boxes. Returns the flip."""
    h, w = (int(v) for v in batch["image_size"][row])
    resized = tf.image.resize(tf.constant(scene["image"], tf.float32), (h, w)).numpy()
    image = batch["image"][row]
    assert not image[h:].any() and not image[:, w:].any()
    if flipped is None:
        flipped = not np.allclose(image[:h, :w], resized, atol=1e-3)
    np.testing.assert_allclose(image[:h, :w], resized[:, ::-1] if flipped else resized, atol=1e-3)
    n = len(scene["boxes"])
    assert batch["box_mask"][row].tolist() == [True] * n + [False] * (8 - n)
    boxes = scene["boxes"].astype(np.float64) * np.tile(batch["image_scale"][row], 2)
    if flipped:
        boxes = np.stack([boxes[:, 0], w - boxes[:, 3], boxes[:, 2], w - boxes[:, 1]], axis=1)
    np.testing.assert_allclose(batch["boxes"][row][:n], boxes, atol=1e-3)
    assert batch["box_classes"][row][:n].tolist() == scene["labels"].tolist()
    assert batch["box_difficult"][row][:n].tolist() == scene["difficult"].tolist()
    np.testing.assert_allclose(batch["image_scale"][row], [h / scene["image"].shape[0], w / scene["image"].shape[1]])
    return flipped


@pytest.mark.slow
def test_pipeline_yields_fixed_shape_batches_with_boxes_on_their_pixels(scenes_dir):
    data = _data(scenes_dir)
    builder = pipeline.get_builder(data)
    assert builder.info.features["objects"]["label"].names == list(digit_scenes.CLASS_NAMES)
    assert pipeline.element_spec(data) == {
        "image": ((128, 128, 3), np.float32),
        "boxes": ((8, 4), np.float32),
        "box_classes": ((8,), np.int32),
        "box_difficult": ((8,), np.bool_),
        "box_mask": ((8,), np.bool_),
        "image_scale": ((2,), np.float32),
        "image_size": ((2,), np.int32),
    }
    # Eval batches come in file order: the same order as the records' file names.
    names = [r["image/filename"].decode() for r in tfds.as_numpy(builder.as_dataset("test", shuffle_files=False))]
    rows = [(batch, i) for batch in pipeline.eval_batches(data, global_batch_size=8) for i in range(8)]
    for (batch, i), name in zip(rows, names, strict=False):
        split, index = name[:-4].split("_")
        _check_row(batch, i, digit_scenes.scene(split, int(index)), flipped=False)
    # Training batches: identify each row by its image; flips happen, and boxes follow them.
    by_size = {}
    for i in range(PREPARED):
        s = digit_scenes.scene("train", i)
        by_size.setdefault(s["image"].shape[:2], []).append(s)
    flips = []
    for batch in itertools.islice(pipeline.train_batches(data, global_batch_size=8, seed=1), 3):
        for row in range(8):
            size = np.round(batch["image_size"][row] / batch["image_scale"][row]).astype(int)
            candidates = by_size[tuple(size)]
            for s in candidates:
                try:
                    flips.append(_check_row(batch, row, s, None))
                    break
                except AssertionError:
                    if s is candidates[-1]:
                        raise
    assert len(flips) == 24 and 0 < sum(flips) < 24


@pytest.mark.slow
def test_full_dataset_is_the_same_bytes_every_run(tmp_path):
    digests = []
    for run in ("a", "b"):
        builder = digit_scenes.prepare(str(tmp_path / run))
        assert builder.info.splits["train"].num_examples == 2000 and builder.info.splits["test"].num_examples == 500
        files = sorted(glob.glob(os.path.join(builder.data_dir, "*.tfrecord*")))
        digests.append([(os.path.basename(f), hashlib.sha256(open(f, "rb").read()).hexdigest()) for f in files])
    assert digests[0] == digests[1]
