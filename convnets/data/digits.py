"""The embedded default dataset: scikit-learn's handwritten digits as a TFDS builder.

``convnets_digits`` is the dataset every experiment runs on when no other dataset is
named. It needs no network: the source is ``sklearn.datasets.load_digits()``, the
UCI "Optical Recognition of Handwritten Digits" test set that ships inside the
scikit-learn wheel (1,797 images of 8x8 pixels, 16 grey levels, digits 0..9).

Conversion, chosen to look like MNIST so that MNIST-era models run unchanged:

* each 8x8 image is upsampled to 32x32 with bilinear interpolation using half-pixel
  centres (the convention of ``tf.image.resize(..., 'bilinear')``), implemented in
  numpy so that the prepared bytes do not depend on the TF version or device;
* values 0..16 are scaled to 0..255 (``round(v * 255 / 16)``) and stored as uint8, so
  the digit is white (high) on a black (0) background, like MNIST;
* images are stored as single-channel PNG, ``image: Image(shape=(32, 32, 1))``.

Split (fixed forever for VERSION 1.0.0): ``sklearn.model_selection.train_test_split(
indices, test_size=360, stratify=labels, random_state=0)``, giving 1,437 ``train`` and
360 ``test`` examples with (almost) equal class proportions. The example keys are the
original indices into ``load_digits()``; TFDS orders the records on disk by a hash of the
key, so the file order is fixed (the same on every machine) but is not index order.

Preparing takes a couple of seconds; ``prepare(data_dir)`` does it in one call.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow_datasets as tfds

IMAGE_SIZE = 32
NUM_TEST = 360
SPLIT_SEED = 0


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Returns the [out, in] linear map of 1-D bilinear resampling with half-pixel centres."""
    # Output pixel j samples the input at continuous coordinate (j + 0.5) * in/out - 0.5,
    # clamped at the borders (edge replication), exactly as tf.image.resize does.
    coords = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    coords = np.clip(coords, 0.0, in_size - 1)
    lo = np.floor(coords).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    frac = coords - lo
    matrix = np.zeros((out_size, in_size), np.float64)
    matrix[np.arange(out_size), lo] += 1.0 - frac
    matrix[np.arange(out_size), hi] += frac
    return matrix


def upsample(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Bilinearly resizes float images [N, h, w] (values 0..16) to uint8 [N, size, size, 1]."""
    rows = _bilinear_matrix(images.shape[1], size)
    cols = _bilinear_matrix(images.shape[2], size)
    # Separable bilinear resize: R @ X @ C^T for every image at once.
    resized = np.einsum("ih,nhw,jw->nij", rows, images.astype(np.float64), cols)
    scaled = np.clip(np.round(resized * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return scaled[..., None]


def split_indices() -> dict[str, np.ndarray]:
    """Returns the fixed indices into ``load_digits()`` of the train and test splits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    labels = load_digits().target
    train, test = train_test_split(
        np.arange(len(labels)), test_size=NUM_TEST, stratify=labels, random_state=SPLIT_SEED
    )
    return {"train": np.asarray(train), "test": np.asarray(test)}


@functools.cache
def samples_by_class() -> tuple[np.ndarray, np.ndarray, dict[str, list[np.ndarray]]]:
    """(the 8x8 images 0..16, their labels, per split the sample indices of each class): the handwriting pool the
    generated datasets (digit scenes, moving digits) draw from, split as this dataset is."""
    from sklearn.datasets import load_digits

    data = load_digits()
    by_class = {split: [indices[data.target[indices] == c] for c in range(10)]
                for split, indices in split_indices().items()}
    return data.images, data.target, by_class


class ConvnetsDigits(tfds.core.GeneratorBasedBuilder):
    """scikit-learn's 8x8 handwritten digits, upsampled to 32x32 (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 1,437 train / 360 test, 32x32x1 uint8."}

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(IMAGE_SIZE, IMAGE_SIZE, 1), dtype=np.uint8),
                    "label": tfds.features.ClassLabel(num_classes=10),
                }
            ),
            supervised_keys=("image", "label"),
            homepage="https://archive.ics.uci.edu/dataset/80",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        # dl_manager is deliberately unused: the data ships inside scikit-learn.
        del dl_manager
        return {name: self._generate_examples(indices) for name, indices in split_indices().items()}

    def _generate_examples(self, indices: np.ndarray):
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = upsample(digits.images[indices])
        for index, image, label in zip(indices, images, digits.target[indices], strict=True):
            yield int(index), {"image": image, "label": int(label)}


def prepare(data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """Prepares ``convnets_digits`` under ``data_dir`` (TFDS default if None) and returns the builder."""
    builder = ConvnetsDigits(data_dir=data_dir)
    builder.download_and_prepare()
    return builder
