"""The 'proposal_recall' evaluator (Faster R-CNN Fig. 4; convnets/evaluate/proposal_recall.py): recall against a
brute-force numpy reference on hand-made boxes (best IoU per gt over the first N proposals, difficult boxes and
padding left out, py-faster-rcnn's greedy one-to-one variant), the pixel conversion of the cache, the plots, and
the evaluator end to end on grid proposals (digit scenes), cached selective search (fake VOC) and an RPN."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from convnets.evaluate import proposal_recall as PR
from convnets.visualize import recall as plots


def _iou(a, b) -> float:
    """IoU of two edge boxes (y1, x1, y2, x2), written out."""
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _reference(props, gt, n) -> list[float]:
    return [max([_iou(p, g) for p in props[:n]], default=0.0) for g in gt]


def _random_boxes(rng, n, size=100.0):
    y, x = rng.uniform(0, size, (2, n))
    h, w = rng.uniform(2, size / 2, (2, n))
    return np.stack([y, x, y + h, x + w], axis=-1)


def test_best_overlaps_are_the_best_iou_among_the_first_n_proposals():
    rng = np.random.default_rng(0)
    props, gt = _random_boxes(rng, 40), _random_boxes(rng, 7)
    ns = [1, 2, 5, 10, 40, 100]  # 100 > P: all proposals
    got = PR.best_overlaps(props, gt, ns)
    assert got.shape == (6, 7)
    for row, n in enumerate(ns):
        np.testing.assert_allclose(got[row], _reference(props, gt, n), rtol=1e-12)
    # Hand-made: gt (0, 0, 10, 10); proposals: half of it (IoU 0.5), disjoint (0), itself (1).
    hand = PR.best_overlaps([[0, 0, 10, 5], [20, 20, 30, 30], [0, 0, 10, 10]], [[0, 0, 10, 10]], [1, 2, 3])
    np.testing.assert_array_equal(hand[:, 0], [0.5, 0.5, 1.0])
    assert PR.best_overlaps(np.zeros((0, 4)), [[0, 0, 10, 10]], [1, 300]).tolist() == [[0.0], [0.0]]


def test_recall_skips_padding_rows_and_difficult_boxes():
    """Image 1: gt A (difficult, covered exactly), gt B covered by an INVALID row only, gt C covered at IoU 0.5 by
    the 2nd valid proposal. Image 2: gt D covered exactly by its first proposal. Non-difficult: B, C, D."""
    curves = PR.RecallCurves([1, 2, 3], max_count=3)
    a, b, c, d = [0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60], [5, 5, 25, 25]
    props = np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 55], [0, 0, 0, 0]], float)
    curves.add(props, [True, False, True, False], np.array([a, b, c, [0, 0, 0, 0]], float), [1, 1, 1, 0],
               [1, 0, 0, 0])
    curves.add(np.array([d, [0, 0, 1, 1], [0, 0, 0, 0]], float), [True, True, False], np.array([d], float), [1],
               [0])
    np.testing.assert_array_equal(curves.overlaps, [[0.0, 0.0, 1.0], [0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])
    assert curves.proposal_counts == [2, 2]
    assert curves.recall(1, 0.5) == pytest.approx(1 / 3) and curves.recall(2, 0.5) == pytest.approx(2 / 3)
    assert curves.recall(2, 0.7) == pytest.approx(1 / 3)
    c = curves.curves([1, 2], PR.IOU_THRESHOLDS, (0.5, 0.7))
    assert c['num_gt'] == 3 and c['num_images'] == 2 and c['proposals_per_image'] == 2.0
    assert c['recall_vs_iou']['2'] == pytest.approx([2 / 3] + [1 / 3] * 9)
    assert c['average_recall']['2'] == pytest.approx((2 / 3 + 9 / 3) / 10)  # imdb.py: ar = recalls.mean()
    assert c['num_proposals'] == [1, 2, 3] and c['recall_vs_proposals']['0.5'] == pytest.approx([1 / 3, 2 / 3, 2 / 3])
    r = PR.results(c, (0.5, 0.7))
    assert r['recall/2@0.5'] == pytest.approx(2 / 3) and r['recall/1@0.7'] == pytest.approx(1 / 3)
    assert r['average_recall/1'] == pytest.approx(1 / 3) and r['num_gt'] == 3


def test_one_to_one_matching_gives_each_proposal_to_one_box():
    """py-faster-rcnn imdb.evaluate_recall: one proposal equal to gt A and overlapping gt B: A takes it; B gets the
    next best free proposal."""
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 12]], float)
    props = np.array([[0, 0, 10, 10], [0, 0, 10, 6]], float)
    best = PR.best_overlaps(props, gt, [1, 2])
    greedy = PR.best_overlaps(props, gt, [1, 2], 'one_to_one')
    np.testing.assert_allclose(best, [[1.0, 10 / 12], [1.0, 10 / 12]])
    np.testing.assert_allclose(greedy, [[1.0, 0.0], [1.0, 0.5]])


def test_proposal_grid_and_whole_pixels():
    assert PR.proposal_grid(2000, (300, 1000, 2000)) == [10, 20, 50, 100, 200, 300, 500, 1000, 2000]
    assert PR.proposal_grid(64, (300,)) == [10, 20, 50, 64, 300]
    # A 600 / 400 = 1.5 resize undone, clipped to the original (400 x 500) image, rounded; empty boxes dropped.
    boxes = np.array([[15.0, 30.0, 601.5, 749.0], [3.0, 3.0, 3.6, 90.0], [0.0, 1.4, 60.0, 61.6]])
    orig, size = PR.original_boxes(boxes, [600.0, 750.0], [1.5, 1.5])
    np.testing.assert_array_equal(size, [400, 500])
    np.testing.assert_allclose(orig[0], [10, 20, 400, 749 / 1.5])
    cache = PR.whole_pixels(orig, size)
    assert cache.dtype == np.uint16
    np.testing.assert_array_equal(cache, [[10, 20, 400, 499], [0, 1, 40, 41]])  # 2nd: 2.0..2.4 rounds empty


def test_plots_draw_every_series(tmp_path):
    curves = {'label': 'RPN', 'iou_thresholds': list(PR.IOU_THRESHOLDS),
              'recall_vs_iou': {'300': list(np.linspace(0.98, 0.1, 10)), '2000': list(np.linspace(1, 0.3, 10))},
              'num_proposals': [10, 100, 1000, 2000],
              'recall_vs_proposals': {'0.5': [0.5, 0.8, 0.95, 0.98], '0.7': [0.3, 0.6, 0.8, 0.85]}}
    other = curves | {'label': 'SS'}
    for fn, name in ((plots.recall_vs_iou, 'iou.png'), (plots.recall_vs_proposals, 'n.png')):
        image = np.asarray(Image.open(fn(str(tmp_path / name), [curves, other])))
        assert image.shape == (plots.HEIGHT + 2 * plots.LEGEND_ROW + 10, plots.WIDTH, 3)  # 4 legend rows, 2 columns
        for colour in plots.COLOURS[:4]:  # 2 series per source, each in its own colour
            assert np.all(image == colour, axis=-1).sum() > 50, colour


def _context(config, workdir: str, nets=None):
    from convnets import parallel
    from convnets.tasks.base import EvalContext

    return EvalContext(config=config, name='recall', mesh=parallel.make_mesh(), nets=nets or {}, workdir=workdir)


def _reference_recall(images, counts, ious) -> dict[str, float]:
    """recall/<N>@<t> from (proposals [P, 4], non-difficult gt [G, 4]) pairs with the written-out IoU."""
    best = {n: [v for props, gt in images for v in _reference(props, gt, n)] for n in counts}
    return {f'recall/{n}@{t:g}': float(np.mean(np.array(best[n]) >= t)) for n in counts for t in ious}


@pytest.mark.slow
def test_grid_proposals_on_digit_scenes(tmp_path, scenes_dir):
    """Source 'grid' on the Fast R-CNN test config: recalls equal the reference on the batches' gt boxes and the
    grid clipped to each image; curves.json and both plots written; the cache holds each image's windows rounded
    to whole pixels, keyed by its file name."""
    from convnets.data import pipeline
    from convnets.data import proposals as P
    from convnets.tasks.detection import grid_proposals
    from experiments import detection
    from tests import helpers

    c = helpers.tiny_fast_rcnn(scenes_dir)
    ev = detection.proposal_recall_eval('grid', write_cache=True)
    ev.counts = (50, 300)
    results = PR.make_evaluator(_context(c, str(tmp_path)), ev)(SimpleNamespace(step=3))
    d = c.detection
    names, images, cached = PR.filenames(c.data), [], {}
    for batch in pipeline.eval_batches(c.data, global_batch_size=8):
        for i in np.flatnonzero(batch['mask']):
            h, w = batch['image_size'][i]
            grid = grid_proposals(*batch['image'].shape[1:3], tuple(d.grid_sizes), tuple(d.grid_ratios),
                                  d.grid_stride).astype(np.float64)
            grid = np.clip(grid, 0, [h, w, h, w])
            grid = grid[(grid[:, 2] - grid[:, 0] >= 1) & (grid[:, 3] - grid[:, 1] >= 1)]
            keep = batch['box_mask'][i].astype(bool) & ~batch['box_difficult'][i].astype(bool)
            images.append((grid, batch['boxes'][i][keep]))
            cached[names[len(images) - 1]] = PR.whole_pixels(grid, (h, w))
    want = _reference_recall(images, (50, 300), (0.5, 0.7))
    assert {k: results[k] for k in want} == pytest.approx(want, abs=1e-12)
    assert results['num_images'] == 32 and results['num_gt'] == sum(len(g) for _, g in images) > 32
    assert results['proposals_per_image'] == pytest.approx(np.mean([len(p) for p, _ in images]))
    assert 0.3 < results['recall/300@0.5'] < 1 and results['recall/300@0.7'] < results['recall/300@0.5']
    directory = tmp_path / 'proposals' / 'recall'
    curves = json.loads((directory / 'curves.json').read_text())
    assert curves['label'] == 'grid windows' and curves['step'] == 3 and curves['num_proposals'][-1] == 640
    assert curves['recall_vs_proposals']['0.5'][curves['num_proposals'].index(300)] == results['recall/300@0.5']
    for png in ('recall_vs_iou.png', 'recall_vs_proposals.png'):
        assert Image.open(directory / png).size == (plots.WIDTH, plots.HEIGHT + 2 * plots.LEGEND_ROW + 10)
    cache = P.read(str(tmp_path / 'proposals'), 'convnets_digit_scenes', 'test')
    assert sorted(cache.filenames) == sorted(cached) and cache.manifest['source'] == 'grid'
    for name, boxes in cached.items():
        np.testing.assert_array_equal(cache.of(name), boxes)


def _voc_gt(split: str) -> dict[str, np.ndarray]:
    """Non-difficult gt edge boxes (y1 - 1, x1 - 1, y2, x2) of the fake VOC's images of `split`, by file name."""
    from tests import fake_voc

    return {f'{i}.jpg': np.array([[y0 - 1, x0 - 1, y1, x1] for _, x0, y0, x1, y1, diff, _ in objects if not diff],
                                 float).reshape(-1, 4)
            for i, (s, _, _, objects) in fake_voc.IMAGES.items() if s in split}


@pytest.mark.slow
def test_selective_search_recall_and_caches_for_the_4_step_scheme(tmp_path, voc_dir, voc_proposals):
    """Source 'batch' on the Fast R-CNN VOC recipe (images resized to 600, 1000x1000 canvas): the recalls are those
    of the selective search cache and VOC's own non-difficult boxes in ORIGINAL pixels; caches written for the
    test split and, with the no-flip spec, the training split equal the first max_proposals boxes of the source
    cache exactly (the resize undone), and a Fast R-CNN config reads them back with load_proposals."""
    from convnets.data import pipeline
    from convnets.data import proposals as P
    from experiments import detection, fast_rcnn_vgg16_voc07

    c = fast_rcnn_vgg16_voc07.get_config()
    c.data.data_dir, c.data.proposals_dir, c.data.max_proposals, c.data.prefetch = voc_dir[0], voc_proposals, 40, 0
    c.eval_batch_size = 8
    out = str(tmp_path / 'rpn_like')
    ev = detection.proposal_recall_eval('batch', write_cache=True)
    ev.counts, ev.cache_dir = (5, 40), out
    results = PR.make_evaluator(_context(c, str(tmp_path)), ev)(SimpleNamespace(step=0))
    source = P.read(voc_proposals, 'voc/2007', 'test')
    gt = _voc_gt('test')
    images = [(source.of(name)[:40].astype(float), boxes) for name, boxes in gt.items()]
    for props, boxes in images:  # no IoU on a threshold: float32 round trips cannot flip a comparison
        for n in (5, 40):
            assert all(min(abs(v - t) for t in (0.5, 0.7)) > 1e-4 for v in _reference(props, boxes, n))
    want = _reference_recall(images, (5, 40), (0.5, 0.7))
    assert {k: results[k] for k in want} == want
    assert results['num_gt'] == 2 and results['num_images'] == 3 and results['recall/40@0.5'] > 0
    written = P.read(out, 'voc/2007', 'test')
    for name in gt:
        np.testing.assert_array_equal(written.of(name), source.of(name)[:40])
    # The training split (stage 1 -> 2 of the 4-step scheme): the eval-style spec of train_split, no flip.
    train = detection.proposal_recall_eval('batch', split=c.data.train_split, write_cache=True,
                                           preprocess=detection.voc_spec(c, 'train_split', flip=False))
    train.cache_dir = out
    results = PR.make_evaluator(_context(c, str(tmp_path)), train)(SimpleNamespace(step=0))
    assert results['num_images'] == 4 and results['num_gt'] == len(np.concatenate(list(_voc_gt('trainval').values())))
    source, written = P.read(voc_proposals, 'voc/2007', 'train+validation'), P.read(out, 'voc/2007', 'train+validation')
    assert sorted(written.filenames) == sorted(_voc_gt('trainval'))
    for name in written.filenames:
        np.testing.assert_array_equal(written.of(name), source.of(name)[:40])
    c.data.proposals_dir = out  # stage 2: a Fast R-CNN on these proposals
    batch = next(pipeline.train_batches(c.data, global_batch_size=4, seed=0))
    assert batch['proposal_mask'].sum() == sum(min(len(written.of(n)), 40) for n in written.filenames)


@pytest.mark.slow
def test_rpn_proposals_at_the_end_of_training_and_in_eval_mode(tmp_path, scenes_dir):
    """Source 'rpn' on the tiny Faster R-CNN after 1 step, with py-faster-rcnn rpn_generate's settings (every
    anchor before NMS, 2000 after): the cache holds exactly the RPN's proposals of each image (rpn_proposals on the
    checkpoint, rounded); --mode=eval (evaluate_checkpoint) gives the same numbers and overlays the first run."""
    import jax

    from convnets.data import pipeline
    from convnets.data import proposals as P
    from convnets.tasks import base
    from convnets.tasks.detection import image_sizes
    from convnets.tasks.faster_rcnn import rpn_proposals
    from convnets.train import loop
    from experiments import detection
    from tests import helpers

    c = helpers.tiny_faster_rcnn(scenes_dir, num_train_steps=1)
    c.evals = {'proposals': detection.proposal_recall_eval('rpn', write_cache=True)}
    workdir = str(tmp_path / 'run')
    results = loop.train_and_evaluate(c, workdir)['proposals']
    assert results['num_images'] == 32 and 0 < results['proposals_per_image'] <= 2000
    assert 0 <= results['recall/300@0.7'] <= results['recall/300@0.5'] <= results['recall/2000@0.5'] <= 1
    cache = P.read(os.path.join(workdir, 'proposals'), 'convnets_digit_scenes', 'test')
    assert cache.manifest['method'] == 'rpn' and cache.manifest['pre_nms_top_n'] == -1
    model = base.build_model(c.model)
    variables = {'params': helpers.final_params(workdir)}
    batch = next(pipeline.eval_batches(c.data, global_batch_size=8))
    p = jax.jit(lambda v, b: rpn_proposals(c, model, v, b['image'], image_sizes(b), pre_nms_top_n=-1,
                                           post_nms_top_n=2000))(variables, batch)
    names = PR.filenames(c.data)
    for i in range(8):
        want = PR.whole_pixels(np.asarray(p.boxes[i])[np.asarray(p.valid[i])], batch['image_size'][i])
        np.testing.assert_array_equal(cache.of(names[i]), want)
    assert int(cache.counts.sum()) == round(results['proposals_per_image'] * 32)
    first = os.path.join(workdir, 'proposals', 'proposals', 'curves.json')
    c.evals.proposals.compare = (first, str(tmp_path / 'missing.json'))  # a missing file is skipped
    c.evals.proposals.write_cache = False
    again = loop.evaluate_checkpoint(c, workdir)['proposals']
    assert {k: v for k, v in again.items() if k != 'seconds'} == {k: v for k, v in results.items() if k != 'seconds'}
