"""RoI max pooling against a numpy transcription of the authors' Caffe layer; RoIAlign against a numpy reference.

References: rbgirshick/caffe-fast-rcnn src/caffe/layers/roi_pooling_layer.cpp (Forward_cpu, Backward_cpu), and
torchvision's roi_align CPU kernel (bilinear_interpolate) for RoIAlign.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models.detection import roi_pool


def _c_round(x):
    return np.sign(x) * np.floor(np.abs(x) + np.float32(0.5))


def caffe_roi_pool(data, rois, pooled_h, pooled_w, spatial_scale):
    """Forward_cpu: data [B, C, H, W] (Caffe layout), rois [R, 5] = (batch, x1, y1, x2, y2) inclusive pixels.

    Returns top [R, C, ph, pw] and argmax [R, C, ph, pw] (flat h * W + w in the RoI's image, -1 for empty bins).
    """
    f32 = np.float32
    _, channels, height, width = data.shape
    top = np.full((len(rois), channels, pooled_h, pooled_w), -np.finfo(f32).max, f32)
    argmax = np.full(top.shape, -1, np.int64)
    scale = f32(spatial_scale)
    for n, roi in enumerate(rois.astype(f32)):
        b = int(roi[0])
        start_w, start_h = int(_c_round(roi[1] * scale)), int(_c_round(roi[2] * scale))
        end_w, end_h = int(_c_round(roi[3] * scale)), int(_c_round(roi[4] * scale))
        roi_h, roi_w = max(end_h - start_h + 1, 1), max(end_w - start_w + 1, 1)
        bin_h, bin_w = f32(roi_h) / f32(pooled_h), f32(roi_w) / f32(pooled_w)
        for c in range(channels):
            for ph in range(pooled_h):
                for pw in range(pooled_w):
                    hstart = int(np.floor(f32(ph) * bin_h))
                    wstart = int(np.floor(f32(pw) * bin_w))
                    hend = int(np.ceil(f32(ph + 1) * bin_h))
                    wend = int(np.ceil(f32(pw + 1) * bin_w))
                    hstart = min(max(hstart + start_h, 0), height)
                    hend = min(max(hend + start_h, 0), height)
                    wstart = min(max(wstart + start_w, 0), width)
                    wend = min(max(wend + start_w, 0), width)
                    if hend <= hstart or wend <= wstart:
                        top[n, c, ph, pw] = 0
                        argmax[n, c, ph, pw] = -1
                    for h in range(hstart, hend):
                        for w in range(wstart, wend):
                            if data[b, c, h, w] > top[n, c, ph, pw]:
                                top[n, c, ph, pw] = data[b, c, h, w]
                                argmax[n, c, ph, pw] = h * width + w
    return top, argmax


def caffe_backward(top_diff, argmax, rois, data_shape):
    """The argmax scatter that Backward_cpu computes (summing every output whose argmax is a cell)."""
    batch, channels, height, width = data_shape
    diff = np.zeros(data_shape, np.float64)
    for n in range(top_diff.shape[0]):
        b = int(rois[n, 0])
        for c in range(channels):
            for idx, g in zip(argmax[n, c].ravel(), top_diff[n, c].ravel(), strict=True):
                if idx >= 0:
                    diff[b, c, idx // width, idx % width] += g
    return diff


def _random_rois(rng, n, height, width, scale):
    """Edge boxes (y1, x1, y2, x2) in image pixels: ordinary, partly outside, tiny, malformed (x2 < x1)."""
    img_h, img_w = height / scale, width / scale
    y1 = rng.uniform(-0.3 * img_h, img_h, n)
    x1 = rng.uniform(-0.3 * img_w, img_w, n)
    h = rng.uniform(1, 1.2 * img_h, n)
    w = rng.uniform(1, 1.2 * img_w, n)
    rois = np.stack([y1, x1, y1 + h, x1 + w], 1)
    rois[: n // 8, 2:] = rois[: n // 8, :2] + rng.uniform(0, 3, (n // 8, 2))  # tiny
    rois[n // 8 : n // 4, 2:] = rois[n // 8 : n // 4, :2] - rng.uniform(0, 20, (n // 4 - n // 8, 2))  # malformed
    rois[-1] = [-3 * img_h, -3 * img_w, 4 * img_h, 4 * img_w]  # far larger than the map
    rois[-2] = [2 * img_h, 2 * img_w, 3 * img_h, 3 * img_w]  # wholly outside: every bin empty
    return np.round(rois * 2) / 2  # half pixels: exercises C's round-half-away-from-zero


def _caffe_rois(rois, batch, pixel_offset=0.0):
    """Edge boxes (y1, x1, y2, x2) -> Caffe's (batch, x1, y1, x2, y2) with inclusive x2 = x2_edge - 1."""
    end = 1.0 - pixel_offset
    return np.stack([batch, rois[:, 1], rois[:, 0], rois[:, 3] - end, rois[:, 2] - end], 1)


@pytest.mark.parametrize(
    ("shape", "output_size", "scale", "ties"),
    [((9, 13, 3), (7, 7), 1 / 16, False), ((6, 5, 2), (2, 3), 1 / 8, True), ((12, 10, 2), (6, 6), 1 / 16, True)],
)
def test_roi_max_pool_equals_caffe_layer_forward_and_backward(shape, output_size, scale, ties):
    rng = np.random.default_rng(0)
    height, width, channels = shape
    feats = rng.standard_normal((2, height, width, channels)).astype(np.float32)
    if ties:  # few distinct values: many ties, where the gradient must go to the first maximum only
        feats = rng.integers(0, 3, feats.shape).astype(np.float32)
    rois = _random_rois(rng, 40, height, width, scale).astype(np.float32)
    batch = rng.integers(0, 2, len(rois))
    top, argmax = caffe_roi_pool(feats.transpose(0, 3, 1, 2), _caffe_rois(rois, batch), *output_size, scale)

    def pool(f):
        return roi_pool.roi_max_pool(
            f, jnp.asarray(rois), batch_indices=jnp.asarray(batch), output_size=output_size, spatial_scale=scale
        )

    @jax.jit
    def forward_backward(f, g):
        out, vjp = jax.vjp(pool, f)
        return out, vjp(g)[0]

    g = rng.standard_normal(top.transpose(0, 2, 3, 1).shape).astype(np.float32)
    out, grad = forward_backward(jnp.asarray(feats), jnp.asarray(g))
    np.testing.assert_array_equal(np.asarray(out), top.transpose(0, 2, 3, 1))
    want = caffe_backward(g.transpose(0, 3, 1, 2), argmax, _caffe_rois(rois, batch), (2, channels, height, width))
    np.testing.assert_allclose(np.asarray(grad), want.transpose(0, 2, 3, 1), rtol=1e-6, atol=1e-6)


def test_roi_max_pool_single_image_vmap_and_inclusive_boxes():
    rng = np.random.default_rng(1)
    feats = rng.standard_normal((3, 8, 11, 4)).astype(np.float32)
    rois = np.stack([_random_rois(rng, 10, 8, 11, 1 / 16) for _ in range(3)]).astype(np.float32)
    fn = jax.jit(jax.vmap(lambda f, r: roi_pool.roi_max_pool(f, r, output_size=(3, 4))))
    out = np.asarray(fn(jnp.asarray(feats), jnp.asarray(rois)))
    for b in range(3):
        image = feats[b : b + 1].transpose(0, 3, 1, 2)
        top, _ = caffe_roi_pool(image, _caffe_rois(rois[b], np.zeros(10)), 3, 4, 1 / 16)
        np.testing.assert_array_equal(out[b], top.transpose(0, 2, 3, 1))
    # pixel_offset=1: boxes already in Caffe's inclusive convention go to the layer unchanged.
    inclusive = jax.jit(lambda f, r: roi_pool.roi_max_pool(f, r, output_size=(3, 4), pixel_offset=1.0))
    one = inclusive(jnp.asarray(feats[0]), jnp.asarray(rois[0]))
    top, _ = caffe_roi_pool(feats[:1].transpose(0, 3, 1, 2), _caffe_rois(rois[0], np.zeros(10), 1.0), 3, 4, 1 / 16)
    np.testing.assert_array_equal(np.asarray(one), top.transpose(0, 2, 3, 1))


def test_roi_max_pool_rejects_batched_features_without_indices():
    with pytest.raises(ValueError, match="batch_indices"):
        roi_pool.roi_max_pool(jnp.zeros((2, 4, 4, 1)), jnp.zeros((1, 4)))


def _bilinear(img, y, x):
    height, width = img.shape[:2]
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return np.zeros(img.shape[2])
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (
        hy * hx * img[y_low, x_low] + hy * lx * img[y_low, x_high] + ly * hx * img[y_high, x_low]
        + ly * lx * img[y_high, x_high]
    )


def numpy_roi_align(img, rois, pooled_h, pooled_w, scale, ratio, aligned):
    """Transcription of torchvision's roi_align forward with a fixed sampling ratio; rois (y1, x1, y2, x2)."""
    offset = 0.5 if aligned else 0.0
    out = np.zeros((len(rois), pooled_h, pooled_w, img.shape[2]))
    for n, (y1, x1, y2, x2) in enumerate(rois.astype(np.float64)):
        sy, sx = y1 * scale - offset, x1 * scale - offset
        rh, rw = y2 * scale - offset - sy, x2 * scale - offset - sx
        if not aligned:
            rh, rw = max(rh, 1.0), max(rw, 1.0)
        bh, bw = rh / pooled_h, rw / pooled_w
        for ph in range(pooled_h):
            for pw in range(pooled_w):
                acc = 0.0
                for iy in range(ratio):
                    y = sy + ph * bh + (iy + 0.5) * bh / ratio
                    for ix in range(ratio):
                        x = sx + pw * bw + (ix + 0.5) * bw / ratio
                        acc = acc + _bilinear(img, y, x)
                out[n, ph, pw] = acc / (ratio * ratio)
    return out


@pytest.mark.parametrize(("aligned", "ratio"), [(True, 2), (False, 1), (True, 3)])
def test_roi_align_matches_numpy_reference(aligned, ratio):
    rng = np.random.default_rng(2)
    img = rng.standard_normal((7, 9, 3)).astype(np.float32)
    rois = _random_rois(rng, 16, 7, 9, 1 / 8).astype(np.float32)
    out = jax.jit(
        lambda f, r: roi_pool.roi_align(f, r, output_size=(3, 2), spatial_scale=1 / 8, sampling_ratio=ratio,
                                        aligned=aligned)
    )(jnp.asarray(img), jnp.asarray(rois))
    want = numpy_roi_align(img, rois, 3, 2, 1 / 8, ratio, aligned)
    np.testing.assert_allclose(np.asarray(out), want, rtol=1e-5, atol=1e-5)


def test_roi_align_batched_gradient_is_finite_and_linear():
    rng = np.random.default_rng(3)
    feats = jnp.asarray(rng.standard_normal((2, 6, 6, 2)).astype(np.float32))
    rois = jnp.asarray(_random_rois(rng, 8, 6, 6, 1 / 4).astype(np.float32))
    batch = jnp.asarray(rng.integers(0, 2, 8))

    def align(f):
        return roi_pool.roi_align(f, rois, batch_indices=batch, output_size=(2, 2), spatial_scale=1 / 4)

    per_image = [
        np.asarray(roi_pool.roi_align(feats[b], rois, output_size=(2, 2), spatial_scale=1 / 4)) for b in range(2)
    ]
    want = np.where(np.asarray(batch)[:, None, None, None] == 0, per_image[0], per_image[1])
    np.testing.assert_allclose(np.asarray(align(feats)), want, rtol=1e-6)
    # Linear in the features: the gradient of <align(f), g> is the transpose map, equal to a finite difference.
    g = jnp.asarray(rng.standard_normal((8, 2, 2, 2)).astype(np.float32))
    grad = jax.jit(jax.grad(lambda f: jnp.sum(align(f) * g)))(feats)
    assert np.all(np.isfinite(np.asarray(grad)))
    d = jnp.asarray(rng.standard_normal(feats.shape).astype(np.float32))
    np.testing.assert_allclose(float(jnp.sum(grad * d)), float(jnp.sum(align(d) * g)), rtol=1e-4)
