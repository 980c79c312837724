"""End to end: a TFDS ``Video`` dataset read with encoded frames, decoded by the pipeline, batched as clips.

Frame t of every clip is a base picture plus 20 * t, so a batch shows whether every frame got the same crop
and flip: the frames of a clip must still differ by exactly that constant.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from convnets.data import pipeline, records
from experiments import default
from tests.clips_dataset import STEP


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
