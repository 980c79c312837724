"""End to end: train_batches / eval_batches on a small TFDS detection dataset (VOC's feature layout, no label).

The dataset is a tiny in-test TFDS builder with the features of TFDS ``voc`` (images of different sizes,
``objects`` with normalized ``bbox``, ``label``, ``is_difficult``, a file name). Box k of an image is drawn
as 255 in colour channel k and has class k, so the batches show whether the boxes still sit on their pixels.
(``tfds.testing.mock_data`` cannot stand in: its random VOC records have sequences of unequal lengths.)
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from convnets.data import pipeline
from experiments import default

MAX_BOXES = 4
BOX_KEYS = ("image", "boxes", "box_classes", "box_difficult", "box_mask")
N_TRAIN, N_TEST = 24, 10


def _record(rng: np.random.Generator, index: int) -> dict:
    h, w = int(rng.integers(30, 50)), int(rng.integers(30, 60))
    image = np.zeros((h, w, 3), np.uint8)
    bbox, labels = [], []
    for k in range(int(rng.integers(1, 4))):  # at most 3 boxes: one colour channel each
        y0, x0 = int(rng.integers(0, h - 6)), int(rng.integers(0, w - 6))
        y1, x1 = int(rng.integers(y0 + 5, h + 1)), int(rng.integers(x0 + 5, w + 1))
        image[y0:y1, x0:x1, k] = 255
        bbox.append(tfds.features.BBox(y0 / h, x0 / w, y1 / h, x1 / w))
        labels.append(k)
    difficult = [bool(d) for d in rng.integers(0, 2, len(labels))]
    objects = {"bbox": bbox, "label": labels, "is_difficult": difficult}
    return {"image": image, "image/filename": f"{index:04d}.png", "objects": objects}


class ConvnetsTestBoxes(tfds.core.GeneratorBasedBuilder):
    """Synthetic detection records with the feature layout of TFDS ``voc``."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        objects = {"bbox": tfds.features.BBoxFeature(), "label": tfds.features.ClassLabel(num_classes=3)}
        objects["is_difficult"] = np.bool_
        features = {"image": tfds.features.Image(shape=(None, None, 3)), "image/filename": tfds.features.Text()}
        features["objects"] = tfds.features.Sequence(objects)
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager) -> dict:
        return {"train": self._generate_examples(0, N_TRAIN), "test": self._generate_examples(1, N_TEST)}

    def _generate_examples(self, seed: int, n: int):
        rng = np.random.default_rng(seed)
        for i in range(n):
            yield i, _record(rng, i)


@pytest.fixture(scope="module")
def boxes_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("tfds_boxes"))


def _data(data_dir: str, **overrides):
    data = default.get_config().data
    data.update(dict(name="convnets_test_boxes", data_dir=data_dir, shuffle_buffer=100, prefetch=0))
    pad = f"pad_boxes({MAX_BOXES}, min_size=1)"
    data.train_preprocess = (
        f"decode|objects_to_boxes|random_resize_short(36, 60, 'nearest')|random_crop(32, pad=2)|flip_lr|{pad}"
    )
    data.eval_preprocess = f"decode|objects_to_boxes|resize((32, 32), 'nearest')|{pad}"
    data.batch_keys = BOX_KEYS
    data.update(overrides)
    return data


def _found(channel: np.ndarray) -> np.ndarray | None:
    rows, cols = np.nonzero(channel > 127.5)
    return None if rows.size == 0 else np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])


def _assert_boxes_on_pixels(batch: dict) -> int:
    """Every real box is where the pixels of its class's channel are; returns the number of boxes checked."""
    checked = 0
    for image, boxes, classes, mask in zip(
        batch["image"], batch["boxes"], batch["box_classes"], batch["box_mask"], strict=True
    ):
        seen = set()
        for box, cls, real in zip(boxes, classes, mask, strict=True):
            if not real:
                assert not box.any() and cls == 0  # padding rows are zero
                continue
            # With nearest resizing a pixel is in a box iff its centre is, so a box kept by pad_boxes(min_size=1)
            # has pixels, and its edges are within half a pixel of theirs; crops and flips are exact.
            found = _found(image[..., cls])
            assert found is not None, f"box {box} of class {cls} has no pixels"
            np.testing.assert_allclose(box, found, atol=0.5 + 1e-3)
            seen.add(int(cls))
            checked += 1
        for cls in set(range(3)) - seen:  # a channel without a real box: its box was cropped away or cut thin
            found = _found(image[..., cls])
            assert found is None or min(found[2] - found[0], found[3] - found[1]) <= 1
    return checked


def test_train_and_eval_batches_of_a_detection_dataset(boxes_dir):
    data = _data(boxes_dir)
    train = list(itertools.islice(pipeline.train_batches(data, global_batch_size=8, seed=3), 6))  # 2 epochs
    expected = {
        "image": ((8, 32, 32, 3), np.float32),
        "boxes": ((8, MAX_BOXES, 4), np.float32),
        "box_classes": ((8, MAX_BOXES), np.int32),
        "box_difficult": ((8, MAX_BOXES), np.bool_),
        "box_mask": ((8, MAX_BOXES), np.bool_),
    }
    for batch in train:
        assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
    assert sum(_assert_boxes_on_pixels(b) for b in train) > 40
    # Augmentation draws differ per example and epoch: the same records come back with other boxes.
    assert len({b["boxes"].tobytes() for b in train}) == 6
    assert pipeline.element_spec(data) == {k: (shape[1:], np.dtype(dtype)) for k, (shape, dtype) in expected.items()}

    evals = list(pipeline.eval_batches(data, global_batch_size=4))
    assert len(evals) == 3 and set(evals[0]) == {*BOX_KEYS, "mask"}
    mask = np.concatenate([b["mask"] for b in evals])
    assert mask.tolist() == [1.0] * N_TEST + [0.0] * 2
    last = evals[-1]
    for key in BOX_KEYS:  # padding rows of every key are zero / False
        assert not last[key][2:].any(), key
    assert last["box_mask"][:2].any()
    assert sum(_assert_boxes_on_pixels(b) for b in evals) >= N_TEST


def test_detection_batches_resume_and_assemble_over_processes(boxes_dir):
    data = _data(boxes_dir)

    def run(**kwargs):
        return list(itertools.islice(pipeline.train_batches(data, global_batch_size=8, seed=5, **kwargs), 4))

    full = run()
    resumed = run(start_step=2)
    halves = [run(process_index=p, process_count=2) for p in range(2)]
    for step, batch in enumerate(full):
        for key in BOX_KEYS:
            np.testing.assert_array_equal(np.concatenate([h[step][key] for h in halves]), batch[key])
            if step >= 2:
                np.testing.assert_array_equal(resumed[step - 2][key], batch[key])


def test_batch_key_errors(boxes_dir):
    with pytest.raises(ValueError, match=r"'box_mask'.*yields only .*box_classes.*add pad_boxes to the spec"):
        pipeline.element_spec(_data(boxes_dir, train_preprocess="decode|objects_to_boxes|resize(32)"))
    with pytest.raises(ValueError, match=r"'label'.*yields only .*image/filename: 'label' must be a feature of the"):
        pipeline.element_spec(_data(boxes_dir, batch_keys=("image", "label")))
    with pytest.raises(ValueError, match=r"'boxes' of shape \(None, 4\).*pad_boxes\(50\)"):
        pipeline.element_spec(_data(boxes_dir, train_preprocess="decode|objects_to_boxes|resize(32)",
                                    batch_keys=("image", "boxes")))
    with pytest.raises(ValueError, match="'objects', a nested feature.*objects_to_boxes"):
        pipeline.element_spec(_data(boxes_dir, train_preprocess="decode|resize(32)", batch_keys=("image", "objects")))
    with pytest.raises(ValueError, match="the dataset has 'objects', but an op of the spec consumed it"):
        pipeline.element_spec(_data(boxes_dir, batch_keys=("image", "objects")))
    with pytest.raises(ValueError, match="'image/filename' of dtype string"):
        pipeline.element_spec(_data(boxes_dir, batch_keys=("image/filename",)))
    with pytest.raises(ValueError, match="must not name 'mask'"):
        pipeline.element_spec(_data(boxes_dir, batch_keys=("image", "mask")))
    with pytest.raises(ValueError, match="no 'label' feature"):
        pipeline.num_classes(_data(boxes_dir))
    # The old entry point still gives the image shape.
    assert pipeline.element_spec_shape(_data(boxes_dir), train=False) == (32, 32, 3)
