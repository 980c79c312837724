"""Box ops, NMS, matching / sampling and smooth L1 against plain numpy references, and degenerate inputs.

The numpy NMS is the authors' greedy rule (py-faster-rcnn lib/nms/py_cpu_nms.py) with a stable sort, so equal
scores are visited lower index first as ``lax.top_k`` does.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models.detection import boxes, losses, nms, sampling


def np_iou(a, b, offset=0.0):
    out = np.zeros((len(a), len(b)))
    for i, (ay1, ax1, ay2, ax2) in enumerate(a.astype(np.float64)):
        for j, (by1, bx1, by2, bx2) in enumerate(b.astype(np.float64)):
            ih = max(min(ay2, by2) - max(ay1, by1) + offset, 0)
            iw = max(min(ax2, bx2) - max(ax1, bx1) + offset, 0)
            area_a = max(ay2 - ay1 + offset, 0) * max(ax2 - ax1 + offset, 0)
            area_b = max(by2 - by1 + offset, 0) * max(bx2 - bx1 + offset, 0)
            union = area_a + area_b - ih * iw
            out[i, j] = ih * iw / union if union > 0 else 0.0
    return out


def np_nms(b, scores, thresh, max_output, valid=None, top_n=None, classes=None):
    order = [i for i in np.argsort(-scores, kind="stable") if valid is None or valid[i]]
    if top_n is not None:
        order = [i for i in np.argsort(-np.where(valid if valid is not None else True, scores, -np.inf),
                                       kind="stable")[:top_n] if valid is None or valid[i]]
    keep = []
    while order and len(keep) < max_output:
        i = order.pop(0)
        keep.append(i)
        ious = np_iou(b[i : i + 1], b[order])[0] if order else np.zeros(0)
        same = np.ones(len(order), bool) if classes is None else classes[order] == classes[i]
        order = [j for j, o, s in zip(order, ious, same, strict=True) if not (o > thresh and s)]
    return keep


def random_boxes(rng, n, size=100.0, max_side=40.0):
    y1, x1 = rng.uniform(0, size, (2, n))
    h, w = rng.uniform(0, max_side, (2, n))
    return np.stack([y1, x1, y1 + h, x1 + w], 1).astype(np.float32)


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_iou_matrix_matches_numpy_loop_including_degenerate_boxes(offset):
    rng = np.random.default_rng(0)
    a, b = random_boxes(rng, 12), random_boxes(rng, 9)
    a[0] = [5, 5, 5, 5]  # zero area (with offset 0)
    a[1] = b[2]  # identical
    b[0] = [0, 0, 0, 0]
    b[1] = [10, 10, 4, 4]  # inverted
    got = np.asarray(boxes.iou_matrix(jnp.asarray(a), jnp.asarray(b), pixel_offset=offset))
    np.testing.assert_allclose(got, np_iou(a, b, offset), rtol=1e-5, atol=1e-6)
    assert got[1, 2] == pytest.approx(1.0)
    zeros = jnp.zeros((3, 4))
    value, grad = jax.value_and_grad(lambda z: boxes.iou_matrix(z, z).sum())(zeros)
    assert float(value) == 0.0 and np.all(np.isfinite(np.asarray(grad)))


def test_edge_boxes_equal_devkit_boxes_with_offset():
    """Edge boxes with offset 0 give the authors' values on inclusive devkit boxes (x2_edge = x2_devkit + 1)."""
    rng = np.random.default_rng(1)
    devkit_a, devkit_b = np.round(random_boxes(rng, 6)), np.round(random_boxes(rng, 5))
    edge_a, edge_b = devkit_a + [0, 0, 1, 1], devkit_b + [0, 0, 1, 1]
    np.testing.assert_allclose(
        boxes.iou_matrix(edge_a, edge_b), boxes.iou_matrix(devkit_a, devkit_b, pixel_offset=1.0), rtol=1e-6
    )
    np.testing.assert_allclose(
        boxes.encode(edge_a, edge_a[::-1]), boxes.encode(devkit_a, devkit_a[::-1], pixel_offset=1.0), rtol=1e-5
    )


def test_encode_is_rcnn_parametrisation_and_decode_inverts_it():
    rng = np.random.default_rng(2)
    gt, ref = random_boxes(rng, 20) + [0, 0, 1, 1], random_boxes(rng, 20) + [0, 0, 1, 1]
    d = np.asarray(boxes.encode(gt, ref, (10, 10, 5, 5)))
    ph, pw = ref[:, 2] - ref[:, 0], ref[:, 3] - ref[:, 1]
    gh, gw = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    want = np.stack([
        10 * ((gt[:, 0] + gh / 2) - (ref[:, 0] + ph / 2)) / ph,
        10 * ((gt[:, 1] + gw / 2) - (ref[:, 1] + pw / 2)) / pw,
        5 * np.log(gh / ph),
        5 * np.log(gw / pw),
    ], 1)
    np.testing.assert_allclose(d, want, rtol=1e-4, atol=1e-4)
    for offset in (0.0, 1.0):
        round_trip = boxes.decode(boxes.encode(gt, ref, (10, 10, 5, 5), pixel_offset=offset), ref, (10, 10, 5, 5),
                                  pixel_offset=offset)
        np.testing.assert_allclose(np.asarray(round_trip), gt, rtol=1e-5, atol=1e-3)
    # Class-specific deltas [R, K, 4] decode against reference[:, None].
    deltas = rng.normal(size=(20, 3, 4)).astype(np.float32)
    assert boxes.decode(deltas, ref[:, None, :]).shape == (20, 3, 4)


def test_decode_clamps_and_degenerate_inputs_stay_finite():
    ref = jnp.asarray([[0.0, 0.0, 16.0, 16.0], [5.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0]])
    huge = jnp.full((3, 4), 1e4)
    out = np.asarray(boxes.decode(huge, ref))
    assert np.all(np.isfinite(out))
    assert out[0, 2] - out[0, 0] == pytest.approx(1000.0, rel=1e-4)  # 16 * exp(log(1000 / 16))
    np.testing.assert_allclose(out[1], [5, 5, 5, 5])  # a zero-size reference stays a point, no NaN
    unclamped = np.asarray(boxes.decode(jnp.full((1, 4), 1.0), ref[:1], clamp=None))
    assert unclamped[0, 2] - unclamped[0, 0] == pytest.approx(16 * np.e, rel=1e-5)
    targets = boxes.encode(jnp.zeros((3, 4)), ref, (10, 10, 5, 5))  # zero-area targets (padding rows)
    assert np.all(np.isfinite(np.asarray(targets)))


def test_clip_and_remove_small():
    b = jnp.asarray([[-5.0, -5.0, 50.0, 120.0], [200.0, 10.0, 300.0, 20.0], [1.0, 1.0, 2.5, 30.0]])
    np.testing.assert_allclose(boxes.clip(b, 100, 80), [[0, 0, 50, 80], [100, 10, 100, 20], [1, 1, 2.5, 30]])
    np.testing.assert_allclose(boxes.clip(b, 100, 80, pixel_offset=1.0)[0], [0, 0, 50, 79])
    np.testing.assert_array_equal(boxes.remove_small(b, 2.0), [True, True, False])
    np.testing.assert_array_equal(boxes.remove_small(b, 2.0, pixel_offset=1.0), [True, True, True])
    np.testing.assert_array_equal(boxes.remove_small(jnp.full((1, 4), jnp.nan), 0.0), [False])


def _nms_case(rng, n, ties):
    b = random_boxes(rng, n, size=60.0)  # small canvas: many overlaps
    scores = rng.uniform(size=n).astype(np.float32)
    if ties:
        scores = np.round(scores * 4) / 4
        b[1::7] = b[0::7][: len(b[1::7])]  # identical boxes, often with identical scores
    return b, scores


@pytest.mark.parametrize(("n", "thresh", "max_output", "ties"), [(60, 0.3, 100, False), (80, 0.5, 10, True),
                                                                  (50, 0.7, 50, True), (1, 0.5, 4, False)])
def test_nms_matches_numpy_greedy(n, thresh, max_output, ties):
    rng = np.random.default_rng(n)
    b, scores = _nms_case(rng, n, ties)
    valid = rng.uniform(size=n) > 0.2
    fn = jax.jit(nms.nms, static_argnames=("iou_threshold", "max_output", "pre_nms_top_n"))
    for mask in (None, valid):
        idx, count = fn(jnp.asarray(b), jnp.asarray(scores), iou_threshold=thresh, max_output=max_output,
                        valid=None if mask is None else jnp.asarray(mask))
        want = np_nms(b, scores, thresh, max_output, mask)
        assert int(count) == len(want)
        np.testing.assert_array_equal(np.asarray(idx), want + [nms.PAD] * (max_output - len(want)))
    idx, count = fn(jnp.asarray(b), jnp.asarray(scores), iou_threshold=thresh, max_output=max_output,
                    valid=jnp.asarray(valid), pre_nms_top_n=n // 2 + 1)
    want = np_nms(b, scores, thresh, max_output, valid, top_n=n // 2 + 1)
    np.testing.assert_array_equal(np.asarray(idx)[: int(count)], want)


def test_nms_all_masked_nan_scores_and_vmap():
    b = jnp.asarray(random_boxes(np.random.default_rng(5), 8))
    idx, count = nms.nms(b, jnp.ones(8), iou_threshold=0.5, max_output=5, valid=jnp.zeros(8, bool))
    assert int(count) == 0 and np.all(np.asarray(idx) == nms.PAD)
    scores = jnp.asarray([np.nan] * 4 + [0.5] * 4)
    idx, count = nms.nms(b, scores, iou_threshold=1.0, max_output=8)
    np.testing.assert_array_equal(np.asarray(idx), [4, 5, 6, 7] + [nms.PAD] * 4)
    batched = jax.vmap(lambda bb, ss: nms.nms(bb, ss, iou_threshold=0.5, max_output=3))(
        jnp.stack([b, b]), jnp.stack([jnp.arange(8.0), -jnp.arange(8.0)])
    )
    for k, s in enumerate([np.arange(8.0), -np.arange(8.0)]):
        want = np_nms(np.asarray(b), s, 0.5, 3)
        np.testing.assert_array_equal(np.asarray(batched[0][k])[: len(want)], want)


def test_batched_nms_is_per_class_nms():
    rng = np.random.default_rng(6)
    b, scores = _nms_case(rng, 70, ties=True)
    classes = rng.integers(0, 3, 70)
    idx, count = nms.batched_nms(jnp.asarray(b), jnp.asarray(scores), jnp.asarray(classes), iou_threshold=0.4,
                                 max_output=25)
    want = np_nms(b, scores, 0.4, 25, classes=classes)
    assert int(count) == len(want)
    np.testing.assert_array_equal(np.asarray(idx)[: len(want)], want)
    # Equivalently: NMS of each class separately, merged by score and truncated.
    merged = sorted((i for c in range(3) for i in np_nms(b, np.where(classes == c, scores, -np.inf), 0.4, 70,
                                                         valid=classes == c)),
                    key=lambda i: (-scores[i], i))[:25]
    assert sorted(merged) == sorted(want)


def test_detect_follows_fast_rcnn_test_net():
    rng = np.random.default_rng(7)
    r, k = 40, 4
    cls_boxes = np.stack([random_boxes(rng, r, size=50.0) for _ in range(k)], 1)
    scores = rng.dirichlet(np.ones(k), r).astype(np.float32)
    valid = np.arange(r) < 35
    det = jax.jit(lambda b, s, v: nms.detect(b, s, iou_threshold=0.3, max_detections=12, score_threshold=0.05,
                                             valid=v))(jnp.asarray(cls_boxes), jnp.asarray(scores), jnp.asarray(valid))
    found = []
    for j in range(1, k):  # py-faster-rcnn test_net: threshold, per-class NMS 0.3, then the best over all classes
        ok = valid & (scores[:, j] > 0.05)
        for i in np_nms(cls_boxes[:, j], scores[:, j], 0.3, r, valid=ok):
            found.append((scores[i, j], j, i))
    found.sort(key=lambda t: -t[0])
    found = found[:12]
    n = int(det.count)
    assert n == len(found)
    np.testing.assert_allclose(np.asarray(det.scores)[:n], [s for s, _, _ in found])
    np.testing.assert_array_equal(np.asarray(det.classes)[:n], [j for _, j, _ in found])
    np.testing.assert_allclose(np.asarray(det.boxes)[:n], [cls_boxes[i, j] for _, j, i in found])
    assert np.all(np.asarray(det.classes)[n:] == -1) and np.all(np.asarray(det.scores)[n:] == 0)


def test_nms_speed_at_rpn_sizes():
    """Faster R-CNN's train setting (12000 pre-NMS -> 2000) compiles and runs in well under a second on a CPU."""
    import time

    rng = np.random.default_rng(8)
    b = jnp.asarray(random_boxes(rng, 12000, size=1000.0, max_side=300.0))
    s = jnp.asarray(rng.uniform(size=12000).astype(np.float32))
    fn = jax.jit(lambda b, s: nms.nms(b, s, iou_threshold=0.7, max_output=2000, pre_nms_top_n=12000))
    jax.block_until_ready(fn(b, s))
    start = time.perf_counter()
    _, count = jax.block_until_ready(fn(b, s))
    assert time.perf_counter() - start < 5.0 and int(count) > 0


def np_labels(iou, usable, fg, lo, hi):
    m = np.where(usable[None], iou, -1).max(1) if usable.any() else np.zeros(len(iou))
    return np.where(m >= fg, 1, np.where((m >= lo) & (m < hi), 0, -1)), m


def test_match_labels_and_degenerate_images():
    rng = np.random.default_rng(9)
    props, gt = random_boxes(rng, 50, size=60.0), random_boxes(rng, 6, size=60.0)
    mask = np.array([1, 1, 1, 1, 0, 0], bool)
    difficult = np.array([0, 1, 0, 0, 0, 0], bool)
    match = jax.jit(sampling.match, static_argnames=("bg_low", "use_difficult"))
    m = match(jnp.asarray(props), jnp.asarray(gt), jnp.asarray(mask), difficult=jnp.asarray(difficult))
    labels, max_iou = np_labels(np_iou(props, gt), mask & ~difficult, 0.5, 0.1, 0.5)
    np.testing.assert_array_equal(np.asarray(m.labels), labels)
    np.testing.assert_allclose(np.asarray(m.max_iou), max_iou, rtol=1e-5, atol=1e-6)
    assert set(np.asarray(m.gt_index)) <= {0, 2, 3}
    with_difficult = match(props, gt, mask, difficult=difficult, use_difficult=True)
    np.testing.assert_array_equal(np.asarray(with_difficult.labels), np_labels(np_iou(props, gt), mask, .5, .1, .5)[0])
    # No usable gt (none, all padding, all difficult): max IoU 0; R-CNN's bg_low=0 makes all background.
    for g, gm, gd in [(gt[:0], mask[:0], difficult[:0]), (gt, np.zeros(6, bool), difficult), (gt, mask, mask)]:
        fast = match(props, g, gm, difficult=gd)
        rcnn = match(props, g, gm, difficult=gd, bg_low=0.0)
        assert np.all(np.asarray(fast.labels) == sampling.IGNORE) and np.all(np.asarray(rcnn.labels) == 0)
        np.testing.assert_array_equal(np.asarray(rcnn.matched_boxes), props)
        assert np.all(np.asarray(rcnn.max_iou) == 0)


def test_sample_balanced_counts_and_masks():
    rng = np.random.default_rng(10)
    for num_fg, num_bg in [(40, 200), (3, 200), (40, 10), (0, 0), (0, 5), (500, 0)]:
        labels = np.array([1] * num_fg + [0] * num_bg + [-1] * 30)
        rng.shuffle(labels)
        valid = rng.uniform(size=len(labels)) > 0.1
        idx, ok = jax.jit(sampling.sample_balanced, static_argnums=(2, 3))(
            jnp.asarray(labels), jax.random.key(num_fg + num_bg), 64, 0.25, valid=jnp.asarray(valid)
        )
        idx, ok = np.asarray(idx), np.asarray(ok)
        chosen = idx[ok]
        n_fg_avail, n_bg_avail = np.sum((labels == 1) & valid), np.sum((labels == 0) & valid)
        n_fg = min(16, n_fg_avail)
        assert len(set(chosen)) == len(chosen)
        assert np.all(valid[chosen]) and np.all(labels[chosen] >= 0)
        assert np.sum(labels[chosen] == 1) == n_fg
        assert np.sum(labels[chosen] == 0) == min(64 - n_fg, n_bg_avail)
        assert np.all(ok[: len(chosen)]) and np.all(idx[~ok] == sampling.PAD)
        assert np.all(labels[chosen][:n_fg] == 1)  # foreground first


def test_degenerate_images_give_finite_losses_and_gradients():
    """No gt, all difficult, zero-area proposals and gt: the Fast R-CNN box loss and its gradient stay finite."""
    props = jnp.asarray([[0.0, 0.0, 0.0, 0.0], [10.0, 10.0, 10.0, 30.0], [5.0, 5.0, 40.0, 40.0], [5, 5, 40, 40.0]])
    cases = [
        (jnp.zeros((0, 4)), jnp.zeros((0,), bool), None),
        (jnp.zeros((3, 4)), jnp.zeros((3,), bool), None),
        (jnp.asarray([[5.0, 5.0, 40.0, 40.0]]), jnp.ones((1,), bool), jnp.ones((1,), bool)),
        (jnp.asarray([[5.0, 5.0, 40.0, 40.0], [0, 0, 0, 0]]), jnp.asarray([True, True]), None),
    ]

    @jax.jit
    def loss_and_grad(gt, mask, difficult):
        m = sampling.match(props, gt, mask, difficult=difficult, bg_low=0.0)
        targets = jax.lax.stop_gradient(boxes.encode(m.matched_boxes, props, (10, 10, 5, 5)))
        fg = m.labels == 1

        def loss(pred):
            per_roi = losses.smooth_l1(pred - targets).sum(-1)
            return jnp.sum(jnp.where(fg, per_roi, 0.0)) / jnp.maximum(jnp.sum(fg), 1)

        return jax.value_and_grad(loss)(jnp.zeros((4, 4))), targets

    for gt, mask, difficult in cases:
        difficult = jnp.zeros(mask.shape, bool) if difficult is None else difficult
        (value, grad), targets = loss_and_grad(gt, mask, difficult)
        assert np.isfinite(float(value)) and np.all(np.isfinite(np.asarray(grad)))
        assert np.all(np.isfinite(np.asarray(targets)))


def test_smooth_l1():
    x = jnp.asarray([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 2.0])
    np.testing.assert_allclose(losses.smooth_l1(x), [2.5, 0.5, 0.125, 0.0, 0.125, 0.5, 1.5])
    np.testing.assert_allclose(losses.smooth_l1(x, beta=1 / 9), np.where(np.abs(x) < 1 / 9, 4.5 * x**2,
                                                                          np.abs(x) - 0.5 / 9), rtol=1e-6)
    np.testing.assert_allclose(losses.smooth_l1(x, beta=0.0), np.abs(x))
    grad = jax.grad(lambda v: losses.smooth_l1(v).sum())(x)
    np.testing.assert_allclose(grad, [-1, -1, -0.5, 0, 0.5, 1, 1])
