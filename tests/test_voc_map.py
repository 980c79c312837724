"""VOC mAP (convnets.evaluate.voc_map): hand-computed cases, the devkit's conventions, the devkit results files,
and agreement with an independent, loop-by-loop transcription of the MATLAB devkit (VOCevaldet.m, VOCap.m).

Boxes are (ymin, xmin, ymax, xmax) at pixel edges unless a name says "devkit" (1-based inclusive x1 y1 x2 y2).
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest

from convnets.evaluate import voc_map
from convnets.evaluate.voc_map import VocEvaluator


def _box(x0: float, x1: float, y0: float = 0.0, y1: float = 10.0) -> list[float]:
    """An edge box spanning columns [x0, x1) and rows [y0, y1)."""
    return [y0, x0, y1, x1]


FAR = _box(500, 510)  # overlaps nothing: a false positive wherever it goes


def _one_class(images: dict, method: str = '11point', **kwargs) -> voc_map.VocResult:
    """images: {id: (gt boxes, difficult or None, [(det box, score), ...])}, all of class 0 ('a')."""
    ev = VocEvaluator(['a'], method=method, **kwargs)
    for image_id, (gt, difficult, dets) in images.items():
        ev.add(
            image_id,
            np.array(gt, float).reshape(-1, 4),
            np.zeros(len(gt), int),
            difficult,
            np.array([d[0] for d in dets], float).reshape(-1, 4),
            np.zeros(len(dets), int),
            np.array([d[1] for d in dets], float),
        )
    return ev.result()


# ----------------------------------------------------------------------------- hand-computed cases


def test_known_curve_11point_and_area():
    # 5 positives (g1..g5) in 3 images. Sorted detections: TP(g1) FP TP(g3) FP TP(g5) FP; g2 and g4 are missed.
    #   cum TP     1    1    2    2    3    3
    #   cum FP     0    1    1    2    2    3
    #   recall    .2   .2   .4   .4   .6   .6
    #   precision  1   1/2  2/3  1/2  3/5  1/2
    #   envelope   1   2/3  2/3  3/5  3/5  1/2   (max of the precisions at and after each point)
    # Area (VOC 2010+): recall rises by .2 at points 1, 3, 5: .2 * (1 + 2/3 + 3/5) = .2 * 34/15 = 34/75.
    # 11-point (VOC 2007): best precision at recall >= t: t = 0, .1, .2 -> 1; t = .3, .4 -> 2/3 (point 3 on);
    #   t = .5, .6 -> 3/5 (point 5 on; the devkit's level 0.6 is the double nearest 0.6, so recall 3/5 counts);
    #   t = .7 .. 1 -> 0. AP = (3 + 4/3 + 6/5) / 11 = 83/165.
    g = [_box(0, 10), _box(20, 30), _box(40, 50), _box(60, 70), _box(80, 90)]
    images = {
        # Added out of score order: the evaluator sorts.
        'img1': (g[:2], None, [(FAR, 0.8), (g[0], 0.9)]),
        'img2': (g[2:4], None, [(FAR, 0.4), (_box(41, 50), 0.7)]),
        'img3': (g[4:], None, [(_box(80, 89), 0.5), (FAR, 0.6)]),
    }
    r11 = _one_class(images, '11point')
    area = _one_class(images, 'area')
    np.testing.assert_allclose(r11.recall['a'], [0.2, 0.2, 0.4, 0.4, 0.6, 0.6])
    np.testing.assert_allclose(r11.precision['a'], [1, 1 / 2, 2 / 3, 1 / 2, 3 / 5, 1 / 2])
    np.testing.assert_array_equal(r11.scores['a'], [0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert r11.ap['a'] == pytest.approx(83 / 165, abs=1e-15)
    assert area.ap['a'] == pytest.approx(34 / 75, abs=1e-15)
    assert r11.mean_ap == r11.ap['a'] and area.mean_ap == area.ap['a']
    assert r11.num_positives == {'a': 5} and r11.num_detections == {'a': 6}
    # The same curve through average_precision directly.
    assert voc_map.average_precision(area.recall['a'], area.precision['a'], 'area') == pytest.approx(34 / 75)


def test_11point_levels_are_matlabs_colon():
    # VOCevaldet.m (VOC 2007) loops `for t=0:0.1:1`; MATLAB's 0.3 is 3*0.1 = 0.30000000000000004, so a recall of
    # exactly 3/10 does not reach it. 10 positives, 3 found at precision 1: recall .1 .2 .3 -> levels 0, .1, .2
    # count (3/11), not 0.3. The area method has no levels: 0.3.
    gt = [_box(20 * k, 20 * k + 10) for k in range(10)]
    images = {'img': (gt, None, [(gt[k], 1.0 - k / 10) for k in range(3)])}
    assert _one_class(images, '11point').ap['a'] == pytest.approx(3 / 11, abs=1e-15)
    assert _one_class(images, 'area').ap['a'] == pytest.approx(0.3, abs=1e-15)
    assert voc_map.ELEVEN_POINT_RECALLS[3] == 3 * 0.1 > 0.3
    assert [voc_map.ELEVEN_POINT_RECALLS[k] == k / 10 for k in range(11)].count(False) == 1


def test_difficult_box_is_neither_tp_nor_fp():
    # g1 normal, g2 difficult. Detections: .9 on g2, .8 on g1, .7 on g2 again, .6 far away.
    # Both detections of g2 are ignored (the devkit never marks a difficult box detected), so the curve is
    # TP(g1), FP: precision 1, 1/2 at recall 1, 1 -> AP 1 either way. Had the first been an FP: AP 1/2.
    g1, g2 = _box(0, 10), _box(50, 60)
    images = {'img': ([g1, g2], np.array([False, True]), [(g2, 0.9), (g1, 0.8), (g2, 0.7), (FAR, 0.6)])}
    for method in ('11point', 'area'):
        r = _one_class(images, method)
        assert r.ap['a'] == 1.0
        assert r.num_positives['a'] == 1  # the difficult box is not a positive
        assert r.num_detections['a'] == 4
        np.testing.assert_array_equal(r.precision['a'], [1.0, 0.5])
        np.testing.assert_array_equal(r.scores['a'], [0.8, 0.6])
    # Not difficult: .9 TP(g2), .8 TP(g1), .7 FP duplicate, .6 FP -> still AP 1 but 2 positives, 4 counted.
    plain = _one_class({'img': ([g1, g2], None, images['img'][2])})
    assert plain.num_positives['a'] == 2 and len(plain.precision['a']) == 4


def test_best_box_difficult_means_ignored_even_if_a_normal_box_also_matches():
    # The detection overlaps the difficult box best (IoU 1) and the normal one well (IoU 0.8): VOCevaldet.m takes
    # only the best box, so the detection is ignored and the normal box stays missed (AP 0, nothing counted).
    normal, difficult = _box(0, 10), _box(0, 8)
    r = _one_class({'img': ([normal, difficult], np.array([False, True]), [(_box(0, 8), 0.9)])}, 'area')
    assert r.ap['a'] == 0.0 and len(r.precision['a']) == 0


def test_duplicate_detection_is_a_false_positive():
    # g1, g2. Sorted: .9 TP(g1), .8 FP (g1 again), .7 TP(g2).
    #   recall .5 .5 1; precision 1, 1/2, 2/3; envelope 1, 2/3, 2/3.
    # Area: .5 * 1 + .5 * 2/3 = 5/6. 11-point: levels 0 .. .5 -> 1 (six levels), .6 .. 1 -> 2/3 (five levels):
    # (6 + 10/3) / 11 = 28/33.
    g1, g2 = _box(0, 10), _box(50, 60)
    images = {'img': ([g1, g2], None, [(g1, 0.9), (_box(1, 10), 0.8), (g2, 0.7)])}
    assert _one_class(images, 'area').ap['a'] == pytest.approx(5 / 6, abs=1e-15)
    assert _one_class(images, '11point').ap['a'] == pytest.approx(28 / 33, abs=1e-15)
    np.testing.assert_allclose(_one_class(images).precision['a'], [1, 1 / 2, 2 / 3])


def test_no_fallback_to_the_second_best_box():
    # Two boxes; both detections overlap box A best (IoU 1 and 0.9) and box B with IoU >= 0.5 too. The second is
    # a duplicate of A (FP), not a TP of B: the devkit assigns each detection to its single best box.
    a, b = _box(0, 10), _box(1, 11)  # IoU(a, b) = 9/11
    images = {'img': ([a, b], None, [(a, 0.9), (_box(0, 9), 0.8)])}  # IoU with a: .9, with b: 8/11
    r = _one_class(images, 'area')
    np.testing.assert_allclose(r.recall['a'], [0.5, 0.5])
    assert r.ap['a'] == pytest.approx(0.5)


def test_equal_overlaps_go_to_the_first_box():
    # A detection exactly between two identical boxes matches the first one listed (MATLAB's `if ov>ovmax`), so a
    # second detection of the same spot is a duplicate even though box 2 is free.
    box = _box(0, 10)
    r = _one_class({'img': ([box, box], None, [(box, 0.9), (box, 0.8)])}, 'area')
    np.testing.assert_array_equal(r.recall['a'], [0.5, 0.5])


def test_image_with_no_objects():
    # img2 has no objects: its detection (.9, ranked first) is an FP. Curve: FP, TP -> precision 0, 1/2, recall
    # 0, 1; envelope 1/2, 1/2 -> area 1/2, 11-point 1/2 at every level.
    images = {'img1': ([_box(0, 10)], None, [(_box(0, 10), 0.8)]), 'img2': ([], None, [(_box(0, 10), 0.9)])}
    for method in ('11point', 'area'):
        assert _one_class(images, method).ap['a'] == pytest.approx(0.5, abs=1e-15)
    # An image with no objects and no detections changes nothing.
    images['img3'] = ([], None, [])
    assert _one_class(images, 'area').ap['a'] == pytest.approx(0.5, abs=1e-15)


def test_class_without_ground_truth_is_nan_and_left_out_of_the_mean():
    ev = VocEvaluator(['a', 'b', 'c', 'd'])
    box = np.array([_box(0, 10)])
    # a: one box, found (AP 1). b: detections but no ground truth (NaN). c: only a difficult box (NaN).
    # d: a box, no detection (AP 0, counted in the mean).
    ev.add('i1', np.concatenate([box, box, box]), np.array([0, 2, 3]), np.array([False, True, False]),
           np.concatenate([box, box]), np.array([0, 1]), np.array([0.9, 0.8]))
    r = ev.result()
    assert r.ap['a'] == 1.0 and r.ap['d'] == 0.0
    assert math.isnan(r.ap['b']) and math.isnan(r.ap['c'])
    assert r.mean_ap == 0.5
    assert r.num_positives == {'a': 1, 'b': 0, 'c': 0, 'd': 1}
    assert np.isnan(r.recall['b']).all() and len(r.recall['b']) == 1
    assert r.metrics()['AP/a'] == 1.0 and r.metrics()['mAP'] == 0.5
    # No class with positives at all: the mean is NaN too.
    empty = VocEvaluator(['a'])
    empty.add('i1', np.zeros((0, 4)), np.zeros(0, int), None, box, np.array([0]), np.array([0.5]))
    assert math.isnan(empty.result().mean_ap)


def test_all_detections_on_difficult_boxes():
    # Every detection is ignored: no points, AP 0 with both methods. (MATLAB's VOC 2007 loop would take max() of an
    # all-NaN precision at t = 0 and print NaN; recall 0 is AP 0, as VOCap.m gives.)
    images = {'img': ([_box(0, 10), _box(50, 60)], np.array([True, False]), [(_box(0, 10), 0.9)])}
    for method in ('11point', 'area'):
        assert _one_class(images, method).ap['a'] == 0.0


def test_ties_in_scores_keep_the_order_added():
    # Equal scores: an FP added before a TP ranks first (precision 0 then 1/2 -> AP 1/2); added after it, the TP
    # ranks first (AP 1). MATLAB's sort is stable; the devkit file lists detections in the order added.
    tp, fp = (_box(0, 10), 0.5), (FAR, 0.5)
    fp_first = _one_class({'img': ([_box(0, 10)], None, [fp, tp])}, 'area')
    tp_first = _one_class({'img': ([_box(0, 10)], None, [tp, fp])}, 'area')
    assert fp_first.ap['a'] == 0.5 and tp_first.ap['a'] == 1.0
    # Across images too: image order, then order within an image.
    across = _one_class({'i1': ([], None, [fp]), 'i2': ([_box(0, 10)], None, [tp])}, 'area')
    assert across.ap['a'] == 0.5


# ----------------------------------------------------------------------------- IoU and the pixel convention


def test_iou_threshold_is_inclusive_and_strict_is_optional():
    # Columns [0, 3) vs [1, 4), same rows: intersection 2, union 4 -> IoU exactly 0.5. The devkit's
    # `ovmax>=VOCopts.minoverlap` makes it a TP; py-faster-rcnn's `ovmax > ovthresh` (strict_iou) an FP.
    images = {'img': ([_box(0, 3)], None, [(_box(1, 4), 0.9)])}
    assert voc_map.iou_matrix(np.array([_box(0, 3)]), np.array([_box(1, 4)]))[0, 0] == 0.5
    assert _one_class(images).ap['a'] == 1.0
    assert _one_class(images, strict_iou=True).ap['a'] == 0.0


def test_pixel_offset_changes_a_borderline_iou():
    # Columns [0, 5) vs [2, 7), same rows. Edges (pixel_offset 0): intersection 3, union 7 -> 3/7, an FP.
    # The devkit's +1 taken literally on these numbers: widths 6 and 6, intersection 5 - 2 + 1 = 4 -> 4/8 = 0.5,
    # a TP (and an FP again with the strict comparison).
    gt, det = np.array([_box(0, 5)]), np.array([_box(2, 7)])
    assert voc_map.iou_matrix(gt, det)[0, 0] == pytest.approx(3 / 7)
    assert voc_map.iou_matrix(gt, det, pixel_offset=1.0)[0, 0] == 0.5
    images = {'img': ([_box(0, 5)], None, [(_box(2, 7), 0.9)])}
    assert _one_class(images).ap['a'] == 0.0
    assert _one_class(images, pixel_offset=1.0).ap['a'] == 1.0
    assert _one_class(images, pixel_offset=1.0, strict_iou=True).ap['a'] == 0.0


def test_edges_without_offset_equal_devkit_indices_with_offset():
    # The devkit's x2 - x1 + 1 on 1-based indices is xmax - xmin on edges: the same IoUs, exactly, for integers.
    rng = np.random.default_rng(0)
    a = _random_boxes(rng, 50, integer=True)
    b = _random_boxes(rng, 40, integer=True)
    edges = voc_map.iou_matrix(a, b)
    as_yx = [1, 0, 3, 2]  # (x1, y1, x2, y2) -> (y1, x1, y2, x2), the order iou_matrix reads
    devkit = voc_map.iou_matrix(voc_map.to_devkit_boxes(a)[:, as_yx], voc_map.to_devkit_boxes(b)[:, as_yx],
                                pixel_offset=1.0)
    np.testing.assert_array_equal(edges, devkit)


def test_iou_of_boxes_that_do_not_intersect_is_minus_inf():
    ious = voc_map.iou_matrix(np.array([_box(0, 10), _box(0, 0)]), np.array([_box(10, 20), _box(0, 10)]))
    # Touching boxes and a zero-width box intersect nothing; no NaN from a zero-area union.
    assert ious[0, 0] == -np.inf and ious[1, 0] == -np.inf and ious[1, 1] == -np.inf and ious[0, 1] == 1.0


def test_devkit_box_conversion():
    # Pixel rows 2..5 and columns 0..3 (0-based, inclusive): edges (2, 0, 6, 4); devkit (x1 y1 x2 y2) = (1 3 4 6).
    edges = np.array([[2.0, 0.0, 6.0, 4.0]])
    np.testing.assert_array_equal(voc_map.to_devkit_boxes(edges), [[1, 3, 4, 6]])
    np.testing.assert_array_equal(voc_map.from_devkit_boxes(voc_map.to_devkit_boxes(edges)), edges)


# ----------------------------------------------------------------------------- devkit results files


def test_devkit_file_format(tmp_path):
    ev = VocEvaluator(['a', 'b'])
    ev.add('000005', np.zeros((0, 4)), np.zeros(0, int), None, np.array([[2.0, 0.0, 6.0, 4.0], [0, 0, 1, 1]]),
           np.array([0, 0]), np.array([0.75, 0.5]))
    ev.write_devkit(tmp_path, comp='comp3', image_set='val')
    lines = (tmp_path / 'comp3_det_val_a.txt').read_text().splitlines()
    assert lines == ['000005 0.75 1.0 3.0 4.0 6.0', '000005 0.5 1.0 1.0 1.0 1.0']
    assert (tmp_path / 'comp3_det_val_b.txt').read_text() == ''  # every class gets a file
    ev.write_devkit(tmp_path, digits=1)
    assert (tmp_path / 'comp4_det_test_a.txt').read_text().splitlines()[0] == '000005 0.8 1.0 3.0 4.0 6.0'
    ids, scores, boxes = voc_map.read_devkit_results(tmp_path, ['a'], comp='comp3', image_set='val')['a']
    assert ids == ['000005', '000005']
    np.testing.assert_array_equal(scores, [0.75, 0.5])
    np.testing.assert_array_equal(boxes[0], [2, 0, 6, 4])


def test_devkit_files_bad_input(tmp_path):
    ev = VocEvaluator(['a'])
    ev.add_ground_truth('img1', np.array([_box(0, 10)]), np.array([0]))
    (tmp_path / 'comp4_det_test_a.txt').write_text('img2 0.5 1 1 10 10\n')
    with pytest.raises(ValueError, match="'img2'.*comp4_det_test_a.txt.*no ground truth"):
        ev.add_devkit_results(tmp_path)
    (tmp_path / 'comp4_det_test_a.txt').write_text('img1 0.5 1 1 10\n')
    with pytest.raises(ValueError, match=r'comp4_det_test_a.txt:1: expected'):
        ev.add_devkit_results(tmp_path)
    (tmp_path / 'comp4_det_test_a.txt').write_text('img1 nan 1 1 10 10\n')
    with pytest.raises(ValueError, match='not finite'):
        ev.add_devkit_results(tmp_path)


def test_bad_input_is_an_error():
    ev = VocEvaluator(['a', 'b'])
    box = np.array([_box(0, 10)])
    ev.add_ground_truth('img1', box, np.array([0]))
    with pytest.raises(ValueError, match='already added'):
        ev.add_ground_truth('img1', box, np.array([0]))
    with pytest.raises(ValueError, match='class id 2'):
        ev.add_ground_truth('img2', box, np.array([2]))
    with pytest.raises(ValueError, match='no ground truth'):
        ev.add_detections('img3', box, np.array([0]), np.array([0.5]))
    with pytest.raises(ValueError, match='scores must be finite'):
        ev.add_detections('img1', box, np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match='boxes must be finite'):
        ev.add_detections('img1', np.array([[0, 0, np.inf, 1]]), np.array([0]), np.array([0.5]))
    with pytest.raises(ValueError, match='whitespace'):
        ev.add_ground_truth('img 4', box, np.array([0]))
    with pytest.raises(ValueError, match='method'):
        VocEvaluator(['a'], method='07')
    # Inverted boxes are not an error (the devkit scores them): they match nothing.
    ev.add_detections('img1', np.array([_box(10, 0)]), np.array([0]), np.array([0.5]))
    assert ev.result().ap['a'] == 0.0


# ----------------------------------------------------------------------------- an independent reference


def _matlab_colon(a: float, d: float, b: float) -> list[float]:
    """MATLAB's a:d:b for d > 0: the first half a + k*d, the second half b - (n-k)*d (the documented symmetric
    algorithm of MATLAB's colon operator), n = round((b - a) / d) here since the tests use exact ranges."""
    n = round((b - a) / d)
    return [a + k * d if 2 * k <= n else b - (n - k) * d for k in range(n + 1)]


def _matlab_max(values: list[float]) -> float | None:
    """MATLAB's max of a vector: NaNs are skipped (NaN if all are NaN); None for an empty vector."""
    if not values:
        return None
    real = [v for v in values if not math.isnan(v)]
    return max(real) if real else math.nan


def _reference_voc_eval(gt_recs: dict, det_lines: list, use_07: bool) -> float:
    """A line-by-line transcription of VOCevaldet.m (+ VOCap.m, or the VOC 2007 11-point loop) for one class.

    gt_recs: {image id: (list of devkit boxes [x1, y1, x2, y2], list of difficult flags)} for the whole test set;
    det_lines: [(image id, confidence, [x1, y1, x2, y2]), ...] in file order. 1-based coordinates, +1 widths.
    """
    gtids = list(gt_recs)
    gt = [{'BB': list(gt_recs[i][0]), 'diff': list(gt_recs[i][1]), 'det': [False] * len(gt_recs[i][0])}
          for i in gtids]
    npos = 0
    for g in gt:
        npos += sum(1 for dflag in g['diff'] if not dflag)
    ids = [line[0] for line in det_lines]
    confidence = [line[1] for line in det_lines]
    BB = [line[2] for line in det_lines]
    # [sc,si]=sort(-confidence): MATLAB's sort is stable; so is Python's.
    si = sorted(range(len(confidence)), key=lambda k: -confidence[k])
    ids = [ids[k] for k in si]
    BB = [BB[k] for k in si]
    nd = len(confidence)
    tp = [0.0] * nd
    fp = [0.0] * nd
    for d in range(nd):
        i = gtids.index(ids[d])
        bb = BB[d]
        ovmax = -math.inf
        jmax = None
        for j in range(len(gt[i]['BB'])):
            bbgt = gt[i]['BB'][j]
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1)
                      + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                      - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax = ov
                    jmax = j
        if ovmax >= 0.5:
            if not gt[i]['diff'][jmax]:
                if not gt[i]['det'][jmax]:
                    tp[d] = 1.0
                    gt[i]['det'][jmax] = True
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    # fp=cumsum(fp); tp=cumsum(tp); rec=tp/npos; prec=tp./(fp+tp) -- 0/0 is NaN in MATLAB.
    rec, prec = [], []
    ctp = cfp = 0.0
    for d in range(nd):
        ctp += tp[d]
        cfp += fp[d]
        rec.append(ctp / npos)
        prec.append(ctp / (ctp + cfp) if ctp + cfp else math.nan)
    if use_07:
        ap = 0.0
        for t in _matlab_colon(0, 0.1, 1):
            p = _matlab_max([prec[k] for k in range(nd) if rec[k] >= t])
            if p is None:
                p = 0.0
            ap = ap + p / 11
        return ap
    # VOCap.m
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = _matlab_max([mpre[i], mpre[i + 1]])
    ap = 0.0
    for i in range(1, len(mrec)):
        if mrec[i] != mrec[i - 1]:
            ap += (mrec[i] - mrec[i - 1]) * mpre[i]
    return ap


def _random_boxes(rng, n: int, integer: bool | str) -> np.ndarray:
    """n edge boxes inside 100 x 100 (some tiny, none empty): integer pixel edges, arbitrary floats, or with
    integer='grid' edges on a 10-pixel grid, where IoUs of exactly 0.5 and identical boxes are common."""
    if integer == 'grid':
        y0, x0 = rng.integers(0, 4, (2, n)) * 10
        h, w = rng.integers(1, 3, (2, n)) * 10
        return np.stack([y0, x0, y0 + h, x0 + w], axis=1).astype(float)
    y0, x0 = rng.uniform(0, 90, (2, n))
    h, w = rng.uniform(1, 40, (2, n))
    if integer:
        y0, x0, h, w = np.floor(y0), np.floor(x0), np.floor(h), np.floor(w)
    return np.stack([y0, x0, np.minimum(y0 + h, 100), np.minimum(x0 + w, 100)], axis=1)


def _random_scenes(rng, num_classes: int, integer: bool | str, n_images: int = 25) -> list[dict]:
    """Random images: ground truth (some difficult, some images empty) and detections that are jittered copies of
    the boxes (duplicates included, some with a wrong class) and random boxes; scores rounded to make ties."""
    scenes = []
    for i in range(n_images):
        n = int(rng.integers(0, 5))
        gt = _random_boxes(rng, n, integer)
        classes = rng.integers(0, num_classes, n)
        reps = rng.integers(0, 3, n)
        copies, copy_classes = np.repeat(gt, reps, axis=0), np.repeat(classes, reps)
        if integer == 'grid':
            jitter = rng.integers(-1, 2, copies.shape) * 10 * (rng.random(copies.shape) < 0.3)
        else:
            jitter = rng.normal(0, 3, copies.shape)
        copies = copies + (np.round(jitter) if integer else jitter)
        wrong = rng.random(len(copy_classes)) < 0.1
        copy_classes = np.where(wrong, rng.integers(0, num_classes, len(copy_classes)), copy_classes)
        noise = _random_boxes(rng, int(rng.integers(0, 4)), integer)
        det = np.concatenate([copies, noise])
        det_classes = np.concatenate([copy_classes, rng.integers(0, num_classes, len(noise))])
        order = rng.permutation(len(det))
        scenes.append({
            'id': f'{i:06d}', 'gt': gt, 'classes': classes, 'difficult': rng.random(n) < 0.2,
            'det': det[order], 'det_classes': det_classes[order],
            'scores': np.round(rng.random(len(det)), 1)[order],  # 11 distinct values: many ties
        })
    return scenes


def _evaluator(scenes: list[dict], names, boxes=lambda b: b, **kwargs) -> VocEvaluator:
    ev = VocEvaluator(names, **kwargs)
    for s in scenes:
        ev.add(s['id'], boxes(s['gt']), s['classes'], s['difficult'], boxes(s['det']), s['det_classes'], s['scores'])
    return ev


def _devkit(boxes: np.ndarray) -> list[list[float]]:
    """Edge boxes -> the devkit's [x1, y1, x2, y2], written out here independently of the module."""
    return [[xmin + 1, ymin + 1, xmax, ymax] for ymin, xmin, ymax, xmax in np.asarray(boxes).tolist()]


def _reference(scenes: list[dict], c: int, use_07: bool, det_lines: list | None = None) -> float:
    """The transcription on class c: ground truth as the VOC XML would give it; detections from det_lines (parsed
    from a results file) or straight from the scenes in the order added."""
    recs = {}
    for s in scenes:
        rows = s['classes'] == c
        recs[s['id']] = (_devkit(s['gt'][rows]), s['difficult'][rows].tolist())
    if det_lines is None:
        det_lines = []
        for s in scenes:
            rows = s['det_classes'] == c
            ids = [s['id']] * int(rows.sum())
            det_lines += zip(ids, s['scores'][rows].tolist(), _devkit(s['det'][rows]), strict=True)
    return _reference_voc_eval(recs, det_lines, use_07)


def _read_lines(path) -> list:
    """A results file as textread('%s %f %f %f %f %f') reads it."""
    out = []
    with open(path) as f:
        for line in f:
            s = line.split()
            out.append((s[0], float(s[1]), [float(v) for v in s[2:]]))
    return out


def test_devkit_files_round_trip(tmp_path):
    names = ['cat', 'dog', 'person']
    scenes = _random_scenes(np.random.default_rng(1), len(names), integer=False)
    ev = _evaluator(scenes, names)
    paths = ev.write_devkit(tmp_path)
    assert sorted(os.path.basename(p) for p in paths) == [f'comp4_det_test_{n}.txt' for n in names]
    again = VocEvaluator(names)
    for s in scenes:  # the same ground truth, then the detections from the files
        again.add_ground_truth(s['id'], s['gt'], s['classes'], s['difficult'])
    again.add_devkit_results(tmp_path)
    for method in ('11point', 'area'):
        a, b = ev.result(method), again.result(method)
        assert a.ap == b.ap and a.mean_ap == b.mean_ap  # exact: full-precision numbers, same file order
        for n in names:
            np.testing.assert_array_equal(a.precision[n], b.precision[n])
            np.testing.assert_array_equal(a.recall[n], b.recall[n])


@pytest.mark.parametrize('integer', [True, False, 'grid'], ids=['integer', 'float', 'grid'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_agrees_with_a_transcription_of_the_devkit(tmp_path, seed, integer):
    names = ['a', 'b', 'c']
    scenes = _random_scenes(np.random.default_rng(seed), len(names), integer, n_images=40)
    ev = _evaluator(scenes, names)
    ev.write_devkit(tmp_path)
    # pixel_offset=1 on the devkit's own coordinates (as (y1, x1, y2, x2)) is the devkit's arithmetic exactly.
    literal = _evaluator(scenes, names, boxes=lambda b: np.array(_devkit(b)).reshape(-1, 4)[:, [1, 0, 3, 2]],
                         pixel_offset=1.0)
    checked = 0
    for method, use_07 in (('11point', True), ('area', False)):
        result, literal_result = ev.result(method), literal.result(method)
        for c, name in enumerate(names):
            if result.num_positives[name] == 0 or result.num_detections[name] == 0:
                continue
            from_file = _reference(scenes, c, use_07, _read_lines(tmp_path / f'comp4_det_test_{name}.txt'))
            direct = _reference(scenes, c, use_07)
            assert not math.isnan(direct)
            # Edges with no offset vs the devkit's (x2 - x1 + 1): the same number, up to rounding of non-integers.
            tol = 1e-12 if integer else 1e-9  # integer or 'grid'
            assert result.ap[name] == pytest.approx(direct, abs=tol), (method, name)
            assert result.ap[name] == pytest.approx(from_file, abs=tol), (method, name)
            assert literal_result.ap[name] == pytest.approx(direct, abs=1e-12), (method, name)
            checked += 1
    assert checked >= 4


@pytest.mark.slow
def test_large_evaluation_is_fast():
    # VOC 2007 test scale: 4952 images, 20 classes, ~100 detections per image (Fast R-CNN's cap).
    import time

    rng = np.random.default_rng(0)
    names = [f'c{k}' for k in range(20)]
    ev = VocEvaluator(names)
    start = time.perf_counter()
    for i in range(4952):
        gt = _random_boxes(rng, 3, integer=True)
        det = np.concatenate([gt, _random_boxes(rng, 97, integer=False)])
        ev.add(str(i), gt, rng.integers(0, 20, 3), None, det, rng.integers(0, 20, 100), rng.random(100))
    result = ev.result()
    assert time.perf_counter() - start < 30
    assert 0 < result.mean_ap < 1
