"""Faster R-CNN anchors, RPN anchor labels, the 256-anchor minibatch and the eq. 1 loss on hand-made cases.

The 9 reference anchors are py-faster-rcnn's ``generate_anchors()`` output (inclusive ``x1, y1, x2, y2``), the loss
is checked against eq. 1 written out in numpy.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models.detection import anchors as anchor_ops
from convnets.models.detection import rpn_targets

# py-faster-rcnn lib/rpn/generate_anchors.py, generate_anchors() with the defaults (base 16, ratios 0.5/1/2,
# scales 8/16/32): inclusive (x1, y1, x2, y2).
PY_FASTER_RCNN_ANCHORS = np.array(
    [
        [-84, -40, 99, 55],
        [-176, -88, 191, 103],
        [-360, -184, 375, 199],
        [-56, -56, 71, 71],
        [-120, -120, 135, 135],
        [-248, -248, 263, 263],
        [-36, -80, 51, 95],
        [-80, -168, 95, 183],
        [-168, -344, 183, 359],
    ],
    np.float32,
)

# Jitted once per shape and shared by the tests (eager op-by-op dispatch is several times slower on CPU); every
# test below thereby also checks that the functions trace with static shapes.
label_anchors = jax.jit(rpn_targets.label_anchors, static_argnames=('pos_iou', 'neg_iou', 'allowed_border'))
sample_anchors = jax.jit(rpn_targets.sample_anchors, static_argnames=('batch_size', 'fg_fraction'))
rpn_loss = jax.jit(rpn_targets.rpn_loss, static_argnames=('n_cls', 'n_reg', 'lam', 'beta'))
regression_targets = jax.jit(rpn_targets.regression_targets)


def test_base_anchors_equal_py_faster_rcnn():
    np.testing.assert_array_equal(anchor_ops.base_anchors_xyxy_inclusive(), PY_FASTER_RCNN_ANCHORS)
    x1, y1, x2, y2 = PY_FASTER_RCNN_ANCHORS.T
    expected_edges = np.stack([y1, x1, y2 + 1, x2 + 1], axis=1)
    base = anchor_ops.base_anchors()
    assert base.dtype == np.float32
    np.testing.assert_array_equal(base, expected_edges)
    np.testing.assert_array_equal(base[0], [-40, -84, 56, 100])


def test_bad_anchor_arguments_raise():
    with pytest.raises(ValueError, match='positive'):
        anchor_ops.base_anchors(scales=(0, 8))
    with pytest.raises(ValueError, match='non-empty'):
        anchor_ops.grid_anchors(0, 5, 16, anchor_ops.base_anchors())


def test_grid_count_centres_sizes_and_order():
    h, w, stride = 38, 50, 16  # a ~600x800 VGG16 input's conv5
    base = anchor_ops.base_anchors()
    grid = anchor_ops.grid_anchors(h, w, stride, base)
    assert grid.shape == (h * w * 9, 4) == (17_100, 4)
    cells = grid.reshape(h, w, 9, 4)
    cy = (cells[..., 0] + cells[..., 2]) / 2
    cx = (cells[..., 1] + cells[..., 3]) / 2
    # Every anchor is centred on its cell's centre: (y * 16 + 8, x * 16 + 8) at pixel edges.
    np.testing.assert_array_equal(cy, np.broadcast_to((np.arange(h) * stride + 8.0)[:, None, None], cy.shape))
    np.testing.assert_array_equal(cx, np.broadcast_to((np.arange(w) * stride + 8.0)[None, :, None], cx.shape))
    # Shifts outer, anchors inner: row (y * W + x) * 9 + a is base[a] + shift.
    y, x, a = 7, 31, 5
    np.testing.assert_array_equal(grid[(y * w + x) * 9 + a], base[a] + [y * 16, x * 16, y * 16, x * 16])
    heights = cells[..., 2] - cells[..., 0]
    widths = cells[..., 3] - cells[..., 1]
    areas = (heights * widths)[0, 0]
    # Ratio-major order: scales 128, 256, 512 for each ratio; areas within generate_anchors' rounding (< 10%).
    np.testing.assert_allclose(areas, np.tile([128.0**2, 256.0**2, 512.0**2], 3), rtol=0.1)
    np.testing.assert_array_equal(areas[3:6], [128.0**2, 256.0**2, 512.0**2])  # 1:1 is exact
    np.testing.assert_allclose((heights / widths)[0, 0], np.repeat([0.5, 1.0, 2.0], 3), rtol=0.1)


# Image 100 x 100. gt 0 = [0, 0, 30, 30], gt 1 = [60, 60, 70, 70], gt 2 = [0, 60, 40, 100], gt 3 padding.
GT = np.array([[0, 0, 30, 30], [60, 60, 70, 70], [0, 60, 40, 100], [50, 50, 90, 90]], np.float32)
GT_MASK = np.array([True, True, True, False])
ANCHORS = np.array(
    [
        [0, 0, 20, 20],  # 0: IoU 0.444 with gt 0, not its best -> ignored
        [0, 0, 40, 40],  # 1: IoU 0.5625, gt 0's best -> positive below 0.7
        [50, 50, 90, 90],  # 2: IoU 0.0625 with gt 1 -> negative (equals the padding gt row, which must not count)
        [-10, 0, 30, 40],  # 3: IoU 0.5625 with gt 0 but crosses the top border -> ignored
        [60, 60, 80, 70],  # 4: IoU 0.5 with gt 1, tied best -> positive
        [60, 60, 70, 80],  # 5: IoU 0.5 with gt 1, tied best -> positive
        [0, 60, 40, 98],  # 6: IoU 0.95 with gt 2, its best -> positive
        [0, 60, 40, 88],  # 7: IoU exactly 0.7 with gt 2, not its best -> positive (>= as py-faster-rcnn)
    ],
    np.float32,
)


def test_label_anchors_hand_made():
    labels, gt_index = label_anchors(jnp.asarray(ANCHORS), jnp.asarray(GT), jnp.asarray(GT_MASK), 100, 100)
    np.testing.assert_array_equal(labels, [-1, 1, 0, -1, 1, 1, 1, 1])
    np.testing.assert_array_equal(np.asarray(gt_index)[[1, 4, 5, 6, 7]], [0, 1, 1, 2, 2])
    eager_labels, _ = rpn_targets.label_anchors(ANCHORS, GT, GT_MASK, 100, 100)  # jit and eager agree
    np.testing.assert_array_equal(eager_labels, labels)
    # Allowing a 10-pixel border, anchor 3 is inside and ties anchor 1 as gt 0's best: both positive.
    labels, _ = label_anchors(
        jnp.asarray(ANCHORS), jnp.asarray(GT), jnp.asarray(GT_MASK), 100, 100, allowed_border=10
    )
    np.testing.assert_array_equal(labels, [-1, 1, 0, 1, 1, 1, 1, 1])


def test_inside_image_boundary():
    boxes = jnp.array([[0, 0, 100, 120], [0, 0, 100, 121], [0, 0, 101, 120], [-1, 0, 10, 10], [0, -0.5, 10, 10]])
    np.testing.assert_array_equal(rpn_targets.inside_image(boxes, 100, 120), [True, False, False, False, False])
    np.testing.assert_array_equal(rpn_targets.inside_image(boxes, 100, 120, 1), [True, True, True, True, True])


@pytest.mark.parametrize('num_gt', [0, 2])
def test_image_without_gt_gives_negatives_and_finite_loss(num_gt):
    grid = jnp.asarray(anchor_ops.grid_anchors(4, 6, 16, anchor_ops.base_anchors(scales=(1, 2))))
    gt = jnp.full((num_gt, 4), 5.0)
    labels, gt_index = label_anchors(grid, gt, jnp.zeros((num_gt,), bool), 64, 96)
    inside = np.asarray(rpn_targets.inside_image(grid, 64, 96))
    assert inside.any() and not inside.all()
    np.testing.assert_array_equal(labels, np.where(inside, 0, -1))
    np.testing.assert_array_equal(gt_index, 0)
    targets = regression_targets(grid, gt, gt_index)
    assert np.isfinite(np.asarray(targets)).all()
    sampled = sample_anchors(labels, jax.random.key(0), batch_size=16)
    assert (np.asarray(sampled) == 0).sum() == 16 and (np.asarray(sampled) == 1).sum() == 0
    n = grid.shape[0]
    loss = rpn_loss(jnp.zeros((n, 2)), jnp.ones((n, 4)), sampled, targets, n_reg=24)
    assert np.isfinite(float(loss.total))
    np.testing.assert_allclose(float(loss.total), 16 * np.log(2) / 256, rtol=1e-5)
    assert float(loss.reg) == 0.0


@pytest.mark.parametrize('num_pos,num_neg,expect_pos,expect_neg', [(300, 1000, 128, 128), (10, 1000, 10, 246),
                                                                    (5, 20, 5, 20), (400, 50, 128, 50)])
def test_sample_anchors_counts(num_pos, num_neg, expect_pos, expect_neg):
    rng = np.random.default_rng(0)
    ignored = -np.ones(2000 - num_pos - num_neg)  # one length for every case: one compile
    labels = rng.permutation(np.concatenate([np.ones(num_pos), np.zeros(num_neg), ignored]).astype(np.int32))
    sampled = np.asarray(sample_anchors(jnp.asarray(labels), jax.random.key(3)))
    assert sampled.shape == labels.shape
    assert (sampled == 1).sum() == expect_pos and (sampled == 0).sum() == expect_neg
    # A subset of the original labels: kept entries keep their label, ignored stay ignored.
    kept = sampled >= 0
    np.testing.assert_array_equal(sampled[kept], labels[kept])
    assert (sampled[labels == -1] == -1).all()


def test_rpn_loss_matches_eq1_by_hand():
    rng = np.random.default_rng(1)
    n = 7
    logits = rng.normal(size=(n, 2)).astype(np.float32)
    deltas = rng.normal(size=(n, 4)).astype(np.float32) * 2
    targets = rng.normal(size=(n, 4)).astype(np.float32)
    labels = np.array([1, 0, -1, 1, 0, -1, 0], np.int32)

    def np_smooth_l1(x):
        return np.where(np.abs(x) < 1, 0.5 * x * x, np.abs(x) - 0.5)

    log_p = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    sampled = labels >= 0
    l_cls = -log_p[np.arange(n), np.maximum(labels, 0)][sampled].sum()
    l_reg = np_smooth_l1(deltas - targets).sum(1)[labels == 1].sum()
    expected = l_cls / 256 + 10 * l_reg / 2400
    loss = rpn_loss(*map(jnp.asarray, (logits, deltas, labels, targets)), n_reg=2400)
    np.testing.assert_allclose(float(loss.total), expected, rtol=1e-5)
    np.testing.assert_allclose(float(loss.cls), l_cls / 256, rtol=1e-5)
    np.testing.assert_allclose(float(loss.reg), l_reg / 2400, rtol=1e-5)
    # n_cls=None: py-faster-rcnn's mean over the 5 sampled anchors; a sigmoid logit gives the binary log loss.
    loss = rpn_loss(*map(jnp.asarray, (logits, deltas, labels, targets)), n_cls=None, n_reg=1, lam=1)
    np.testing.assert_allclose(float(loss.cls), l_cls / 5, rtol=1e-5)
    z = logits[:, 1] - logits[:, 0]  # a 2-way softmax is a sigmoid of the logit difference
    loss = rpn_loss(*map(jnp.asarray, (z, deltas, labels, targets)), n_reg=2400)
    np.testing.assert_allclose(float(loss.total), expected, rtol=1e-5)


def test_whole_step_under_one_jit_equals_pieces():
    grid = jnp.asarray(anchor_ops.grid_anchors(5, 7, 16, anchor_ops.base_anchors(scales=(2, 4))))
    gt = jnp.array([[10, 20, 60, 90], [0, 0, 0, 0]], jnp.float32)
    gt_mask = jnp.array([True, False])
    n = grid.shape[0]
    logits = jax.random.normal(jax.random.key(1), (n, 2))
    deltas = jax.random.normal(jax.random.key(2), (n, 4))

    def step(logits, deltas, gt, gt_mask, key):
        labels, gt_index = label_anchors(grid, gt, gt_mask, 80, 112)
        sampled = sample_anchors(labels, key, batch_size=32)
        targets = regression_targets(grid, gt, gt_index)
        return sampled, rpn_loss(logits, deltas, sampled, targets, n_reg=35).total

    eager = step(logits, deltas, gt, gt_mask, jax.random.key(4))  # the pieces, each jitted on its own
    jitted = jax.jit(step)(logits, deltas, gt, gt_mask, jax.random.key(4))
    np.testing.assert_array_equal(eager[0], jitted[0])
    np.testing.assert_allclose(float(eager[1]), float(jitted[1]), rtol=1e-5)
    assert (np.asarray(jitted[0]) == 1).sum() >= 1 and np.isfinite(float(jitted[1]))
