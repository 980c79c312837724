"""The VOC devkit's side of the detection evaluation (pure numpy): its 1-based box convention, its results files
(``<comp>_det_<image_set>_<class>.txt``) and the input checks that keep them readable. Used by
:mod:`convnets.evaluate.voc_map`; see there for the metric itself.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

# ----------------------------------------------------------------------------- box conventions


def to_devkit_boxes(boxes: np.ndarray) -> np.ndarray:
    """Edge boxes ``(ymin, xmin, ymax, xmax)`` -> the devkit's 1-based inclusive ``(x1, y1, x2, y2)``.

    The pixel whose edges are ``[c, c + 1)`` has 0-based index ``c`` and 1-based index ``c + 1``, so a box covering
    the columns ``xmin .. xmax - 1`` has ``x1 = xmin + 1`` and ``x2 = xmax``. These are the numbers of the VOC XML
    annotations (``<xmin>`` is ``x1``) and of the devkit's results files.
    """
    b = as_boxes(boxes, 'boxes')
    return np.stack([b[:, 1] + 1.0, b[:, 0] + 1.0, b[:, 3], b[:, 2]], axis=-1)


def from_devkit_boxes(boxes: np.ndarray) -> np.ndarray:
    """The devkit's 1-based inclusive ``(x1, y1, x2, y2)`` -> edge boxes ``(ymin, xmin, ymax, xmax)`` (the inverse
    of :func:`to_devkit_boxes`; also the conversion of VOC XML ``bndbox`` values)."""
    b = as_boxes(boxes, 'boxes')
    return np.stack([b[:, 1] - 1.0, b[:, 0] - 1.0, b[:, 3], b[:, 2]], axis=-1)


# ----------------------------------------------------------------------------- devkit results files


def devkit_name(comp: str, image_set: str, class_name: str) -> str:
    # VOCinit.m: VOCopts.detrespath = [resdir 'Main/%s_det_' VOCopts.testset '_%s.txt'] with %s = comp id, class.
    return f'{comp}_det_{image_set}_{class_name}.txt'


def write_devkit_results(
    directory: str | os.PathLike,
    detections: Mapping[str, tuple[Sequence[str], np.ndarray, np.ndarray]],
    comp: str = 'comp4',
    image_set: str = 'test',
    digits: int | None = None,
) -> list[str]:
    """Writes one devkit results file per class, ``<comp>_det_<image_set>_<class>.txt``, in ``directory``.

    ``detections[class_name] = (image_ids, scores [K], edge boxes [K, 4])``. Each line is
    ``<image id> <score> <x1> <y1> <x2> <y2>`` in the devkit's 1-based coordinates (:func:`to_devkit_boxes`), the
    format VOCevaldet.m reads (``'%s %f %f %f %f %f'``). Every class gets a file, empty if it has no detections.
    ``digits=None`` writes the shortest decimal that reads back as the same double (re-scoring from the files then
    gives exactly the same AP); an int rounds to that many decimals (py-faster-rcnn writes 3 for scores and 1 for
    coordinates). Returns the paths written (the official evaluator expects them under ``results/VOC2007/Main``).
    """
    os.makedirs(directory, exist_ok=True)
    fmt = repr if digits is None else (lambda v: f'{v:.{int(digits)}f}')
    paths = []
    for name, (ids, scores, boxes) in detections.items():
        check_token(name, 'class name')
        what = f'detections of class {name!r}'
        boxes = to_devkit_boxes(as_boxes(boxes, what))
        scores = as_scores(scores, len(boxes), what)
        if len(ids) != len(boxes):
            raise ValueError(f'{what}: {len(ids)} image ids for {len(boxes)} boxes')
        path = os.path.join(os.fspath(directory), devkit_name(comp, image_set, name))
        with open(path, 'w') as f:
            for image_id, score, box in zip(ids, scores.tolist(), boxes.tolist(), strict=True):
                check_token(image_id, 'image id')
                f.write(' '.join([image_id, fmt(score), *(fmt(v) for v in box)]) + '\n')
        paths.append(path)
    return paths


def read_devkit_results(
    directory: str | os.PathLike, class_names: Sequence[str], comp: str = 'comp4', image_set: str = 'test'
) -> dict[str, tuple[list[str], np.ndarray, np.ndarray]]:
    """Reads the devkit results files of ``class_names`` from ``directory``.

    Returns ``{class_name: (image_ids, scores [K] float64, edge boxes [K, 4] float64)}`` in file order (which
    decides ties); a missing file means no detections. A malformed line is an error naming the file and line.
    """
    out = {}
    for name in class_names:
        path = os.path.join(os.fspath(directory), devkit_name(comp, image_set, name))
        ids, values = [], []
        if os.path.exists(path):
            with open(path) as f:
                for lineno, line in enumerate(f, 1):
                    fields = line.split()
                    if not fields:
                        continue
                    try:
                        if len(fields) != 6:
                            raise ValueError(f'{len(fields)} fields')
                        row = [float(v) for v in fields[1:]]
                        if not all(math.isfinite(v) for v in row):
                            raise ValueError('a value is not finite')
                    except ValueError as e:
                        raise ValueError(
                            f'{path}:{lineno}: expected "<image id> <score> <x1> <y1> <x2> <y2>", got {line.strip()!r} '
                            f'({e})'
                        ) from None
                    ids.append(fields[0])
                    values.append(row)
        table = np.array(values, np.float64).reshape(-1, 5)
        out[name] = (ids, table[:, 0], from_devkit_boxes(table[:, 1:]))
    return out


# ----------------------------------------------------------------------------- input checks


def check_token(value: str, what: str) -> None:
    # Devkit files are whitespace-separated: an id or name with a space could not be read back.
    if not isinstance(value, str) or not value or any(ch.isspace() for ch in value):
        raise ValueError(f'{what} must be a non-empty string without whitespace, got {value!r}')


def as_boxes(boxes, what: str) -> np.ndarray:
    b = np.asarray(boxes, np.float64)
    if b.size == 0:
        return np.zeros((0, 4), np.float64)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f'{what}: boxes must have shape [N, 4], got {b.shape}')
    if not np.isfinite(b).all():
        raise ValueError(f'{what}: boxes must be finite, got {b[~np.isfinite(b).all(axis=1)][0]}')
    return b


def as_scores(scores, n: int, what: str) -> np.ndarray:
    s = np.asarray(scores, np.float64).reshape(-1) if np.size(scores) else np.zeros(0, np.float64)
    if s.shape != (n,):
        raise ValueError(f'{what}: {s.size} scores for {n} boxes')
    if not np.isfinite(s).all():
        raise ValueError(f'{what}: scores must be finite, got {s[~np.isfinite(s)][0]}')
    return s
