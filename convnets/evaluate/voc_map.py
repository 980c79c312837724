"""PASCAL VOC detection mean average precision, as the VOC devkit computes it (pure numpy).

The reference is the official MATLAB devkit, ``VOCevaldet.m`` (matching and the VOC 2007 11-point AP) and
``VOCap.m`` (the VOC 2010+ area AP); the papers of issue 11 report numbers of that code (R-CNN directly; Fast
R-CNN's ``voc_eval.py`` in py-faster-rcnn prints "use the official MATLAB code for your paper"). What it does, and
where py-faster-rcnn's ``lib/datasets/voc_eval.py`` differs:

* **Matching.** Per class, all detections of the test set are sorted by decreasing score. Ties keep the order in
  which the detections were added (MATLAB's ``sort`` is stable and the devkit reads the results file in order;
  ``voc_eval.py``'s ``np.argsort`` is not stable, so its tie order is unspecified). Each detection is compared with
  every ground-truth box of its class in its image, ``difficult`` ones included, and takes the one of largest IoU
  (the first such box on a tie; boxes that do not intersect are never candidates). Then:
  IoU ``>= iou_threshold`` (0.5, ``VOCopts.minoverlap``) and the box is ``difficult``: the detection is ignored,
  neither TP nor FP (the box is never marked detected, so every detection of it is ignored); IoU ``>=`` threshold,
  not difficult, not yet detected: TP, and the box is now detected; already detected: FP (duplicate) -- the
  detection does NOT fall back to its second-best box; otherwise FP. The devkit compares ``ovmax >= minoverlap``;
  ``voc_eval.py`` uses ``ovmax > ovthresh`` (``strict_iou=True`` reproduces that).
* **Recall** is TP / (number of non-difficult ground-truth boxes of the class); **precision** TP / (TP + FP), both
  cumulative over the sorted detections. Ignored detections leave both unchanged; the devkit still lists them as
  repeated points (or NaN when they come first, which MATLAB's ``max`` skips), which changes no AP, so the curves
  returned here leave them out.
* **AP, VOC 2007** (``method='11point'``, the VOC 2007 devkit's loop): the mean over the 11 recall levels ``t`` of
  MATLAB's ``0:0.1:1`` of the largest precision at recall ``>= t`` (0 where there is none). The levels are MATLAB's
  floating-point values, so a recall of exactly 3/10 does NOT reach the level 0.3 (MATLAB computes it as
  ``3 * 0.1 = 0.30000000000000004``; the second half of the range comes from the far end, ``1 - 4 * 0.1``, and is
  exact). ``voc_eval.py``'s ``np.arange(0, 1.1, 0.1)`` also misses recalls of exactly 0.6 and 0.7.
* **AP, VOC 2010+** (``method='area'``, ``VOCap.m``): the area under the precision envelope (precision made
  monotone by taking the maximum to its right), summed over the points where recall changes.
* **Classes without non-difficult ground truth** have an undefined AP (recall divides by zero; the devkit would
  print NaN or 0 depending on the method): their AP is NaN and the mean AP is over the other classes (NaN if none).
* **Pixel convention.** Boxes are ``(ymin, xmin, ymax, xmax)`` at pixel EDGES, the convention of
  ``convnets.data.ops.boxes`` (width ``xmax - xmin``). The devkit's boxes are 1-based inclusive pixel INDICES
  ``(x1, y1, x2, y2)`` and its widths are ``x2 - x1 + 1``: with ``x1 = xmin + 1, x2 = xmax``
  (:func:`to_devkit_boxes`) that is the same number, so ``pixel_offset=0`` (the default) on edge boxes IS the
  devkit's convention. ``pixel_offset=1`` adds 1 to every width, height and intersection side, the devkit's formula
  taken literally: use it on boxes in index coordinates (the devkit's own, or py-faster-rcnn's 0-based ones).

Degenerate boxes are handled as the devkit does: a box with ``xmax <= xmin`` or ``ymax <= ymin`` intersects
nothing, so a detection like that is an FP and a ground-truth box like that is a positive no detection can match.
Non-finite coordinates or scores are an error.

Typical use, image by image from the detection evaluator::

    evaluator = VocEvaluator(class_names, method='11point')
    for image_id, gt, dets in ...:
        evaluator.add(image_id, gt['boxes'], gt['classes'], gt['difficult'], dets['boxes'], dets['classes'],
                      dets['scores'])
    result = evaluator.result()            # result.ap['dog'], result.mean_ap, result.precision['dog'], ...
    evaluator.write_devkit(directory)      # comp4_det_test_<class>.txt, for any external evaluator

Re-scoring saved detections: add the ground truth with :meth:`VocEvaluator.add_ground_truth`, then
:meth:`VocEvaluator.add_devkit_results`.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterable, Sequence

import numpy as np

from convnets.evaluate.voc_ap import (  # noqa: F401  (the formulas belong to this API too)
    ELEVEN_POINT_RECALLS,
    METHODS,
    Method,
    average_precision,
    check_method,
    iou_matrix,
    overlaps,
)
from convnets.evaluate.voc_devkit import (  # noqa: F401  (the devkit conversions belong to this API too)
    as_boxes,
    as_scores,
    check_token,
    devkit_name,
    from_devkit_boxes,
    read_devkit_results,
    to_devkit_boxes,
    write_devkit_results,
)

# ----------------------------------------------------------------------------- results


@dataclasses.dataclass(frozen=True)
class VocResult:
    """Per-class AP and curves, and their mean.

    ``ap[c]`` is NaN for a class with no non-difficult ground truth; ``mean_ap`` averages the others (NaN if none).
    ``precision[c]``, ``recall[c]``, ``scores[c]``: float64 arrays, one entry per counted (TP or FP) detection of
    the class in order of decreasing score; ``recall[c]`` is NaN-filled when the class has no positives.
    """

    class_names: tuple[str, ...]
    ap: dict[str, float]
    mean_ap: float
    precision: dict[str, np.ndarray]
    recall: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    num_positives: dict[str, int]
    num_detections: dict[str, int]
    method: str
    iou_threshold: float
    pixel_offset: float

    def metrics(self) -> dict[str, float]:
        """Flat numbers for logs and eval_results.json: ``{'mAP': ..., 'AP/<class>': ...}`` (NaN kept as NaN)."""
        out = {'mAP': self.mean_ap}
        out.update({f'AP/{name}': self.ap[name] for name in self.class_names})
        return out


def _mean_ap(aps: Iterable[float]) -> float:
    defined = [a for a in aps if not math.isnan(a)]
    return float(np.mean(defined)) if defined else math.nan


# ----------------------------------------------------------------------------- the evaluator


class VocEvaluator:
    """Accumulates ground truth and detections image by image and scores them as the VOC devkit does.

    Args:
      class_names: the name of each class id (``class_names[k]`` for id ``k``); also the devkit file names.
      method: ``'11point'`` (VOC 2007) or ``'area'`` (VOC 2010+); :meth:`result` can override it.
      iou_threshold: the devkit's ``minoverlap`` (0.5).
      pixel_offset: 0 for edge boxes (which is the devkit's convention, see the module docstring), 1 for the
        devkit's ``+1`` applied to the given coordinates.
      strict_iou: ``IoU > threshold`` as py-faster-rcnn's ``voc_eval.py`` instead of the devkit's ``>=``.

    Images are identified by strings without whitespace (the devkit's image ids, e.g. ``'000001'``). An image's
    ground truth is added once, before its detections; detections may be added in several calls.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        *,
        method: Method = 'area',
        iou_threshold: float = 0.5,
        pixel_offset: float = 0.0,
        strict_iou: bool = False,
    ) -> None:
        self.class_names = tuple(str(c) for c in class_names)
        if not self.class_names:
            raise ValueError('class_names is empty')
        for name in self.class_names:
            check_token(name, 'class name')
        if len(set(self.class_names)) != len(self.class_names):
            raise ValueError(f'class_names has duplicates: {self.class_names}')
        check_method(method)
        if not 0.0 <= float(iou_threshold) <= 1.0:
            raise ValueError(f'iou_threshold must be in [0, 1], got {iou_threshold}')
        if not math.isfinite(float(pixel_offset)) or pixel_offset < 0:
            raise ValueError(f'pixel_offset must be a number >= 0, got {pixel_offset}')
        self.method = method
        self.iou_threshold = float(iou_threshold)
        self.pixel_offset = float(pixel_offset)
        self.strict_iou = bool(strict_iou)
        self._index: dict[str, int] = {}  # image id -> position in self.image_ids
        self.image_ids: list[str] = []
        n = len(self.class_names)
        # Per class, chunks in the order added: (image index [k], edge boxes [k, 4], difficult [k]) ...
        self._gt: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(n)]
        # ... and (image index [k], edge boxes [k, 4], scores [k]).
        self._det: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in range(n)]

    # -- input

    def add(
        self,
        image_id: str,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        gt_difficult: np.ndarray | None,
        det_boxes: np.ndarray,
        det_classes: np.ndarray,
        det_scores: np.ndarray,
    ) -> None:
        """Adds one image: its ground truth (``difficult`` None means none is) and its detections.

        Boxes are edge boxes [N, 4] / [M, 4]; classes int ids [N] / [M]; scores [M]. Pass only real rows (drop
        the padding of ``pad_boxes`` with its ``box_mask`` first). An image with no objects has N = 0; its
        detections are all false positives.
        """
        self.add_ground_truth(image_id, gt_boxes, gt_classes, gt_difficult)
        self.add_detections(image_id, det_boxes, det_classes, det_scores)

    def add_ground_truth(
        self, image_id: str, boxes: np.ndarray, classes: np.ndarray, difficult: np.ndarray | None = None
    ) -> None:
        """Adds the ground truth of a new image (an image of the test set, even with no objects)."""
        check_token(image_id, 'image id')
        if image_id in self._index:
            # VOCevaldet.m: error('multiple image "%s"') -- two records of one image would double its positives.
            raise ValueError(f'image {image_id!r} was already added')
        boxes = as_boxes(boxes, f'ground-truth boxes of image {image_id!r}')
        classes = self._as_classes(classes, len(boxes), f'ground-truth classes of image {image_id!r}')
        if difficult is None:
            difficult = np.zeros(len(boxes), bool)
        difficult = np.asarray(difficult)
        if difficult.shape != (len(boxes),):
            raise ValueError(f'difficult of image {image_id!r} has shape {difficult.shape}, expected ({len(boxes)},)')
        difficult = difficult.astype(bool)
        index = len(self.image_ids)
        self._index[image_id] = index
        self.image_ids.append(image_id)
        for c in np.unique(classes):
            rows = classes == c
            self._gt[c].append((np.full(int(rows.sum()), index, np.int64), boxes[rows], difficult[rows]))

    def add_detections(self, image_id: str, boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> None:
        """Adds detections of an image whose ground truth was added (the devkit rejects unknown image ids)."""
        index = self._image_index(image_id)
        what = f'detections of image {image_id!r}'
        boxes = as_boxes(boxes, what)
        classes = self._as_classes(classes, len(boxes), what)
        scores = as_scores(scores, len(boxes), what)
        for c in np.unique(classes):
            rows = classes == c
            self._det[c].append((np.full(int(rows.sum()), index, np.int64), boxes[rows], scores[rows]))

    def add_devkit_results(self, directory: str | os.PathLike, comp: str = 'comp4', image_set: str = 'test') -> None:
        """Adds the detections of the devkit results files in ``directory`` (see :func:`read_devkit_results`).

        A class whose file is missing has no detections; a line naming an image without ground truth is an error.
        """
        found = read_devkit_results(directory, self.class_names, comp=comp, image_set=image_set)
        for c, name in enumerate(self.class_names):
            ids, scores, boxes = found[name]
            if not ids:
                continue
            index = np.array([self._image_index(i, f'{devkit_name(comp, image_set, name)}') for i in ids], np.int64)
            self._det[c].append((index, boxes, scores))

    # -- output

    def result(self, method: Method | None = None) -> VocResult:
        """Per-class AP, mean AP and curves of everything added so far (``method`` overrides the constructor's)."""
        method = self.method if method is None else method
        check_method(method)
        ap, precision, recall, scores, npos, ndet = {}, {}, {}, {}, {}, {}
        for c, name in enumerate(self.class_names):
            curve = self._class_curve(c)
            npos[name] = curve.num_positives
            ndet[name] = curve.num_detections
            precision[name], recall[name], scores[name] = curve.precision, curve.recall, curve.scores
            ap[name] = average_precision(curve.recall, curve.precision, method) if curve.num_positives else math.nan
        return VocResult(
            class_names=self.class_names,
            ap=ap,
            mean_ap=_mean_ap(ap.values()),
            precision=precision,
            recall=recall,
            scores=scores,
            num_positives=npos,
            num_detections=ndet,
            method=method,
            iou_threshold=self.iou_threshold,
            pixel_offset=self.pixel_offset,
        )

    def write_devkit(
        self, directory: str | os.PathLike, comp: str = 'comp4', image_set: str = 'test', digits: int | None = None
    ) -> list[str]:
        """Writes every detection added in the devkit results format (see :func:`write_devkit_results`)."""
        per_class = {}
        for c, name in enumerate(self.class_names):
            index, boxes, scores = _concat(self._det[c], 'det')
            per_class[name] = ([self.image_ids[i] for i in index], scores, boxes)
        return write_devkit_results(directory, per_class, comp=comp, image_set=image_set, digits=digits)

    # -- internals

    def _image_index(self, image_id: str, source: str = '') -> int:
        try:
            return self._index[image_id]
        except KeyError:
            where = f' (in {source})' if source else ''
            raise ValueError(
                f'detections of image {image_id!r}{where}, which has no ground truth: add_ground_truth first '
                '(VOCevaldet.m: unrecognized image)'
            ) from None

    def _as_classes(self, classes, n: int, what: str) -> np.ndarray:
        classes = np.asarray(classes)
        if classes.shape != (n,):
            raise ValueError(f'{what}: classes have shape {classes.shape}, expected ({n},)')
        if n and not np.issubdtype(classes.dtype, np.integer):
            raise ValueError(f'{what}: class ids must be integers, got {classes.dtype}')
        classes = classes.astype(np.int64)
        bad = (classes < 0) | (classes >= len(self.class_names))
        if bad.any():
            raise ValueError(f'{what}: class id {classes[bad][0]} is not in [0, {len(self.class_names)})')
        return classes

    def _class_curve(self, c: int) -> _Curve:
        """Matching of class ``c`` (VOCevaldet.m), vectorised: see the module docstring for the rules."""
        gt_image, gt_boxes, gt_difficult = _concat(self._gt[c], 'gt')
        det_image, det_boxes, det_scores = _concat(self._det[c], 'det')
        npos = int(np.count_nonzero(~gt_difficult))
        # Decreasing score, ties in the order added (MATLAB's stable sort of -confidence).
        order = np.argsort(-det_scores, kind='stable')
        det_image, det_boxes, det_scores = det_image[order], det_boxes[order], det_scores[order]
        n = len(det_scores)

        # Every (detection, ground-truth box of its image) pair. Ground truth is stored image by image, so the boxes
        # of image i are the slice starts[i] : starts[i] + counts[i].
        counts = np.bincount(gt_image, minlength=len(self.image_ids))
        starts = np.cumsum(counts) - counts
        per_det = counts[det_image]
        pair_det = np.repeat(np.arange(n), per_det)
        rank_in_image = np.arange(per_det.sum()) - np.repeat(np.cumsum(per_det) - per_det, per_det)
        pair_gt = starts[det_image][pair_det] + rank_in_image
        overlap = overlaps(det_boxes[pair_det], gt_boxes[pair_gt], self.pixel_offset)

        # Best box per detection: largest IoU, the first box on a tie (VOCevaldet.m's `if ov>ovmax`).
        ovmax = np.full(n, -np.inf)
        jmax = np.zeros(n, np.int64)
        if len(pair_det):
            by_det = np.lexsort((pair_gt, -overlap, pair_det))
            first = np.unique(pair_det[by_det], return_index=True)[1]
            best = by_det[first]
            ovmax[pair_det[best]] = overlap[best]
            jmax[pair_det[best]] = pair_gt[best]

        hit = ovmax > self.iou_threshold if self.strict_iou else ovmax >= self.iou_threshold
        ignored = hit & gt_difficult[jmax] if len(gt_difficult) else np.zeros(n, bool)
        candidate = np.flatnonzero(hit & ~ignored)
        # A box is detected by the first (highest-scoring) candidate assigned to it; later ones are duplicates.
        tp = np.zeros(n, bool)
        tp[candidate[np.unique(jmax[candidate], return_index=True)[1]]] = True
        counted = ~ignored
        tp = tp[counted]
        tp_cum = np.cumsum(tp, dtype=np.float64)
        fp_cum = np.cumsum(~tp, dtype=np.float64)
        recall = tp_cum / npos if npos else np.full(len(tp), np.nan)
        return _Curve(
            precision=tp_cum / (tp_cum + fp_cum),
            recall=recall,
            scores=det_scores[counted],
            num_positives=npos,
            num_detections=n,
        )


@dataclasses.dataclass(frozen=True)
class _Curve:
    precision: np.ndarray
    recall: np.ndarray
    scores: np.ndarray
    num_positives: int
    num_detections: int


def _concat(chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]], kind: str):
    if not chunks:
        last = np.zeros(0, bool) if kind == 'gt' else np.zeros(0, np.float64)
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float64), last
    return tuple(np.concatenate(parts) for parts in zip(*chunks, strict=True))
