"""Region proposals for R-CNN and Fast R-CNN: selective search "fast mode" and the per-image proposal cache.

R-CNN (Girshick et al. 2014, sec. 2.1 and 2.2) and Fast R-CNN (sec. 4) score ~2000 selective search proposals per
image, computed once per image and cached. Here:

* ``selective_search(image)``: the "fast mode" of R-CNN's ``selective_search/selective_search_boxes.m``
  (rbgirshick/rcnn, from the Selective Search IJCV code) through OpenCV contrib's ximgproc: colour spaces HSV and
  Lab, Felzenszwalb-Huttenlocher segmentations with k = minSize = 50 and 100 (sigma 0.8), two merging strategies
  (colour + texture + size + fill, and texture + size + fill); every region of each hierarchy ranked by its
  level times a random number (the paper's pseudo-random order, OpenCV's ``rank``), then boxes narrower or
  shorter than 20 pixels dropped (``FilterBoxesWidth(boxes, 20)``) and duplicates removed keeping the first
  (``BoxRemoveDuplicates``). On the original image (``op_selective_search_boxes.m`` passes no ``im_width``).
  OpenCV ranks with C's ``rand()``; it is seeded per image here, so a cache is reproducible.
  ``method='opencv_fast'`` is OpenCV's own fast mode (k = 150, 300: fewer, larger regions).
* The cache: one directory per dataset, one pair of files per split, ``<dir>/<dataset>/<split>.npz`` (arrays
  ``filenames`` [N] (the records' 'image/filename'), ``counts`` [N], ``boxes`` [sum(counts), 4] uint16) and
  ``<split>.json`` (the manifest: dataset, split, count, method, max_proposals, boxes per image). Boxes are
  edge boxes (y1, x1, y2, x2) in the pixels of the ORIGINAL image, the convention of ``convnets.data.ops.boxes``.
* ``read_mat(file)``: the authors' published proposal sets (R-CNN's / Fast R-CNN's ``selective_search_data/
  voc_2007_trainval.mat``: cell arrays ``images`` (ids) and ``boxes``, 1-based inclusive (y1, x1, y2, x2) rows, as
  fast-rcnn's ``lib/datasets/pascal_voc.py`` reads them: ``raw_data[i][:, (1, 0, 3, 2)] - 1`` makes 0-based
  (x1, y1, x2, y2)). As edges: (y1 - 1, x1 - 1, y2, x2). Fast R-CNN keeps every box of these files;
  py-faster-rcnn later also drops duplicates and boxes under 2 pixels (``ds_utils.unique_boxes``,
  ``filter_small_boxes``); we keep them all, as Fast R-CNN did.

``python -m convnets.data.make_proposals`` writes caches; the data op ``load_proposals``
(``convnets.data.ops.proposals``) reads them into examples.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import json
import os
import re
from collections.abc import Sequence

import numpy as np

METHODS = ("rcnn_fast", "opencv_fast", "mat")
MIN_BOX_SIDE = 20  # R-CNN's minBoxWidth (selective_search_boxes.m)
_INSTALL = "pip install 'convnets[proposals]'"


class MissingOpenCVError(ImportError):
    """OpenCV's contrib modules are not installed (the message says how to install them)."""


def _cv2():
    try:
        import cv2
        from cv2.ximgproc import segmentation  # noqa: F401  (contrib only)
    except ImportError as e:
        raise MissingOpenCVError(
            f"selective search needs OpenCV with the contrib modules (cv2.ximgproc): {_INSTALL} "
            f"(opencv-contrib-python-headless; a plain opencv-python lacks ximgproc). ({e})"
        ) from None
    return cv2


@functools.cache
def _srand():
    """C's srand, which seeds the rand() OpenCV ranks regions with; None where the C library is not reachable
    (then the ranking, not the set of boxes, varies from run to run)."""
    try:
        return ctypes.CDLL(None).srand
    except (OSError, AttributeError, TypeError):
        return None


def _searcher(cv2, bgr: np.ndarray, method: str):
    seg = cv2.ximgproc.segmentation
    ss = seg.createSelectiveSearchSegmentation()
    ss.setBaseImage(bgr)
    if method == "opencv_fast":
        ss.switchToSelectiveSearchFast()
        return ss
    # R-CNN's fast mode, from OpenCV's building blocks (what switchToSelectiveSearchFast does, with R-CNN's ks).
    ss.clearImages()
    ss.clearGraphSegmentations()
    ss.clearStrategies()
    ss.addImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV))
    ss.addImage(cv2.cvtColor(bgr, cv2.COLOR_BGR2Lab))
    for k in (50, 100):
        ss.addGraphSegmentation(seg.createGraphSegmentation(0.8, float(k), k))
    colour, texture, size, fill = (seg.createSelectiveSearchSegmentationStrategyColor(),
                                   seg.createSelectiveSearchSegmentationStrategyTexture(),
                                   seg.createSelectiveSearchSegmentationStrategySize(),
                                   seg.createSelectiveSearchSegmentationStrategyFill())
    ss.addStrategy(seg.createSelectiveSearchSegmentationStrategyMultiple(colour, texture, size, fill))
    texture2, size2, fill2 = (seg.createSelectiveSearchSegmentationStrategyTexture(),
                              seg.createSelectiveSearchSegmentationStrategySize(),
                              seg.createSelectiveSearchSegmentationStrategyFill())
    ss.addStrategy(seg.createSelectiveSearchSegmentationStrategyMultiple(texture2, size2, fill2))
    return ss


def rects_to_boxes(rects: np.ndarray) -> np.ndarray:
    """OpenCV rects (x, y, w, h), pixels x..x+w-1 -> edge boxes (y1, x1, y2, x2) = (y, x, y + h, x + w), int64."""
    r = np.asarray(rects, np.int64).reshape(-1, 4)
    return np.stack([r[:, 1], r[:, 0], r[:, 1] + r[:, 3], r[:, 0] + r[:, 2]], axis=-1)


def filter_boxes(boxes: np.ndarray, min_side: float = MIN_BOX_SIDE) -> np.ndarray:
    """Drops boxes with a side under ``min_side`` pixels, then duplicates (first kept); order kept."""
    boxes = np.asarray(boxes).reshape(-1, 4)
    boxes = boxes[(boxes[:, 2] - boxes[:, 0] >= min_side) & (boxes[:, 3] - boxes[:, 1] >= min_side)]
    _, first = np.unique(boxes, axis=0, return_index=True)
    return boxes[np.sort(first)]


def selective_search(image: np.ndarray, method: str = "rcnn_fast", seed: int = 0,
                     min_side: float = MIN_BOX_SIDE) -> np.ndarray:
    """Selective search proposals [P, 4] int64 edge boxes (y1, x1, y2, x2) of an RGB uint8 image [H, W, 3], in
    ranked order (see the module docstring). ``seed`` seeds the ranking."""
    if method not in ("rcnn_fast", "opencv_fast"):
        raise ValueError(f"selective_search: method must be 'rcnn_fast' or 'opencv_fast', got {method!r}")
    cv2 = _cv2()
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3) or image.dtype != np.uint8:
        raise ValueError(f"selective_search needs an RGB uint8 image [H, W, 3], got {image.dtype} {image.shape}")
    if image.shape[-1] == 1:
        image = np.repeat(image, 3, axis=-1)
    bgr = np.ascontiguousarray(image[..., ::-1])
    ss = _searcher(cv2, bgr, method)
    if (srand := _srand()) is not None:
        srand(int(seed) & 0xFFFFFFFF)  # OpenCV's region ranking draws from C's rand()
    return filter_boxes(rects_to_boxes(ss.process()), min_side)


# ----------------------------------------------------------------------------- the cache


def slug(name: str) -> str:
    """A dataset or split name as a file name: 'voc/2007' -> 'voc_2007', 'train+validation' kept."""
    return re.sub(r"[^A-Za-z0-9_.+\-]", "_", name)


def whole_split(split: str) -> str:
    """The split a cache is made for: TFDS slices dropped ('train[:10]+validation[:10]' -> 'train+validation'),
    since a cache of the whole split serves any part of it (look-ups are by file name)."""
    return re.sub(r"\[[^\]]*\]", "", split)


def cache_files(directory: str, dataset: str, split: str) -> tuple[str, str]:
    """(npz, manifest json) of the cache of ``dataset`` / ``split`` (slices dropped) under ``directory``."""
    base = os.path.join(directory, slug(dataset), slug(whole_split(split)))
    return base + ".npz", base + ".json"


def make_command(dataset: str, split: str, directory: str) -> str:
    """The command that makes the cache the op looks for."""
    return (f"python -m convnets.data.make_proposals --data={dataset} --split={whole_split(split)} "
            "--data_dir=TFDS_DATA_DIR "
            f"--out={directory or 'DIR'}")


@dataclasses.dataclass
class Cache:
    """The proposals of one split: ``boxes[offsets[i]:offsets[i] + counts[i]]`` belong to ``filenames[i]``."""

    filenames: np.ndarray  # str [N]
    counts: np.ndarray  # int64 [N]
    boxes: np.ndarray  # uint16 [sum(counts), 4]
    manifest: dict

    @property
    def offsets(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def of(self, filename: str) -> np.ndarray:
        """The boxes of one image (ValueError if it is not in the cache)."""
        where = np.flatnonzero(self.filenames == filename)
        if not len(where):
            raise ValueError(f"no proposals for image {filename!r} in the cache of {self.manifest.get('dataset')!r} "
                             f"{self.manifest.get('split')!r}")
        i = int(where[0])
        return self.boxes[self.offsets[i]: self.offsets[i] + self.counts[i]]


def write(directory: str, dataset: str, split: str, filenames: Sequence[str], boxes: Sequence[np.ndarray],
          method: str, max_proposals: int = 0, **extra) -> str:
    """Writes the cache of ``dataset`` / ``split`` (per image edge boxes, at most ``max_proposals`` each when > 0,
    in order); returns the npz path. Duplicate file names or boxes outside uint16 are a ValueError."""
    if len(filenames) != len(boxes):
        raise ValueError(f"{len(filenames)} file names but {len(boxes)} box lists")
    if len(set(filenames)) != len(filenames):
        raise ValueError(f"the image file names of {dataset} {split} are not unique: the cache is keyed by them")
    kept = [np.asarray(b).reshape(-1, 4)[: max_proposals or None] for b in boxes]
    flat = np.concatenate(kept) if kept else np.zeros((0, 4))
    if flat.size and (flat.min() < 0 or flat.max() > np.iinfo(np.uint16).max or np.any(flat != np.round(flat))):
        raise ValueError("proposal boxes must be whole pixel edges in [0, 65535]")
    npz, manifest_file = cache_files(directory, dataset, split)
    os.makedirs(os.path.dirname(npz), exist_ok=True)
    counts = np.array([len(b) for b in kept], np.int64)
    tmp = npz + ".tmp.npz"
    np.savez(tmp, filenames=np.array(list(filenames), dtype=str), counts=counts, boxes=flat.astype(np.uint16))
    os.replace(tmp, npz)  # a half-written cache never has the final name
    manifest = {"dataset": dataset, "split": split, "count": len(kept), "method": method,
                "max_proposals": int(max_proposals), "boxes": "edges (y1, x1, y2, x2) in original image pixels",
                "proposals_per_image": {"mean": float(counts.mean()) if len(counts) else 0.0,
                                        "min": int(counts.min()) if len(counts) else 0,
                                        "max": int(counts.max(initial=0))},
                **extra}
    with open(manifest_file, "w") as f:
        json.dump(manifest, f, indent=1)
    return npz


def _fix(directory: str, dataset: str, split: str) -> str:
    return f"Make it with `{make_command(dataset, split, directory)}` (or --from_mat=FILE for a published set)."


def read(directory: str, dataset: str, split: str) -> Cache:
    """The cache of ``dataset`` / ``split`` in ``directory``; ValueError / FileNotFoundError naming the file and
    the command that makes it when the directory or the files are missing or were made for another dataset/split."""
    if not directory:
        raise ValueError(
            f"no proposal cache directory given for {dataset} {split}: set --config.data.proposals_dir=DIR. "
            + _fix("DIR", dataset, split))
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"the proposal cache directory {directory} does not exist. "
                                + _fix(directory, dataset, split))
    split = whole_split(split)
    npz, manifest_file = cache_files(directory, dataset, split)
    if not os.path.isfile(manifest_file) or not os.path.isfile(npz):
        there = sorted(f for _, _, files in os.walk(directory) for f in files if f.endswith(".json"))
        raise FileNotFoundError(
            f"no proposals for {dataset} split {split!r} in {directory} (expected {npz} and {manifest_file}; "
            f"the directory holds {', '.join(there) or 'no cache'}). " + _fix(directory, dataset, split))
    return _load(npz, manifest_file, os.path.getmtime(npz), dataset, split, directory)


@functools.lru_cache(maxsize=4)
def _load(npz: str, manifest_file: str, mtime: float, dataset: str, split: str, directory: str) -> Cache:
    with open(manifest_file) as f:
        manifest = json.load(f)
    if (manifest.get("dataset"), manifest.get("split")) != (dataset, split):
        raise ValueError(
            f"the proposal cache {manifest_file} was made for {manifest.get('dataset')} split "
            f"{manifest.get('split')!r}, not {dataset} split {split!r}. " + _fix(directory, dataset, split))
    with np.load(npz) as z:
        cache = Cache(z["filenames"], z["counts"].astype(np.int64), z["boxes"], manifest)
    if len(cache.filenames) != manifest.get("count") or int(cache.counts.sum()) != len(cache.boxes):
        raise ValueError(f"the proposal cache {npz} does not match its manifest {manifest_file} (an interrupted "
                         "write?). " + _fix(directory, dataset, split))
    return cache


# ----------------------------------------------------------------------------- published proposal sets


def read_mat(path: str, suffix: str = ".jpg") -> tuple[list[str], list[np.ndarray]]:
    """(file names, edge boxes per image) of an R-CNN / Fast R-CNN ``selective_search_data/*.mat`` file: the
    ids of its ``images`` cell array + ``suffix`` (VOC's records are named '<id>.jpg'), and each ``boxes`` cell,
    1-based inclusive (y1, x1, y2, x2), as edges (y1 - 1, x1 - 1, y2, x2) (see the module docstring)."""
    import scipy.io

    if not os.path.isfile(path):
        raise FileNotFoundError(f"no proposal file {path}")
    try:
        raw = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for a file that is not MATLAB's
        raise ValueError(f"{path} is not a MATLAB .mat file ({type(e).__name__}: {e})") from None
    if "images" not in raw or "boxes" not in raw:
        keys = ", ".join(k for k in raw if not k.startswith("__"))
        raise ValueError(f"{path} has no 'images' and 'boxes' cell arrays (it has {keys}): not a selective search "
                         "proposal file of R-CNN / Fast R-CNN")
    images = [str(np.asarray(i).ravel()[0]) for i in raw["images"].ravel()]
    cells = raw["boxes"].ravel()
    if len(images) != len(cells):
        raise ValueError(f"{path}: {len(images)} images but {len(cells)} box arrays")
    boxes = []
    for name, b in zip(images, cells, strict=True):
        b = np.asarray(b, np.float64).reshape(-1, 4)
        if b.size and b.min() < 1:
            raise ValueError(f"{path}: image {name} has a box coordinate < 1; the file is not 1-based")
        boxes.append(b - np.array([1.0, 1.0, 0.0, 0.0]))
    return [n + suffix for n in images], boxes
