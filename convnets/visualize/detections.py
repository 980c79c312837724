"""Pictures of detections: labelled boxes drawn on images (numpy / PIL), and a few test images with their
detections and ground truth written to TensorBoard.

`draw_boxes` is the one drawing function: `--mode=detect` (convnets/detect.py) draws a user's image with it, and
`DetectionPictures` draws the first test images of a detection evaluation with it and writes them to
``<workdir>/tensorboard`` as the image summary ``detections/<evaluator name>`` at the evaluation's step.

Conventions: boxes are this project's edge boxes ``(ymin, xmin, ymax, xmax)`` in the pixels of the image they are
drawn on (convnets/data/ops/boxes.py); classes are 0-based object classes (no background). Detections are solid
rectangles with a filled label "<class name> <score>"; ground-truth boxes are dashed, labelled with the class name
only (difficult ones "(difficult)"). One colour per class: tab10, then its light variants (tab20), then hues
spaced by the golden ratio, so every class of VOC's 20 has its own colour. As py-faster-rcnn's tools/demo.py
(which draws only detections scoring above CONF_THRESH), pictures show detections from `min_score` up, while the
evaluation and the JSON of `--mode=detect` keep every detection above the evaluator's score_threshold.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convnets.visualize import images as im

# tab20's light half, after tab10 (convnets.visualize.images.TAB10).
_TAB10_LIGHT = np.array([[174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213],
                         [196, 156, 148], [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229]],
                        np.uint8)
DEFAULT_MIN_SCORE = 0.5  # Pictures only: the JSON / mAP keep every detection above the evaluator's threshold.


def class_colour(c: int) -> tuple[int, int, int]:
    """The RGB colour of 0-based class ``c``: distinct for the first 20 classes, then golden-ratio hues."""
    c = int(c)
    if 0 <= c < 10:
        return tuple(int(v) for v in im.TAB10[c])
    if 10 <= c < 20:
        return tuple(int(v) for v in _TAB10_LIGHT[c - 10])
    r, g, b = colorsys.hsv_to_rgb((c * 0.618033988749895) % 1.0, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # A Pillow without FreeType: the fixed bitmap font.
        return ImageFont.load_default()


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box: Sequence[float], colour, width: int, dash: int) -> None:
    x1, y1, x2, y2 = box
    for (ax, ay), (bx, by) in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)),
                               ((x1, y2), (x1, y1))):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for k in range(0, steps, 2):
            t0, t1 = k / steps, min(1.0, (k + 1) / steps)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=colour, width=width)


def draw_boxes(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, class_names: Sequence[str],
               scores: np.ndarray | None = None, *, dashed: bool = False, labels: Sequence[str] | None = None,
               line_width: int | None = None, font_size: int | None = None) -> np.ndarray:
    """``image`` (uint8 HxW, HxWx1 or HxWx3) with labelled boxes drawn on it; returns a new uint8 HxWx3 array.

    ``boxes`` [N, 4] edge boxes (ymin, xmin, ymax, xmax) in the image's pixels, ``classes`` [N] 0-based, ``scores``
    [N] or None. Label: "<class name> <score:.2f>" (or ``labels[i]``) on a box of the class colour, above the box
    when there is room, else inside it. Line width and font size grow with the image (2 px and 11 px at 256 px).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f'draw_boxes expects a uint8 image, got {image.dtype}')
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    pil = Image.fromarray(image).convert('RGB')
    side = min(pil.size)
    line_width = line_width or max(1, round(side / 128))
    font = _font(font_size or max(9, round(side / 24)))
    draw = ImageDraw.Draw(pil)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    for i, (ymin, xmin, ymax, xmax) in enumerate(boxes):
        c = int(classes[i])
        colour = class_colour(c)
        name = class_names[c] if 0 <= c < len(class_names) else str(c)
        text = labels[i] if labels is not None else (name if scores is None else f'{name} {float(scores[i]):.2f}')
        # PIL's rectangle includes both end pixels: edge box [xmin, xmax) covers pixels xmin .. xmax - 1.
        rect = (xmin, ymin, max(xmin, xmax - 1), max(ymin, ymax - 1))
        if dashed:
            _dashed_rectangle(draw, rect, colour, line_width, dash=max(3, 3 * line_width))
        else:
            draw.rectangle(rect, outline=colour, width=line_width)
        if not text:
            continue
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2, bottom - top + 2
        y = ymin - th if ymin - th >= 0 else ymin
        x = min(max(0.0, xmin), max(0.0, pil.size[0] - tw))
        draw.rectangle((x, y, x + tw, y + th), fill=colour)
        ink = (0, 0, 0) if sum(colour) > 380 else (255, 255, 255)
        draw.text((x + 1 - left, y + 1 - top), text, fill=ink, font=font)
    return np.asarray(pil)


def display_image(image: np.ndarray, image_size: Sequence[int] | None = None) -> np.ndarray:
    """A model input (any value range, e.g. value_range(-1, 1)) as uint8 RGB for drawing: cropped to the real
    ``image_size`` (h, w) of a padded canvas, scaled from its own min..max to 0..255."""
    image = np.asarray(image, np.float32)
    if image.ndim == 2:
        image = image[..., None]
    if image_size is not None:
        h, w = (max(1, int(v)) for v in image_size)
        image = image[:h, :w]
    shown = im.as_display(image)
    return np.repeat(shown, 3, axis=-1) if shown.shape[-1] == 1 else shown


class DetectionPictures:
    """The first ``num_images`` test images of an evaluation with their detections (solid, from ``min_score``)
    and ground truth (dashed), written to TensorBoard as ``detections/<name>`` by `write`.

    A detection evaluator's host loop (process 0) calls `add_batch` with each batch of the process and its gathered
    predictions until `wants_more` is False, then `write(step)`. Images smaller than ``min_side`` pixels are
    enlarged by an integer factor so that the labels stay readable.
    """

    def __init__(self, workdir: str, name: str, class_names: Sequence[str], *, num_images: int = 4,
                 min_score: float = DEFAULT_MIN_SCORE, min_side: int = 256):
        self.logdir = os.path.join(workdir, 'tensorboard')
        self.tag = f'detections/{name}'
        self.class_names = list(class_names)
        self.num_images, self.min_score, self.min_side = int(num_images), float(min_score), int(min_side)
        self.pictures: list[np.ndarray] = []

    @property
    def wants_more(self) -> bool:
        return len(self.pictures) < self.num_images

    def add(self, image: np.ndarray, gt_boxes: np.ndarray, gt_classes: np.ndarray, det_boxes: np.ndarray,
            det_classes: np.ndarray, det_scores: np.ndarray, *, image_size: Sequence[int] | None = None,
            gt_difficult: np.ndarray | None = None) -> None:
        """One image (model input, [H, W, C]) with its real gt boxes [G, 4] / classes [G] and its detections
        [D, 4] / [D] / [D] (edge boxes in the input's pixels, 0-based classes)."""
        if not self.wants_more:
            return
        shown = display_image(image, image_size)
        factor = max(1, -(-self.min_side // max(1, min(shown.shape[:2]))))
        shown = im.upsample(shown, factor)
        gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4) * factor
        difficult = np.zeros(len(gt_boxes), bool) if gt_difficult is None else np.asarray(gt_difficult, bool)
        gt_labels = [f'{self._name(c)}{" (difficult)" if d else ""}' for c, d in zip(gt_classes, difficult,
                                                                                        strict=True)]
        shown = draw_boxes(shown, gt_boxes, gt_classes, self.class_names, dashed=True, labels=gt_labels)
        det_scores = np.asarray(det_scores, np.float64).reshape(-1)
        keep = det_scores >= self.min_score
        self.pictures.append(draw_boxes(shown, np.asarray(det_boxes, np.float64).reshape(-1, 4)[keep] * factor,
                                        np.asarray(det_classes).reshape(-1)[keep], self.class_names,
                                        det_scores[keep]))

    def add_batch(self, batch: Mapping[str, np.ndarray], out: Mapping[str, np.ndarray]) -> None:
        """The rows of this process's ``batch`` ('image', optional 'image_size') with the GLOBAL predictions
        ``out`` of the detection evaluator ('mask', 'boxes', 'box_classes', 'box_difficult', 'box_mask',
        'det_boxes', 'det_classes', 'det_scores', 'det_count'). Row i of process 0's batch is row i of the
        gathered global batch (both process splits put process 0's rows first)."""
        images = np.asarray(batch['image'])
        sizes = batch.get('image_size')
        for i in range(min(len(images), len(out['mask']))):
            if not self.wants_more:
                return
            if not out['mask'][i]:
                continue
            gt = np.asarray(out['box_mask'][i]).astype(bool)
            n = int(out['det_count'][i])
            self.add(images[i], out['boxes'][i][gt], out['box_classes'][i][gt], out['det_boxes'][i][:n],
                     out['det_classes'][i][:n], out['det_scores'][i][:n],
                     image_size=None if sizes is None else sizes[i],
                     gt_difficult=np.asarray(out['box_difficult'][i])[gt])

    def _name(self, c) -> str:
        c = int(c)
        return self.class_names[c] if 0 <= c < len(self.class_names) else str(c)

    def write(self, step: Any) -> str | None:
        """Writes the pictures gathered so far as one image summary (all padded to the largest, grey) at ``step``
        (an int or a replicated jax scalar); returns the tag, or None when there is nothing to write."""
        if not self.pictures:
            return None
        import tensorflow as tf  # the event writer of the whole project (convnets.train.progress)

        if hasattr(step, 'addressable_data'):
            step = step.addressable_data(0)
        h = max(p.shape[0] for p in self.pictures)
        w = max(p.shape[1] for p in self.pictures)
        batch = np.full((len(self.pictures), h, w, 3), 128, np.uint8)
        for k, p in enumerate(self.pictures):
            batch[k, :p.shape[0], :p.shape[1]] = p
        writer = tf.summary.create_file_writer(self.logdir)
        with writer.as_default():
            tf.summary.image(self.tag, batch, step=int(np.asarray(step)), max_outputs=len(batch),
                             description=f'Solid: detections scoring >= {self.min_score:.2f} (class, score); '
                                         f'dashed: ground truth.')
        writer.flush()
        writer.close()
        return self.tag
