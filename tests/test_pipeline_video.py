"""End to end: a TFDS ``Video`` dataset read with encoded frames, decoded by the pipeline, batched as clips.

Frame t of every clip is a base picture plus 20 * t, so a batch shows whether every frame got the same crop
and flip: the frames of a clip must still differ by exactly that constant.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow_datasets as tfds

from convnets.data import pipeline, records
from experiments import default

STEP = 20


class ConvnetsTestClips(tfds.core.GeneratorBasedBuilder):
    """Clips of 6 to 9 frames, 24x32 RGB, with a class label (the feature layout of TFDS ucf101)."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        features = {"video": tfds.features.Video(shape=(None, 24, 32, 3))}
        features["label"] = tfds.features.ClassLabel(num_classes=3)
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager) -> dict:
        return {"train": self._generate_examples(0, 8), "test": self._generate_examples(1, 3)}

    def _generate_examples(self, seed: int, n: int):
        rng = np.random.default_rng(seed)
        for i in range(n):
            base = rng.integers(0, 256 - 9 * STEP, (24, 32, 3))
            frames = np.stack([base + STEP * t for t in range(int(rng.integers(6, 10)))]).astype(np.uint8)
            yield i, {"video": frames, "label": i % 3}


@pytest.fixture(scope="module")
def clips_data(tmp_path_factory):
    data = default.get_config().data
    data.update(dict(name="convnets_test_clips", data_dir=str(tmp_path_factory.mktemp("tfds_clips")), prefetch=0))
    data.train_preprocess = "rename('video', 'image')|random_temporal_crop(4)|random_crop((16, 20))|flip_lr"
    data.eval_preprocess = "rename('video', 'image')|temporal_crop(3, stride=2)|center_crop(16)"
    return data


def test_clip_batches(clips_data):
    builder = pipeline.get_builder(clips_data)
    assert set(records.encoded_features(builder)) == {"video"}  # read encoded, decoded per example
    assert pipeline.element_spec(clips_data) == {
        "image": ((4, 16, 20, 3), np.dtype(np.float32)),
        "label": ((), np.dtype(np.int32)),
    }
    batches = list(itertools.islice(pipeline.train_batches(clips_data, global_batch_size=4, seed=0), 4))
    for batch in batches:
        assert batch["image"].shape == (4, 4, 16, 20, 3) and batch["label"].dtype == np.int32
        # One crop window and one flip for all frames of a clip: the frames still differ by the constant.
        np.testing.assert_array_equal(np.diff(batch["image"], axis=1), STEP)
    assert len({b["image"][:, 0].tobytes() for b in batches}) == 4
    (evals,) = list(pipeline.eval_batches(clips_data, global_batch_size=4))
    assert evals["image"].shape == (4, 3, 16, 16, 3) and evals["mask"].tolist() == [1, 1, 1, 0]
    np.testing.assert_array_equal(np.diff(evals["image"][:3], axis=1), 2 * STEP)  # every other frame
    assert not evals["image"][3].any()
