"""The 'proposal_recall' evaluator: the quality of region proposals (Faster R-CNN, Ren et al. 2015, Fig. 4) and
the proposal cache of a split (the 4-step alternating training's hand-over from the RPN to Fast R-CNN).

Recall (py-faster-rcnn lib/datasets/imdb.py `evaluate_recall`, after Hosang et al.): for every ground-truth box,
the best IoU reached by one of the first N proposals of its image (in their ranked order; padding ignored); the
recall at IoU t is the share of ground-truth boxes whose best IoU is >= t. Difficult boxes are left out, as the
paper's VOC evaluation and py-faster-rcnn's roidb (`use_diff` False) do. `matching='one_to_one'` is imdb.py's
greedy variant instead (each proposal covers at most one box: the best-covered box takes its proposal first).
Average recall at N: the mean recall over the IoU thresholds 0.5:0.05:0.95 (imdb.py: `ar = recalls.mean()`), the
area under Fig. 4's curve divided by its width. IoUs are computed on edge boxes in the dataset's ORIGINAL pixels
('image_scale' undone, as the 'detection' evaluator's `original_pixels`).

Sources (`source`):
- 'batch': the batch keys 'proposals' / 'proposal_mask' (a cache read by `load_proposals`, e.g. selective search
  in its ranked order: R-CNN / Fast R-CNN's proposals; `experiments.detection.voc_data` configs);
- 'grid': the fixed windows of `config.detection` (grid_sizes, grid_ratios, grid_stride). They have no ranking:
  only the recall of all of them is meaningful; "the first N" is the first N in the grid's sorted order;
- 'rpn': the network's region proposal network (`convnets.tasks.faster_rcnn.rpn_proposals`) with
  `pre_nms_top_n` / `post_nms_top_n` (-1 / 0: all anchors / config.rpn's test value).

Written by process 0 under `<workdir>/proposals/<evaluator>/`: `recall_vs_iou.png` (one line per count of
`counts`, Fig. 4), `recall_vs_proposals.png` (one line per IoU of `proposal_ious`, N from 10 to all),
`curves.json` (the curves, to overlay runs: the JSON files listed in `compare` are drawn dashed on the same axes).
With `write_cache`, the proposals of every image of the split go to a cache (`convnets.data.proposals.write`,
read back by the op `load_proposals`) in `cache_dir` ('' = `<workdir>/proposals`): in ranked order, in the
original image's pixels, rounded to whole pixels and clipped to the image (boxes that rounding leaves empty are
dropped). py-faster-rcnn's rpn_generate (tools/train_faster_rcnn_alt_opt.py) makes the 4-step scheme's proposals
with the TEST settings and RPN_PRE_NMS_TOP_N = -1 (no pre-NMS cut), RPN_POST_NMS_TOP_N = 2000, on un-flipped
images (flipped copies get the flipped proposals: here `load_proposals` followed by `flip_lr`); the defaults of
`experiments.detection.proposal_recall_eval` are those. For the training split, give `split` and an eval-style
(no flip) `preprocess` of it.

Results: `recall/<N>@<t>` for N in `counts`, t in `proposal_ious`; `average_recall/<N>`; `proposals_per_image`
(mean number of valid proposals); `num_gt` (non-difficult boxes); `num_images`; `seconds`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline
from convnets.data import proposals as proposal_cache
from convnets.evaluate.voc_ap import iou_matrix
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.state import TrainState
from convnets.visualize import recall as plots

SOURCES = ('batch', 'grid', 'rpn')
MATCHING = ('best', 'one_to_one')
LABELS = {'batch': 'cached proposals', 'grid': 'grid windows', 'rpn': 'RPN'}
GT_KEYS = ('boxes', 'box_difficult', 'box_mask')
IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))  # 0.5:0.05:0.95 (Fig. 4, imdb.py)


# ----------------------------------------------------------------------------- recall (numpy)


def proposal_grid(max_count: int, counts: Sequence[int] = ()) -> list[int]:
    """The numbers of proposals the recall is measured at: 10, 20, 50, 100, ... below `max_count`, `max_count`
    itself and every one of `counts`."""
    grid, decade = set(), 10
    while decade < max_count:
        grid |= {m * decade for m in (1, 2, 5) if m * decade < max_count}
        decade *= 10
    return sorted(grid | {int(max_count)} | {int(n) for n in counts})


def best_overlaps(proposals: np.ndarray, gt: np.ndarray, ns: Sequence[int], matching: str = 'best') -> np.ndarray:
    """[len(ns), G]: for every gt box, its IoU with the best of the first n proposals (ranked, [P, 4] edge
    boxes), for each n of `ns` (n > P: all P). 'one_to_one': imdb.py's greedy assignment instead (module
    docstring). Boxes that do not intersect have IoU 0."""
    if matching not in MATCHING:
        raise ValueError(f'matching must be one of {MATCHING}, got {matching!r}')
    proposals, gt = np.asarray(proposals, np.float64).reshape(-1, 4), np.asarray(gt, np.float64).reshape(-1, 4)
    out = np.zeros((len(ns), len(gt)))
    if not len(gt) or not len(proposals):
        return out
    iou = np.maximum(iou_matrix(proposals, gt), 0.0)  # [P, G]; -inf (no intersection) -> 0
    if matching == 'best':  # the running maximum down the ranked list: row n - 1 is the best of the first n
        best = np.maximum.accumulate(iou, axis=0)
        return best[np.clip(np.asarray(ns, np.int64), 1, len(proposals)) - 1]
    for row, n in enumerate(ns):
        out[row] = _greedy(iou[:n])
    return out


def _greedy(iou: np.ndarray) -> np.ndarray:
    """imdb.py evaluate_recall's loop: G times, the gt box best covered by a free proposal takes it."""
    iou = iou.copy()
    out = np.zeros(iou.shape[1])
    for _ in range(iou.shape[1]):
        if not iou.shape[0]:
            break
        cover = iou.max(axis=0)
        g = int(cover.argmax())
        if cover[g] < 0:
            break  # fewer proposals than boxes: the rest stay at 0
        p = int(iou[:, g].argmax())
        out[g] = iou[p, g]
        iou[p, :] = -1
        iou[:, g] = -1
    return out


class RecallCurves:
    """Accumulates, image by image, each non-difficult gt box's best IoU at every n of `ns`."""

    def __init__(self, ns: Sequence[int], matching: str = 'best', max_count: int | None = None):
        if not ns or min(ns) < 1:
            raise ValueError(f'numbers of proposals must be >= 1, got {list(ns)}')
        self.ns, self.matching = [int(n) for n in ns], matching
        self.max_count = int(max_count or max(self.ns))  # the source's proposals per image (the curves' last N)
        self._overlaps: list[np.ndarray] = []
        self.proposal_counts: list[int] = []

    def add(self, proposals: np.ndarray, valid: np.ndarray, gt: np.ndarray, gt_mask: np.ndarray,
            difficult: np.ndarray) -> None:
        """One image: proposals [P, 4] ranked with validity [P] (invalid rows are skipped, order kept), gt boxes
        [G, 4] with their mask and difficult flags [G], all in the same pixels."""
        props = np.asarray(proposals)[np.asarray(valid, bool)]
        keep = np.asarray(gt_mask, bool) & ~np.asarray(difficult, bool)
        self._overlaps.append(best_overlaps(props, np.asarray(gt)[keep], self.ns, self.matching))
        self.proposal_counts.append(len(props))

    @property
    def overlaps(self) -> np.ndarray:
        """[len(ns), total non-difficult gt boxes]."""
        return np.concatenate(self._overlaps, axis=1) if self._overlaps else np.zeros((len(self.ns), 0))

    def recall(self, n: int, threshold: float) -> float:
        """The share of gt boxes covered at IoU >= `threshold` by the first `n` proposals (n must be in ns)."""
        o = self.overlaps[self.ns.index(int(n))]
        return float(np.mean(o >= threshold - 1e-12)) if o.size else 0.0

    def curves(self, counts: Sequence[int], thresholds: Sequence[float], proposal_ious: Sequence[float]
               ) -> dict[str, Any]:
        """Fig. 4's curves and the numbers of the results (see the module docstring)."""
        grid = [n for n in self.ns if n <= self.max_count]
        by_iou = {str(n): [self.recall(n, t) for t in thresholds] for n in counts}
        return {
            'recall': {f'{n}@{t:g}': self.recall(n, t) for n in counts for t in proposal_ious},
            'iou_thresholds': [float(t) for t in thresholds],
            'counts': [int(n) for n in counts],
            'recall_vs_iou': by_iou,
            'average_recall': {k: float(np.mean(v)) if v else 0.0 for k, v in by_iou.items()},
            'num_proposals': grid,
            'recall_vs_proposals': {f'{t:g}': [self.recall(n, t) for n in grid] for t in proposal_ious},
            'num_gt': int(self.overlaps.shape[1]),
            'num_images': len(self.proposal_counts),
            'proposals_per_image': float(np.mean(self.proposal_counts)) if self.proposal_counts else 0.0,
            'matching': self.matching,
        }


def results(curves: dict[str, Any], proposal_ious: Sequence[float]) -> dict[str, float]:
    """The evaluator's numbers from `RecallCurves.curves`."""
    out: dict[str, float] = {}
    for n in curves['counts']:
        for t in proposal_ious:
            out[f'recall/{n}@{t:g}'] = curves['recall'][f'{n}@{t:g}']
        out[f'average_recall/{n}'] = curves['average_recall'][str(n)]
    return out | {k: curves[k] for k in ('proposals_per_image', 'num_gt', 'num_images')}


# ----------------------------------------------------------------------------- pixels and files


def original_boxes(boxes: np.ndarray, size: np.ndarray, scale: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(boxes [P, 4] in the original image's pixels, clipped to it; its (h, w)). `size`: the (h, w) the model saw;
    `scale`: resize_short_capped's (sy, sx) (None: none)."""
    boxes, size = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(size, np.float64)
    if scale is not None:
        s = np.asarray(scale, np.float64)
        boxes, size = boxes / np.tile(s, 2), np.round(size / s)
    h, w = size
    return np.clip(boxes, 0, [h, w, h, w]), size


def whole_pixels(boxes: np.ndarray, size: np.ndarray) -> np.ndarray:
    """uint16 cache rows: rounded to whole pixel edges inside (h, w); boxes left empty dropped, order kept."""
    h, w = np.asarray(size, np.float64)
    b = np.clip(np.round(np.asarray(boxes, np.float64).reshape(-1, 4)), 0, [h, w, h, w])
    return b[(b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])].astype(np.uint16)


def filenames(data: ConfigDict) -> list[str] | None:
    """'image/filename' of every image of data.eval_split in eval-batch (file) order; None if absent."""
    from convnets.data import records

    builder = pipeline.get_builder(data)
    if 'image/filename' not in builder.info.features:
        return None
    raw, _ = records.read(builder, data.eval_split, cache=False)
    return [n.decode() for n in raw.map(lambda x: x['image/filename']).as_numpy_iterator()]


def read_curves(paths: Sequence[str]) -> list[dict[str, Any]]:
    """The curves JSON files of other runs (`compare`); a missing or unreadable one is skipped with a warning,
    so that a typo does not cost the evaluation of a finished run."""
    out = []
    for path in paths:
        try:
            with open(path) as f:
                curves = json.load(f)
            if 'recall_vs_iou' not in curves or 'recall_vs_proposals' not in curves:
                raise ValueError('not a curves.json of the proposal_recall evaluator')
            out.append(curves)
        except (OSError, ValueError) as e:
            logging.warning('proposal_recall: compare file %s skipped (%s)', path, e)
    return out


# ----------------------------------------------------------------------------- the evaluator


def _check(config: ConfigDict, ev: ConfigDict) -> None:
    if ev.source not in SOURCES:
        raise ValueError(f'evals.*.source={ev.source!r}: the proposal_recall evaluator reads one of {SOURCES}.')
    if ev.matching not in MATCHING:
        raise ValueError(f'evals.*.matching={ev.matching!r}: use one of {MATCHING}.')
    needed = ['image', *GT_KEYS] + (['proposals', 'proposal_mask'] if ev.source == 'batch' else [])
    missing = [k for k in needed if k not in config.data.batch_keys]
    if missing:
        raise ValueError(f"the proposal_recall evaluator (source {ev.source!r}) needs data.batch_keys {missing} "
                         "(objects_to_boxes and pad_boxes make the box keys, load_proposals the proposal keys).")
    if ev.source == 'grid' and 'grid_sizes' not in config.get('detection', {}):
        raise ValueError("source 'grid' needs config.detection.grid_sizes / grid_ratios / grid_stride.")
    if ev.source == 'rpn' and config.get('rpn') is None:
        raise ValueError(f"source 'rpn' needs a network with a region proposal network (task 'faster_rcnn'), "
                         f"not task {config.task!r}: use source 'batch' or 'grid'.")
    counts = [int(n) for n in ev.counts]
    if not counts or min(counts) < 1:
        raise ValueError(f'evals.*.counts={tuple(ev.counts)} must be positive numbers of proposals, e.g. '
                         '(300, 1000, 2000).')
    if not ev.iou_thresholds or not all(0 < t <= 1 for t in (*ev.iou_thresholds, *ev.proposal_ious)):
        raise ValueError('evals.*.iou_thresholds / proposal_ious must be IoUs in (0, 1].')


def predict_proposals(config: ConfigDict, ev: ConfigDict, model, variables, batch: dict[str, jax.Array]
                      ) -> tuple[jax.Array, jax.Array]:
    """The ranked proposals [B, P, 4] of `source` and their validity [B, P], in the model's input pixels."""
    from convnets.tasks import detection  # the task module imports the evaluators

    if ev.source in ('batch', 'grid'):
        det = config.detection if 'detection' in config else ConfigDict()
        cfg = ConfigDict({'detection': {'proposals': ev.source, **{k: det[k] for k in
                                                                   ('grid_sizes', 'grid_ratios', 'grid_stride')
                                                                   if k in det}}})
        return detection.proposals(cfg, batch)
    from convnets.tasks.detection import image_sizes
    from convnets.tasks.faster_rcnn import rpn_proposals

    # 0: config.rpn's test setting; pre-NMS <= -1: every anchor (rpn_proposals' "<= 0"), py-faster-rcnn's -1.
    pre = int(ev.pre_nms_top_n) if ev.pre_nms_top_n else int(config.rpn.test_pre_nms_top_n)
    post = int(ev.post_nms_top_n) or int(config.rpn.test_post_nms_top_n)
    p = rpn_proposals(config, model, variables, batch['image'], image_sizes(batch), pre_nms_top_n=pre,
                      post_nms_top_n=post, image_scale=batch.get('image_scale'))
    return p.boxes, p.valid


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the proposal recall evaluator of config entry `ev` (see the module docstring)."""
    config = ctx.config
    _check(config, ev)
    model = ctx.nets.get(ev.net) if ev.source == 'rpn' else None
    batch_size = config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'eval_batch_size')
    data = ConfigDict(config.data.to_dict())
    data.eval_split = ev.split or config.data.eval_split
    if ev.preprocess:
        data.eval_preprocess = ev.preprocess
    names = filenames(data) if ev.write_cache else None
    if ev.write_cache and names is None:
        raise ValueError(f'evals.{ctx.name}.write_cache: the records of {data.name} have no image/filename, which '
                         'a proposal cache is keyed by.')
    counts = [int(n) for n in ev.counts]
    thresholds = [float(t) for t in ev.iou_thresholds]
    ious = [float(t) for t in ev.proposal_ious]

    def predict_step(variables: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        boxes, valid = predict_proposals(config, ev, model, variables, batch)
        from convnets.tasks.detection import image_sizes  # the task module imports the evaluators

        out = {'proposals': boxes.astype(jnp.float32), 'valid': valid, 'size': image_sizes(batch)}
        return out | {k: batch[k] for k in (*GT_KEYS, 'mask', 'image_scale') if k in batch}

    predict = parallel.compile_per_example(predict_step, ctx.mesh)
    shard = parallel.Parallel(ctx.mesh, 'shard_map').shard_batch

    gather = parallel.gather_to_host

    def evaluate(state: TrainState) -> dict[str, float]:
        start = time.time()
        variables = state.nets[ev.net].eval_variables if ev.source == 'rpn' else {}
        curves, cached = None, []
        for local in pipeline.eval_batches(data, global_batch_size=batch_size, process_index=jax.process_index(),
                                           process_count=jax.process_count()):
            out = {k: gather(v) for k, v in predict(variables, shard(local)).items()}
            if curves is None:
                width = out['proposals'].shape[1]  # proposals per image at most
                curves = RecallCurves(proposal_grid(width, counts), ev.matching, width)
            for i in range(out['mask'].shape[0]):
                if not out['mask'][i]:
                    continue  # padding of the last batch
                im = {k: v[i] for k, v in out.items()}
                scale = im.get('image_scale')
                props, size = original_boxes(im['proposals'], im['size'], scale)
                gt, _ = original_boxes(im['boxes'], im['size'], scale)
                curves.add(props, im['valid'], gt, im['box_mask'], im['box_difficult'])
                if ev.write_cache:
                    cached.append(whole_pixels(props[im['valid'].astype(bool)], size))
        curves = curves or RecallCurves([1, *counts], ev.matching)
        c = curves.curves(counts, thresholds, ious)
        c |= {'label': ev.label or LABELS[ev.source], 'source': ev.source, 'split': data.eval_split,
              'step': int(state.step)}
        most = max(curves.proposal_counts, default=0)
        if over := [n for n in counts if n > most]:
            logging.warning('evals.%s: counts %s exceed the %d proposals per image of source %r; their recalls are '
                            'those of all proposals', ctx.name, over, most, ev.source)
        if ctx.workdir and jax.process_index() == 0:
            _write(ctx, ev, c, data, names, cached)
        return {**results(c, ious), 'seconds': time.time() - start}

    return evaluate


def _write(ctx: EvalContext, ev: ConfigDict, c: dict[str, Any], data: ConfigDict, names: list[str] | None,
           cached: list[np.ndarray]) -> None:
    directory = os.path.join(ctx.workdir, 'proposals', ctx.name)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, 'curves.json')
    with open(path, 'w') as f:
        json.dump(c, f, indent=1)
    curves = [c, *read_curves(tuple(ev.compare))]
    plots.recall_vs_iou(os.path.join(directory, 'recall_vs_iou.png'), curves)
    plots.recall_vs_proposals(os.path.join(directory, 'recall_vs_proposals.png'), curves)
    logging.info('evals.%s: proposal recall curves and plots in %s', ctx.name, directory)
    if ev.write_cache:
        if len(cached) != len(names):
            raise ValueError(f'evals.{ctx.name}: {len(cached)} images evaluated but {len(names)} file names in '
                             f'{data.name} {data.eval_split}')
        cache_dir = ev.cache_dir or os.path.join(ctx.workdir, 'proposals')
        npz = proposal_cache.write(cache_dir, data.name, data.eval_split, names, cached, method=ev.source,
                                   max_proposals=0, source=ev.source, evaluated_split=data.eval_split,
                                   step=c['step'], pre_nms_top_n=int(ev.pre_nms_top_n),
                                   post_nms_top_n=int(ev.post_nms_top_n))
        logging.info('evals.%s: proposals of %d images of %s %s written to %s', ctx.name, len(names), data.name,
                     data.eval_split, npz)
