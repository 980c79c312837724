"""Fast R-CNN's test-time options: truncated SVD of fc6 / fc7 (sec. 3.1) and the multi-scale image pyramid
(sec. 2.4 / 5.2, the authors' test.py), on tiny models and hand-made RoIs."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets import models
from convnets.models.detection import pyramid, svd
from convnets.train import loop
from tests.test_detection_task import _tiny


def test_factorise_is_the_best_rank_t_approximation():
    """Full rank reproduces the kernel; the error falls with the rank and equals the discarded singular values
    (Eckart-Young), and the two factors have the shapes of compress_net.py's fc_L / fc_U (transposed for flax)."""
    kernel = np.random.default_rng(0).normal(size=(12, 8)).astype(np.float32)
    sigma = np.linalg.svd(kernel.astype(np.float64), compute_uv=False)
    errors = []
    for rank in range(1, 9):
        first, second = svd.factorise(kernel, rank)
        assert first.shape == (12, rank) and second.shape == (rank, 8) and first.dtype == np.float32
        errors.append(np.linalg.norm(first @ second - kernel))
        np.testing.assert_allclose(errors[-1], np.sqrt(np.sum(sigma[rank:] ** 2)), atol=1e-4)
    assert errors[-1] < 1e-5 and bool(np.all(np.diff(errors) < 0))
    wide = kernel.T.copy()  # fewer inputs than outputs: the other Gram matrix
    first, second = svd.factorise(wide, 3)
    np.testing.assert_allclose(np.linalg.norm(first @ second - wide), np.sqrt(np.sum(sigma[3:] ** 2)), atol=1e-4)
    with pytest.raises(ValueError, match='rank'):
        svd.factorise(kernel, 9)


def test_svd_parameter_counts():
    """VGG16's fc6 (25088 -> 4096) and fc7 (4096 -> 4096) at the paper's ranks 1024 and 256, and the compressed
    parameter tree's sizes match the formula."""
    assert svd.num_params(25088, 4096) == 102_764_544
    assert svd.num_params(25088, 4096, 1024) == 1024 * (25088 + 4096) + 4096 == 29_888_512
    assert svd.num_params(4096, 4096, 256) == 256 * 8192 + 4096 == 2_101_248
    rng = np.random.default_rng(1)
    params = {'fc6_layer': {'kernel': rng.normal(size=(20, 6)), 'bias': np.arange(6.0)},
              'fc7_layer': {'kernel': rng.normal(size=(6, 6)), 'bias': np.ones(6)}, 'other_layer': {'b': 1}}
    out = svd.compress_params(params, (3, 0))
    assert set(out) == {'fc6_L_layer', 'fc6_U_layer', 'fc7_layer', 'other_layer'}
    assert 'bias' not in out['fc6_L_layer'] and np.array_equal(out['fc6_U_layer']['bias'], np.arange(6.0))
    assert sum(a.size for a in jax.tree.leaves(out['fc6_L_layer']) + jax.tree.leaves(out['fc6_U_layer'])) == \
        svd.num_params(20, 6, 3)
    with pytest.raises(ValueError, match='fc6_layer'):
        svd.compress_params(out, (3, 0))


def test_pyramid_factors_follow_the_authors_rule():
    """_get_image_blob: shorter side -> scale unless the longer side would exceed max_size; static canvases are the
    data canvas x scale / data_scale, capped at max_size, and an image that cannot fit is scaled to fit."""
    levels = pyramid.pyramid_levels((1000, 1000), (480, 1200), 2000, 600)
    assert [lv.canvas for lv in levels] == [(800, 800), (2000, 2000)]
    # A 600x800 image (a 375x500 VOC image at the data's 600), and one of aspect 4 the data capped at 250x1000.
    f = np.asarray(pyramid.level_factors(jnp.array([[600, 800], [250, 1000]]), levels))
    np.testing.assert_allclose(f[0], [480 / 600, 1200 / 600])
    # 480 / 250 = 1.92 would make it 480x1920 > the 800 canvas: fit (0.8); 1200 / 250 -> 6000 > 2000: cap (2.0).
    np.testing.assert_allclose(f[1], [0.8, 2.0])
    with pytest.raises(ValueError, match='scales'):
        pyramid.pyramid_levels((600, 600), (), 2000, 600)


def test_each_roi_goes_to_the_level_closest_to_224_squared():
    """_project_im_rois: argmin over levels of |area * factor^2 - 224^2| (first level on ties)."""
    factors = jnp.array([[0.5, 1.0, 2.0]])
    rois = jnp.array([[[0, 0, 448, 448],  # 0.5 -> exactly 224^2
                       [0, 0, 224, 224],  # 1.0 -> exactly
                       [10, 10, 122, 122],  # 112^2: 2.0 -> 224^2
                       [0, 0, 300, 300],  # 150^2 (x0.25 off by 0.55 of 224^2) vs 300^2 (off by 0.79): level 0
                       [0, 0, 5, 5],  # tiny: the largest scale
                       [0, 0, 0, 0]]], jnp.float32)  # empty: every level ties, numpy's argmin takes the first
    np.testing.assert_array_equal(pyramid.assign_levels(rois, factors), [[0, 1, 2, 0, 2, 0]])


def _tiny_model(**fields):
    model = models.get_model('fast_rcnn', num_classes=3, vgg_config='A', stage_widths=(4, 8), num_pools=1,
                             roi_size=3, fc_features=16, dropout_rate=0.0, weight_init='he', **fields)
    images = jax.random.normal(jax.random.key(1), (2, 24, 32, 3))
    rois = jnp.array([[[0, 0, 20, 20], [4, 6, 16, 30], [0, 0, 6, 6]], [[2, 2, 10, 12], [0, 0, 24, 32],
                                                                        [8, 8, 20, 30]]], jnp.float32)
    return model, images, rois


@pytest.mark.slow
def test_compressed_network_matches_the_full_one():
    """At full rank (min(in, out)) the two-layer fc6 / fc7 equal the trained layers to float tolerance; with fewer
    singular values the outputs move away, monotonically. The default (no SVD) parameter tree is unchanged."""
    model, images, rois = _tiny_model()
    variables = model.init(jax.random.key(0), images, rois)
    assert {'fc6_layer', 'fc7_layer'} <= set(variables['params'])
    assert not any(k.endswith(('_L_layer', '_U_layer')) for k in variables['params'])
    logits, deltas = jax.jit(model.apply)(variables, images, rois)
    pooled = model.apply(variables, model.apply(variables, images, method='features'), rois, method='pool')
    fc6_in = 3 * 3 * 8
    errors = []
    for ranks in ((2, 2), (4, 8), (8, 12), (16, 16)):  # (16, 16) = full rank of both 72x16 and 16x16
        params = svd.compress_params(variables['params'], ranks)
        small = model.clone(svd_ranks=ranks)
        assert jax.tree.map(np.shape, params) == jax.tree.map(
            np.shape, jax.eval_shape(small.init, jax.random.key(0), images, rois)['params'])
        assert params['fc6_L_layer']['kernel'].shape == (fc6_in, ranks[0])
        got_logits, got_deltas = small.apply({'params': params}, pooled, method='head')
        errors.append(float(jnp.max(jnp.abs(got_logits - logits))))
    got_logits, got_deltas = jax.jit(small.apply)({'params': params}, images, rois)  # the whole compressed net
    np.testing.assert_allclose(got_logits, logits, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(got_deltas, deltas, atol=1e-5, rtol=1e-5)
    assert errors[0] > errors[1] > errors[2] > errors[3] and errors[0] > 1e-3


@pytest.mark.slow
def test_pyramid_of_one_scale_is_the_single_scale_path_and_rois_use_their_level():
    model, images, rois = _tiny_model()
    np.testing.assert_array_equal(pyramid.resize_images(images, jnp.ones(2), (24, 32)), images)
    up = np.asarray(pyramid.resize_images(images, jnp.array([2.0, 2.0]), (48, 64)))
    # OpenCV INTER_LINEAR: output pixel (1, 1) samples (0.25, 0.25) = 0.75^2 p00 + 0.1875 (p01 + p10) + 0.0625 p11.
    p = np.asarray(images[0, :2, :2, 0])
    np.testing.assert_allclose(up[0, 1, 1, 0], 0.5625 * p[0, 0] + 0.1875 * (p[0, 1] + p[1, 0]) + 0.0625 * p[1, 1],
                               rtol=1e-5)
    variables = model.init(jax.random.key(0), images, rois)
    size = jnp.array([[24, 32], [24, 30]])  # shorter sides 24 = the scale: factor 1
    apply = jax.jit(model.apply)
    multiscale = jax.jit(functools.partial(model.apply, method='multiscale'), static_argnums=(4, 5, 6, 7))
    one = multiscale(variables, images, size, rois, (24,), 2000, 24, pyramid.TARGET_AREA)
    full = apply(variables, images, rois)
    for a, b in zip(one, full, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)
    # Two levels (factors 0.5 and 2; a target area of 200 px for these tiny images): each RoI's outputs are those
    # of the single-scale network run on its own level's image.
    scales = (12, 48)
    got = multiscale(variables, images, size, rois, scales, 2000, 24, 200.0)
    levels = pyramid.pyramid_levels((24, 32), scales, 2000, 24)
    factors = pyramid.level_factors(size, levels)
    assigned = np.asarray(pyramid.assign_levels(rois, factors, 200.0))
    assert set(assigned.ravel()) == {0, 1}
    for s, level in enumerate(levels):
        here = apply(variables, pyramid.resize_images(images, factors[:, s], level.canvas),
                     rois * factors[:, s, None, None])
        for a, b in zip(got, here, strict=True):
            np.testing.assert_allclose(np.asarray(a)[assigned == s], np.asarray(b)[assigned == s], atol=1e-5)


@pytest.mark.slow
def test_the_evaluator_runs_compressed_and_multiscale(tmp_path, scenes_dir):
    """The 'detection' evaluator with truncated_svd and an image pyramid, next to the plain one, after 2 steps."""
    c = _tiny(scenes_dir, num_train_steps=2)
    c.evals.svd = c.evals.val.copy_and_resolve_references()
    c.evals.svd.results_key = 'svd'
    c.evals.svd.truncated_svd = (16, 8)
    c.evals.pyramid = c.evals.val.copy_and_resolve_references()
    c.evals.pyramid.results_key = 'pyramid'
    c.evals.pyramid.scales = (96, 128)
    c.evals.pyramid.data_scale = 128
    c.evals.pyramid.max_size = 160
    results = loop.train_and_evaluate(c, str(tmp_path / 'run'))
    for key in ('eval', 'svd', 'pyramid'):
        assert results[key]['num_images'] == 32 and 0.0 <= results[key]['mAP'] <= 1.0, (key, results[key])
