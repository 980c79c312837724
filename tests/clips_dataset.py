"""A tiny TFDS video dataset for the tests, registered once however many test modules import it.

Frame t of every clip is a base picture plus STEP * t, so a batch shows whether every frame got the same crop and
flip: the frames of a clip must still differ by exactly that constant.
"""

from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

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
