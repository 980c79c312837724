"""The Faster R-CNN proposal layer (convnets/models/detection/proposal_layer.py) against a plain numpy reference."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models.detection import proposal_layer

HEIGHT, WIDTH = 300.0, 400.0


def _numpy_proposals(anchors, scores, deltas, height, width, *, pre, post, iou, min_size, off=0.0):
    """py-faster-rcnn's proposal_layer.forward in numpy with (dy, dx, dh, dw) deltas.

    ``off=0``: the project's edge boxes. ``off=1``: inclusive pixel indices (widths ``x2 - x1 + 1``, clip to
    ``width - 1``), with the far corner at ``centre + size / 2 - 1`` (Detectron; py-faster-rcnn omits the ``- 1``).
    """
    anchors, deltas = anchors.astype(np.float64), deltas.astype(np.float64)
    ah, aw = anchors[:, 2] - anchors[:, 0] + off, anchors[:, 3] - anchors[:, 1] + off
    cy, cx = anchors[:, 0] + 0.5 * ah + deltas[:, 0] * ah, anchors[:, 1] + 0.5 * aw + deltas[:, 1] * aw
    h, w = ah * np.exp(deltas[:, 2]), aw * np.exp(deltas[:, 3])
    boxes = np.stack([cy - 0.5 * h, cx - 0.5 * w, cy + 0.5 * h - off, cx + 0.5 * w - off], axis=1)
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, height - off)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, width - off)
    sides = boxes[:, 2:] - boxes[:, :2] + off
    keep = np.where((sides[:, 0] >= min_size) & (sides[:, 1] >= min_size))[0]
    order = keep[np.argsort(-scores[keep], kind="stable")][:pre]
    kept = []
    for i in order:  # greedy NMS: keep unless a kept box overlaps with IoU > iou
        b = boxes[i]
        ok = True
        for j in kept:
            c = boxes[j]
            ih = max(min(b[2], c[2]) - max(b[0], c[0]) + off, 0.0)
            iw = max(min(b[3], c[3]) - max(b[1], c[1]) + off, 0.0)
            inter = ih * iw
            union = (b[2] - b[0] + off) * (b[3] - b[1] + off) + (c[2] - c[0] + off) * (c[3] - c[1] + off) - inter
            if inter / union > iou:
                ok = False
                break
        if ok:
            kept.append(i)
        if len(kept) == post:
            break
    kept = np.asarray(kept, np.int64)
    return boxes[kept], scores[kept], len(keep)


def _random_inputs(rng, n):
    size = rng.uniform(4.0, 220.0, (n, 2))
    centre = rng.uniform([-40.0, -40.0], [HEIGHT + 40.0, WIDTH + 40.0], (n, 2))  # some cross the border
    anchors = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct: no ties
    deltas = np.concatenate([rng.normal(0, 0.2, (n, 2)), rng.normal(0, 0.4, (n, 2))], axis=1).astype(np.float32)
    return anchors, scores, deltas


@functools.cache
def _jitted(pre, post, iou=0.7, min_size=16.0):
    return jax.jit(
        functools.partial(
            proposal_layer.propose, pre_nms_top_n=pre, post_nms_top_n=post, nms_iou=iou, min_size=min_size
        )
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_proposals_equal_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    anchors, scores, deltas = _random_inputs(rng, 600)
    out = _jitted(300, 50)(anchors, scores, deltas, HEIGHT, WIDTH)
    ref_boxes, ref_scores, n_big = _numpy_proposals(
        anchors, scores, deltas, HEIGHT, WIDTH, pre=300, post=50, iou=0.7, min_size=16.0
    )
    assert 300 < n_big < 600  # the min-size filter and the pre-NMS cut both bite
    count = int(out.valid.sum())
    assert count == len(ref_boxes) == 50
    assert out.boxes.shape == (50, 4) and out.scores.shape == (50,) and out.valid.dtype == jnp.bool_
    np.testing.assert_array_equal(np.asarray(out.scores), ref_scores)
    np.testing.assert_allclose(np.asarray(out.boxes), ref_boxes, atol=1e-3)


def test_inclusive_pixel_convention_equals_numpy_reference():
    """``pixel_offset=1``: py-faster-rcnn's widths (+1), clipping (to width - 1) and min-size test."""
    rng = np.random.default_rng(5)
    anchors, scores, deltas = _random_inputs(rng, 600)
    out = jax.jit(functools.partial(proposal_layer.propose, pre_nms_top_n=300, post_nms_top_n=50, pixel_offset=1.0))(
        anchors, scores, deltas, HEIGHT, WIDTH
    )
    ref_boxes, ref_scores, _ = _numpy_proposals(
        anchors, scores, deltas, HEIGHT, WIDTH, pre=300, post=50, iou=0.7, min_size=16.0, off=1.0
    )
    assert int(out.valid.sum()) == len(ref_boxes) == 50
    np.testing.assert_array_equal(np.asarray(out.scores), ref_scores)
    np.testing.assert_allclose(np.asarray(out.boxes), ref_boxes, atol=1e-3)
    assert float(out.boxes[:, 2].max()) <= HEIGHT - 1 and float(out.boxes[:, 3].max()) <= WIDTH - 1


def test_padding_and_count_when_few_boxes_survive():
    rng = np.random.default_rng(2)
    anchors, scores, deltas = _random_inputs(rng, 600)
    # A large min size leaves fewer survivors than post_nms_top_n: the rest is padding.
    out = _jitted(300, 50, 0.7, 150.0)(anchors, scores, deltas, HEIGHT, WIDTH)
    ref_boxes, ref_scores, _ = _numpy_proposals(
        anchors, scores, deltas, HEIGHT, WIDTH, pre=300, post=50, iou=0.7, min_size=150.0
    )
    count = len(ref_boxes)
    assert 0 < count < 50
    np.testing.assert_array_equal(np.asarray(out.valid), np.arange(50) < count)
    np.testing.assert_array_equal(np.asarray(out.scores[:count]), ref_scores)
    np.testing.assert_allclose(np.asarray(out.boxes[:count]), ref_boxes, atol=1e-3)
    assert np.all(np.asarray(out.boxes[count:]) == 0) and np.all(np.asarray(out.scores[count:]) == 0)


def test_all_invalid_and_degenerate_inputs_give_no_nan():
    n = 64
    tiny = np.tile(np.array([[10.0, 10.0, 12.0, 12.0]], np.float32), (n, 1))  # 2 px: all below min_size
    scores = np.linspace(0, 1, n, dtype=np.float32)
    out = _jitted(32, 8)(tiny, scores, np.zeros((n, 4), np.float32), HEIGHT, WIDTH)
    assert not np.any(np.asarray(out.valid))
    assert np.all(np.isfinite(np.asarray(out.boxes))) and np.all(np.isfinite(np.asarray(out.scores)))
    # Zero-area anchors, huge deltas (clamped before exp), boxes wholly outside the image and NaN scores.
    zero = np.zeros((n, 4), np.float32)
    wild = np.tile(np.array([[0.0, 0.0, 50.0, 50.0]], np.float32), (n, 1))  # exp(50) overflows float32
    nan_scores = scores.copy()
    nan_scores[::2] = np.nan
    for a, d, s in [(zero, zero, scores), (tiny, wild, nan_scores), (tiny + 1000.0, zero, scores)]:
        out = _jitted(32, 8)(a, s, d, HEIGHT, WIDTH)
        assert np.all(np.isfinite(np.asarray(out.boxes))) and np.all(np.isfinite(np.asarray(out.scores)))
        assert np.all(np.asarray(out.boxes)[:, 2] <= HEIGHT) and np.all(np.asarray(out.boxes)[:, 3] <= WIDTH)
    # dh, dw clamped at log(1000/16): the 2 px anchors (centre 11) grow to 125 px, clipped at 0; all coincide, so
    # one valid proposal, the best non-NaN score.
    out = _jitted(32, 8)(tiny, nan_scores, wild, HEIGHT, WIDTH)
    assert int(out.valid.sum()) == 1 and float(out.scores[0]) == np.nanmax(nan_scores)
    np.testing.assert_allclose(np.asarray(out.boxes[0]), [0, 0, 73.5, 73.5], rtol=1e-5)


def test_propose_batch_matches_per_image_and_image_sizes():
    rng = np.random.default_rng(3)
    anchors, s0, d0 = _random_inputs(rng, 600)
    _, s1, d1 = _random_inputs(rng, 600)
    heights, widths = np.array([HEIGHT, 200.0], np.float32), np.array([WIDTH, 250.0], np.float32)
    batch = jax.jit(functools.partial(proposal_layer.propose_batch, pre_nms_top_n=300, post_nms_top_n=50))(
        anchors, np.stack([s0, s1]), np.stack([d0, d1]), heights, widths
    )
    assert batch.boxes.shape == (2, 50, 4) and batch.valid.shape == (2, 50)
    for b, (s, d) in enumerate([(s0, d0), (s1, d1)]):
        one = _jitted(300, 50)(anchors, s, d, heights[b], widths[b])
        np.testing.assert_array_equal(np.asarray(batch.boxes[b]), np.asarray(one.boxes))
        np.testing.assert_array_equal(np.asarray(batch.valid[b]), np.asarray(one.valid))
    assert float(batch.boxes[1, :, 2].max()) <= 200.0 and float(batch.boxes[1, :, 3].max()) <= 250.0


def test_no_gradient_into_proposal_coordinates():
    """Approximate joint training (sec. 3.2): the proposal coordinates are constants for the detector's loss."""
    rng = np.random.default_rng(4)
    anchors, scores, deltas = _random_inputs(rng, 200)

    def loss(d, s):
        out = proposal_layer.propose(anchors, s, d, HEIGHT, WIDTH, pre_nms_top_n=100, post_nms_top_n=20)
        return jnp.sum(out.boxes * out.valid[:, None]) + jnp.sum(out.scores)

    value, (g_deltas, g_scores) = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(deltas, scores)
    assert float(value) > 0
    assert np.all(np.asarray(g_deltas) == 0) and np.all(np.asarray(g_scores) == 0)


def test_bad_shapes_raise():
    a = np.zeros((10, 4), np.float32)
    with pytest.raises(ValueError, match="scores must be"):
        proposal_layer.propose(a, np.zeros((10, 2)), np.zeros((10, 4)), HEIGHT, WIDTH)
    with pytest.raises(ValueError, match="deltas must be"):
        proposal_layer.propose(a, np.zeros((10,)), np.zeros((10, 8)), HEIGHT, WIDTH)
