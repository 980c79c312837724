"""The embedded detection dataset: scikit-learn's digits pasted onto textured backgrounds, with exact boxes.

``convnets_digit_scenes`` is to detection what ``convnets_digits`` is to classification: no download (the digits
are ``sklearn.datasets.load_digits()``, shipped inside scikit-learn), a few seconds to prepare, and the
feature layout of TFDS ``voc`` so that the same ops (``objects_to_boxes``, ``resize_short_capped``, ``pad_to``,
``pad_boxes``) serve both::

    image: uint8 [H, W, 3] PNG, H and W in [96, 128]
    image/filename: 'train_000042.png'
    objects: Sequence of
        bbox: BBoxFeature (ymin, xmin, ymax, xmax) normalized by H and W, pixel-edge coordinates
        label: ClassLabel(names=zero..nine)
        is_difficult, is_truncated: bool

A scene (``scene(split, index)``): a background of smooth colour noise, stripes and blobs, then 1-5 digits pasted
one after the other, so later digits occlude earlier ones. Each digit is a ``load_digits`` sample of a uniformly
drawn class, upsampled bilinearly (``digits._bilinear_matrix``) to a height of 14-40 px (15%: a tiny 6-12 px)
and a width of 0.7-1.0 times that, in a random hue, dark or light, whichever stands out more from what it covers.
Its pixels are those where the upsampled ink is >= 4/16 of full; they are painted with an opacity of 0.6-1.0, so
every pasted pixel changes the image and no other does. A digit may hang over the border of the image
(``is_truncated``).

Boxes are exact: the pixel-edge bounding box of the digit's VISIBLE pixels (not covered by a later digit, inside
the image), the extent VOC's annotators drew. Placements that would leave an earlier digit < 15% visible, or
the new digit < 30% inside the image, are redrawn (up to 30 times, then the digit is left out), so every object
has visible pixels. ``is_difficult`` (the rule, fixed for VERSION 1.0.0): the box is < ``DIFFICULT_MIN_HEIGHT``
= 10 px high (its height, not its shorter side: a '1' is thin at any size), or less than half of the digit's
pixels are visible (occluded by later digits or cut by the border). VOC marks objects "difficult" when they are
hard to recognise without context; tiny and mostly hidden digits are the analogue. About 10% of the objects are
difficult (9% tiny, 2% mostly hidden), 15% truncated.

Splits: ``train`` 2,000 and ``test`` 500 scenes. Train scenes take their digits only from the ``train``
samples of ``convnets_digits`` (``digits.split_indices()``), test scenes only from its ``test`` samples, so a
detector is tested on handwriting it never saw. Scene ``i`` of a split is drawn from
``np.random.default_rng([SEED, split_code, i])``, so the dataset is the same bytes on every run and any scene can
be regenerated alone (the tests do).
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_datasets as tfds

from convnets.data import digits

SEED = 11
NUM_EXAMPLES = {"train": 2000, "test": 500}
_SPLIT_CODES = {"train": 0, "test": 1}
CLASS_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
IMAGE_SIDES = (96, 128)  # Height and width each uniform in [96, 128]: small for a CPU detector, but varying.
DIGITS_PER_IMAGE = (1, 5)
DIGIT_HEIGHTS = (14, 40)
TINY_HEIGHTS = (6, 12)
TINY_PROBABILITY = 0.15
INK_THRESHOLD = 4.0 / 16.0  # Upsampled ink (0..1) at or above this is a pixel of the digit.
DIFFICULT_MIN_HEIGHT = 10
DIFFICULT_MIN_VISIBLE = 0.5
_MIN_VISIBLE_KEPT = 0.15  # An earlier digit must stay at least this visible, or the new placement is redrawn.
_MIN_INSIDE = 0.3  # A new digit must have at least this share of its pixels inside the image.
_TRIES = 30
_LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights.


_source = digits.samples_by_class  # (8x8 images 0..16, labels, per split the indices of each class)


def _upsample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear (half-pixel centres, like convnets_digits) resize of an 8x8 digit to [height, width], 0..1."""
    rows = digits._bilinear_matrix(image.shape[0], height)
    cols = digits._bilinear_matrix(image.shape[1], width)
    return rows @ (image / 16.0) @ cols.T


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Float [H, W, 3] in 0..1: a base colour + smooth colour noise + stripes + a few soft blobs."""
    grid = int(rng.integers(3, 7))
    coarse = rng.uniform(-1.0, 1.0, size=(grid, grid, 3))
    rows, cols = digits._bilinear_matrix(grid, height), digits._bilinear_matrix(grid, width)
    smooth = np.stack([rows @ coarse[..., c] @ cols.T for c in range(3)], axis=-1)
    image = rng.uniform(0.2, 0.8, size=3) + 0.18 * smooth
    y, x = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    angle, period, phase = rng.uniform(0, np.pi), rng.uniform(6, 24), rng.uniform(0, 2 * np.pi)
    stripes = np.sin(2 * np.pi * (x * np.cos(angle) + y * np.sin(angle)) / period + phase)
    image += rng.uniform(0.0, 0.12) * stripes[..., None] * rng.uniform(-1.0, 1.0, size=3)
    for _ in range(int(rng.integers(0, 4))):
        cy, cx, radius = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(5, 20)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(-0.2, 0.2, size=3)
    return np.clip(image, 0.0, 1.0)


def _colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random hue, dark (luminance 0-0.15) or light (0.85-1), whichever differs more from every pixel of
    ``under`` [P, 3] (what the digit will cover, background and earlier digits), so every digit can be found."""
    colour = rng.uniform(0.0, 1.0, size=3)
    targets = (rng.uniform(0.0, 0.15), rng.uniform(0.85, 1.0))
    lums = under @ _LUMA
    target = max(targets, key=lambda t: np.abs(lums - t).min())
    return np.clip(colour - colour @ _LUMA + target, 0.0, 1.0)


def _digit_size(rng: np.random.Generator) -> tuple[int, int]:
    lo, hi = TINY_HEIGHTS if rng.uniform() < TINY_PROBABILITY else DIGIT_HEIGHTS
    height = int(rng.integers(lo, hi + 1))
    return height, max(4, int(round(height * rng.uniform(0.7, 1.0))))


def _place(rng, owner: np.ndarray, ink: np.ndarray, full: list[int], shown: np.ndarray) -> tuple[int, int] | None:
    """A (top, left) for ``ink`` that keeps earlier digits visible enough, or None after _TRIES draws.

    ``full[k]``: pixel count of digit k; ``shown[k]``: how many of them the image shows now.
    """
    height, width = owner.shape
    h, w = ink.shape
    for _ in range(_TRIES):
        # Up to a quarter of the digit may hang over each border (truncated digits).
        top = int(rng.integers(-(h // 4), height - h + h // 4 + 1))
        left = int(rng.integers(-(w // 4), width - w + w // 4 + 1))
        ys, xs, py, px = _window(owner.shape, top, left, h, w)
        inside = ink[py, px]
        if inside.sum() < _MIN_INSIDE * ink.sum():
            continue
        # Pixels of each earlier digit the new one would cover (-1, the background, shifted to bin 0).
        covered = np.bincount(owner[ys, xs][inside] + 1, minlength=len(full) + 1)[1:]
        if all(shown[k] - covered[k] >= _MIN_VISIBLE_KEPT * n for k, n in enumerate(full)):
            return top, left
    return None


def _window(shape, top: int, left: int, h: int, w: int) -> tuple[slice, slice, slice, slice]:
    """(image rows, image cols, patch rows, patch cols) of a patch at (top, left), clipped to the image."""
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + h, shape[0]), min(left + w, shape[1])
    return slice(y0, y1), slice(x0, x1), slice(y0 - top, y1 - top), slice(x0 - left, x1 - left)


def _paint(canvas: np.ndarray, patch: np.ndarray, top: int, left: int, value) -> None:
    """canvas[pixels of the patch's True mask, clipped to the canvas] = value."""
    ys, xs, py, px = _window(canvas.shape, top, left, *patch.shape)
    canvas[ys, xs][patch[py, px]] = value


def scene(split: str, index: int) -> dict:
    """Scene ``index`` of ``split``: ``image`` uint8 [H, W, 3], ``background`` (the same before any digit),
    ``owner`` int [H, W] (index of the object each pixel shows, -1 background), and per object ``boxes`` int
    [N, 4] (pixel edges), ``labels``, ``visible`` (fraction of the digit's pixels shown), ``truncated``,
    ``difficult``, ``source`` (the load_digits index).
    """
    images, labels, by_class = _source()
    rng = np.random.default_rng([SEED, _SPLIT_CODES[split], index])
    height, width = (int(v) for v in rng.integers(IMAGE_SIDES[0], IMAGE_SIDES[1] + 1, size=2))
    background = _background(rng, height, width)
    image = background.copy()
    owner = np.full((height, width), -1, np.int64)
    full, objects = [], []
    for _ in range(int(rng.integers(DIGITS_PER_IMAGE[0], DIGITS_PER_IMAGE[1] + 1))):
        label = int(rng.integers(0, 10))
        source = int(rng.choice(by_class[split][label]))
        h, w = _digit_size(rng)
        alpha = _upsample(images[source], h, w)
        ink = alpha >= INK_THRESHOLD
        if not ink.any():
            continue
        placed = _place(rng, owner, ink, full, np.bincount(owner[owner >= 0], minlength=len(full)))
        if placed is None:
            continue
        top, left = placed
        ys, xs, py, px = _window(owner.shape, top, left, h, w)
        region = image[ys, xs]
        colour = _colour(rng, region[ink[py, px]])
        # Opacity 0.6..1.0 on the digit's pixels (smooth edges, but every pixel of the digit changes), 0 elsewhere.
        opacity = np.where(ink, 0.6 + 0.4 * np.clip((alpha - INK_THRESHOLD) / 0.5, 0.0, 1.0), 0.0)[py, px, None]
        image[ys, xs] = region * (1.0 - opacity) + colour * opacity
        _paint(owner, ink, top, left, len(full))
        full.append(int(ink.sum()))
        objects.append((label, source, int(ink[py, px].sum()) < full[-1]))
    boxes, visible = [], []
    for k, n in enumerate(full):
        rows, cols = np.nonzero(owner == k)
        boxes.append([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
        visible.append(len(rows) / n)
    boxes = np.array(boxes, np.int64).reshape(-1, 4)
    heights = boxes[:, 2] - boxes[:, 0]  # Height, not the shorter side: a '1' is thin at any size.
    visible = np.array(visible, np.float64)
    return {
        "image": np.clip(np.round(image * 255.0), 0, 255).astype(np.uint8),
        "background": np.clip(np.round(background * 255.0), 0, 255).astype(np.uint8),
        "owner": owner,
        "boxes": boxes,
        "labels": np.array([o[0] for o in objects], np.int64),
        "source": np.array([o[1] for o in objects], np.int64),
        "truncated": np.array([o[2] for o in objects], bool),
        "visible": visible,
        "difficult": (heights < DIFFICULT_MIN_HEIGHT) | (visible < DIFFICULT_MIN_VISIBLE),
    }


def _png(image: np.ndarray) -> bytes:
    """PNG bytes of ``image`` (PIL, zlib level 1: lossless like any level, and 5x faster to write than TF's)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def record(split: str, index: int) -> dict:
    """The TFDS example of scene ``index`` of ``split`` (the features of the module docstring; PNG bytes)."""
    s = scene(split, index)
    height, width = s["image"].shape[:2]
    bbox = s["boxes"].astype(np.float64) / np.array([height, width, height, width], np.float64)
    return {
        "image": _png(s["image"]),
        "image/filename": f"{split}_{index:06d}.png",
        "objects": {
            "bbox": bbox.astype(np.float32),
            "label": s["labels"],
            "is_difficult": s["difficult"],
            "is_truncated": s["truncated"],
        },
    }


class ConvnetsDigitScenes(tfds.core.GeneratorBasedBuilder):
    """Digits pasted onto textured backgrounds, with exact boxes (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release: 2,000 train / 500 test scenes of 96-128 px, 1-5 digits each."}

    def _info(self) -> tfds.core.DatasetInfo:
        objects = {
            "bbox": tfds.features.BBoxFeature(),
            "label": tfds.features.ClassLabel(names=CLASS_NAMES),
            "is_difficult": np.bool_,
            "is_truncated": np.bool_,
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), dtype=np.uint8, encoding_format="png"),
                    "image/filename": tfds.features.Text(),
                    "objects": tfds.features.Sequence(objects),
                }
            ),
            homepage="https://archive.ics.uci.edu/dataset/80",
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        del dl_manager  # Generated from scikit-learn's bundled digits: nothing to download.
        return {split: self._generate_examples(split, n) for split, n in NUM_EXAMPLES.items()}

    def _generate_examples(self, split: str, n: int):
        for index in range(n):
            yield index, record(split, index)


def prepare(data_dir: str | None = None) -> tfds.core.DatasetBuilder:
    """Prepares ``convnets_digit_scenes`` under ``data_dir`` (TFDS default if None) and returns the builder."""
    builder = ConvnetsDigitScenes(data_dir=data_dir)
    builder.download_and_prepare()
    return builder
