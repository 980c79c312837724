"""The embedded video dataset: a scikit-learn digit drifting across a small canvas; the label is the direction.

``convnets_moving_digits`` is to video what ``convnets_digits`` is to images: no download (the digits are
``sklearn.datasets.load_digits()``, shipped inside scikit-learn), seconds to prepare, and the feature layout of
TFDS ``ucf101`` so that the video ops (``rename('video', 'image')|temporal_crop(...)|...``) read it unchanged::

    video: Video [16, 32, 32, 1] uint8, every frame a PNG
    label: ClassLabel(names=left, right, up, down)   the direction of motion
    digit: ClassLabel(names=zero..nine)              the digit shown (for other tasks)
    speed: int32, 1 or 2                             pixels per frame

Clip ``clip(split, index)``: one ``load_digits`` sample of a uniformly drawn class, upsampled bilinearly to 16x16
(``digits.upsample``: white ink on black, like ``convnets_digits``), on a black 32x32 canvas that is a TORUS:
what leaves one border comes back in at the opposite one. The digit starts at a uniformly random integer
position (y0, x0) in [0, 32)^2 and moves ``speed`` pixels per frame in the labelled direction, so frame ``t`` is
``np.roll(start_frame, speed * t * direction)``, exactly (no resampling).

Why ONE FRAME CANNOT SOLVE THE TASK (the point of the video papers, Karpathy et al. 2014, Sec. 3.1; Tran et al.
2015, Sec. 3): frame ``t`` shows the digit at position (y0, x0) + speed * t * direction mod 32. On the torus, a
uniform (y0, x0) plus any offset is again uniform, and the digit, its class and the speed are drawn independently
of the direction. So for every t the distribution of frame t is the SAME under all four labels: no function of a
single frame (or of any set of frames from different clips) predicts the label better than chance (25%), the
Bayes error of a single-frame classifier is exactly 75%. Two consecutive frames determine the label: frame t+1 is
frame t rolled by ``speed`` pixels in the labelled direction and in no other (a digit image is never periodic with
a period of 2 or 4 pixels on the 32-pixel torus; checked on all 2,500 clips, the tests check 400). Measured on
the whole dataset (train on ``train``, score on ``test``): a logistic regression on the digit's circular centre of
mass in one frame scores 26% / 23% / 28% at frames 0 / 7 / 15, one on the frame's pixels (16x16) 26% (46% on its
own training set: memorising, not generalising), while the same model on the centre of mass in two frames (its
displacement from frame 0 to 1) scores 100%.

Preprocessing must keep this: a crop (the same for all frames) or a temporal window keeps every frame's
distribution independent of the label, but ``flip_lr`` swaps left and right (and ``flip_ud`` up and down) without
changing the label, so a training spec for this dataset must not flip.

Splits: ``train`` 2,000 and ``test`` 500 clips, balanced (clip ``i`` has direction ``i % 4``; TFDS orders records
by a hash of the key, so the stored order is not index order). Train clips take their digits only from the
``train`` samples of ``convnets_digits`` (``digits.split_indices()``), test clips only from its ``test`` samples,
so a model is tested on handwriting it never saw. Clip ``i`` of a split is drawn from
``np.random.default_rng([SEED, split_code, i])``: the dataset is the same bytes on every run and any clip can be
regenerated alone (the tests do).
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow_datasets as tfds

from convnets.data import digit_scenes, digits

NAME = "convnets_moving_digits"
SEED = 13
NUM_EXAMPLES = {"train": 2000, "test": 500}
_SPLIT_CODES = {"train": 0, "test": 1}
NUM_FRAMES = 16
CANVAS = 32  # Side of the square (toroidal) canvas.
DIGIT_SIZE = 16  # The 8x8 digit upsampled 2x: half the canvas, so it is large but never overlaps itself.
SPEEDS = (1, 2)  # Pixels per frame; at 2 the digit crosses 30 of the 32 pixels in 16 frames.
DIRECTIONS = ("left", "right", "up", "down")
# (dy, dx) per direction, in image coordinates (rows grow downwards).
STEPS = np.array([(0, -1), (0, 1), (-1, 0), (1, 0)], np.int64)


@functools.cache
def _source() -> tuple[np.ndarray, np.ndarray, dict[str, list[np.ndarray]]]:
    """(digits upsampled to uint8 [N, 16, 16], labels, per split the sample indices of each class)."""
    images, labels, by_class = digits.samples_by_class()
    return digits.upsample(images, DIGIT_SIZE)[..., 0], labels, by_class


def clip(split: str, index: int) -> dict:
    """Clip ``index`` of ``split``: ``video`` uint8 [T, 32, 32, 1], ``label`` (direction index), ``digit``,
    ``speed``, ``start`` (y0, x0) of the digit's top-left corner in frame 0, ``source`` (the load_digits index)."""
    if split not in _SPLIT_CODES:
        raise ValueError(f"moving_digits: unknown split {split!r}, expected one of {tuple(_SPLIT_CODES)}")
    images, _, by_class = _source()
    rng = np.random.default_rng([SEED, _SPLIT_CODES[split], index])
    label = index % len(DIRECTIONS)  # Exactly balanced; independent of everything drawn below.
    digit = int(rng.integers(0, 10))
    source = int(rng.choice(by_class[split][digit]))
    speed = int(rng.choice(SPEEDS))
    start = rng.integers(0, CANVAS, size=2)
    canvas = np.zeros((CANVAS, CANVAS), np.uint8)
    canvas[:DIGIT_SIZE, :DIGIT_SIZE] = images[source]
    offsets = start[None, :] + speed * np.arange(NUM_FRAMES)[:, None] * STEPS[label][None, :]
    frames = np.stack([np.roll(canvas, tuple(o), axis=(0, 1)) for o in offsets])
    return {
        "video": frames[..., None],
        "label": label,
        "digit": digit,
        "speed": speed,
        "start": start,
        "source": source,
    }


def clips(split: str, n: int) -> dict[str, np.ndarray]:
    """The first ``n`` clips of ``split`` stacked: ``video`` [n, T, 32, 32, 1] and the other fields [n, ...]."""
    items = [clip(split, i) for i in range(n)]
    return {key: np.stack([np.asarray(item[key]) for item in items]) for key in items[0]}


def record(split: str, index: int) -> dict:
    """The TFDS example of clip ``index`` of ``split`` (the features of the module docstring; PNG frames)."""
    c = clip(split, index)
    return {
        "video": [digit_scenes._png(frame[..., 0]) for frame in c["video"]],
        "label": c["label"],
        "digit": c["digit"],
        "speed": c["speed"],
    }


class ConvnetsMovingDigits(tfds.core.GeneratorBasedBuilder):
    """A digit moving on a 32x32 torus; label: the direction of motion (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 2,000 train / 500 test clips of 16 frames, 32x32x1."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "video": tfds.features.Video(shape=(NUM_FRAMES, CANVAS, CANVAS, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(names=DIRECTIONS),
                    "digit": tfds.features.ClassLabel(names=digit_scenes.CLASS_NAMES),
                    "speed": np.int32,
                }
            ),
            supervised_keys=("video", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Generated from scikit-learn's bundled digits: nothing to download.
        return {split: self._generate_examples(split, n) for split, n in NUM_EXAMPLES.items()}

    def _generate_examples(self, split: str, n: int):
        for index in range(n):
            yield index, record(split, index)


def prepare(data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """Prepares ``convnets_moving_digits`` under ``data_dir`` (TFDS default if None) and returns the builder."""
    builder = ConvnetsMovingDigits(data_dir=data_dir)
    builder.download_and_prepare()
    return builder
