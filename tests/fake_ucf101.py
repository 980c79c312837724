"""A fake UCF101 prepared the TFDS way: TFDS's own `ucf101` builder (config ucf101_1: its features, 101 class
names, splits 'train' / 'test', version) writes the dataset, with small generated videos in place of the 6.5 GB
archive (which also needs ffmpeg to decode). Any process then finds `ucf101/ucf101_1` prepared under the data_dir,
as after a real `tfds build ucf101`.

Videos: 16 to 40 frames of 30x40 pixels (UCF101's 4:3 frames, scaled down); the label of video i is i mod 3 and a
bright square moves over a noisy background left (label 0), right (1) or down (2), so the task is learnable.
"""

from __future__ import annotations

import numpy as np
from tensorflow_datasets.video import ucf101

HEIGHT, WIDTH = 30, 40
SPLIT_SIZES = {'train': 12, 'test': 6}


def _video(rng: np.random.Generator, label: int) -> np.ndarray:
    frames = int(rng.integers(16, 41))
    video = rng.integers(0, 60, (frames, HEIGHT, WIDTH, 3)).astype(np.uint8)
    y, x = int(rng.integers(0, HEIGHT - 8)), int(rng.integers(0, WIDTH - 8))
    dy, dx = {0: (0, -1), 1: (0, 1), 2: (1, 0)}[label]
    for t in range(frames):
        top, left = (y + dy * t) % (HEIGHT - 8), (x + dx * t) % (WIDTH - 8)
        video[t, top:top + 8, left:left + 8] = 230
    return video


class FakeUcf101(ucf101.Ucf101, skip_registration=True):
    """TFDS's Ucf101 with its download replaced by generated videos (same name, configs and features)."""

    name = 'ucf101'

    def _split_generators(self, dl_manager):
        return {split: self._generate_examples(split) for split in SPLIT_SIZES}

    def _generate_examples(self, split):  # noqa: D401 - TFDS hook
        rng = np.random.default_rng(0 if split == 'train' else 1)
        for i in range(SPLIT_SIZES[split]):
            label = i % 3
            yield f'{split}_{i}', {'video': _video(rng, label), 'label': label}


def frame_tree(root: str, classes: tuple[str, ...] = ('left', 'right', 'down')) -> str:
    """The same generated videos as folders of PNG frames, <root>/<split>/<class>/<video>/<frame>.png: the layout
    the convnets_video_folder builder prepares (how a Sports-1M user brings their extracted frames)."""
    import os

    import tensorflow as tf

    for split, n in SPLIT_SIZES.items():
        rng = np.random.default_rng(0 if split == 'train' else 1)
        for i in range(n):
            folder = os.path.join(root, split, classes[i % 3], f'{split}_{i}')
            os.makedirs(folder)
            for t, frame in enumerate(_video(rng, i % 3)):
                with open(os.path.join(folder, f'{t:06d}.png'), 'wb') as f:
                    f.write(tf.io.encode_png(frame).numpy())
    return root


def prepare(data_dir: str) -> str:
    """Writes the fake ucf101/ucf101_1 into `data_dir`; returns `data_dir`."""
    FakeUcf101(config='ucf101_1', data_dir=data_dir).download_and_prepare()
    return data_dir
