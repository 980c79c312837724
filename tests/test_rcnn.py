"""R-CNN (Girshick et al. 2014): region warping against numpy / OpenCV references, the SVM hard negative mining and
ridge box regression on synthetic features, test-time selection, and the 'rcnn' task through the one loop."""

import json
import os

import cv2
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.evaluate import rcnn_learners as learners
from convnets.evaluate import region_features
from convnets.models.detection import warp
from tests import cli, fake_voc, helpers


def _reference_warp(image, box, size, pad, mode, real=None):
    """Per output pixel, the module docstring's rule written as a plain loop (no vectorisation, no clamping tricks
    shared with the implementation)."""
    h, w = real if real is not None else image.shape[:2]
    y1, x1, y2, x2 = box
    cy, cx, hh, hw = (y1 + y2) / 2, (x1 + x2) / 2, (y2 - y1) / 2, (x2 - x1) / 2
    if mode != 'warp':
        hh = hw = max(hh, hw)
    scale = size / (size - 2 * pad)
    wy1, wx1, wy2, wx2 = cy - hh * scale, cx - hw * scale, cy + hh * scale, cx + hw * scale
    out = np.zeros((size, size, image.shape[2]), np.float64)
    for i in range(size):
        yc = wy1 + (i + 0.5) * (wy2 - wy1) / size
        for j in range(size):
            xc = wx1 + (j + 0.5) * (wx2 - wx1) / size
            if not (0 <= yc <= h and 0 <= xc <= w):
                continue
            if mode == 'square_no_context' and not (y1 <= yc <= y2 and x1 <= xc <= x2):
                continue
            # The window's pixels inside the image, border replicated (OpenCV resize of the cropped window).
            ylo, yhi = min(max(np.floor(wy1), 0), h - 1), min(max(np.ceil(wy2) - 1, 0), h - 1)
            xlo, xhi = min(max(np.floor(wx1), 0), w - 1), min(max(np.ceil(wx2) - 1, 0), w - 1)
            u, v = min(max(yc - 0.5, ylo), max(yhi, ylo)), min(max(xc - 0.5, xlo), max(xhi, xlo))
            a, b = int(np.floor(u)), int(np.floor(v))
            fu, fv = u - a, v - b
            a1, b1 = min(a + 1, int(max(yhi, ylo))), min(b + 1, int(max(xhi, xlo)))
            out[i, j] = ((1 - fu) * ((1 - fv) * image[a, b] + fv * image[a, b1])
                         + fu * ((1 - fv) * image[a1, b] + fv * image[a1, b1]))
    return out


BOXES = np.array([[3.0, 4.0, 17.0, 30.0],  # inside
                  [-6.0, 20.0, 10.0, 44.0],  # over the top and right edges
                  [8.3, 2.6, 9.1, 5.2],  # tiny (upsampled a lot)
                  [0.0, 0.0, 24.0, 40.0]], np.float32)  # the whole image


@pytest.mark.parametrize('mode,pad', [('warp', 0), ('warp', 2), ('square', 2), ('square_no_context', 2)])
def test_warp_matches_a_per_pixel_reference(mode, pad):
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 28, 44, 3)).astype(np.float32)
    sizes = np.array([[24, 40], [28, 44]], np.float32)  # image 0 lies in a padded canvas: nothing beyond is read
    index = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    boxes = np.concatenate([BOXES, BOXES])
    crops = np.asarray(jax.jit(lambda im, b, i, s: warp.warp_regions(
        im, b, i, crop_size=12, context_pad=pad, mode=mode, image_sizes=s))(images, boxes, index, sizes))
    assert crops.shape == (8, 12, 12, 3)
    for r in range(8):
        ref = _reference_warp(images[index[r]], boxes[r], 12, pad, mode, real=sizes[index[r]].astype(int))
        np.testing.assert_allclose(crops[r], ref, atol=2e-5, err_msg=f'region {r}')


def test_warp_without_context_is_rcnn_im_crop():
    """p = 0, 'warp': rcnn_im_crop.m crops the box's pixels and resizes them bilinearly without antialiasing, as
    OpenCV's INTER_LINEAR (Caffe's WindowDataLayer); integer boxes make the two identical."""
    rng = np.random.default_rng(1)
    image = rng.uniform(-1, 1, size=(40, 50, 3)).astype(np.float32)
    boxes = np.array([[2, 3, 30, 40], [10, 10, 17, 22], [0, 0, 40, 50], [5, 30, 39, 49]], np.float32)
    crops = np.asarray(jax.jit(lambda im, b: warp.warp_regions(im[None], b, jnp.zeros(4, jnp.int32), crop_size=23,
                                                               context_pad=0))(image, boxes))
    for r, (y1, x1, y2, x2) in enumerate(boxes.astype(int)):
        ref = cv2.resize(image[y1:y2, x1:x2], (23, 23), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(crops[r], ref, atol=1e-5)


def test_context_boxes_dilate_for_p_pixels_at_the_warped_size():
    """Sec. 2.1: after warping to 227, exactly 16 warped pixels of context surround the original box."""
    box = jnp.array([[10.0, 20.0, 110.0, 70.0]])
    win = np.asarray(warp.context_boxes(box, crop_size=227, context_pad=16))[0]
    for lo, hi, blo, bhi in ((win[0], win[2], 10, 110), (win[1], win[3], 20, 70)):
        to_warped = 227 / (hi - lo)
        np.testing.assert_allclose([(blo - lo) * to_warped, (hi - bhi) * to_warped], [16, 16], rtol=1e-5)
    sq = np.asarray(warp.context_boxes(box, crop_size=227, context_pad=0, mode='square'))[0]
    np.testing.assert_allclose(sq, [10, -5, 110, 95])  # the tightest square about the same centre
    with pytest.raises(ValueError, match='warp mode'):
        warp.context_boxes(box, crop_size=227, context_pad=16, mode='crop')


def test_class_overlaps_are_the_roidb_overlap_matrix():
    regions = jnp.array([[0, 0, 10, 10], [0, 0, 10, 20], [50, 50, 60, 60]], jnp.float32)
    gt = jnp.array([[0, 0, 10, 10], [0, 10, 10, 20], [0, 0, 10, 20]], jnp.float32)
    ov = np.asarray(jax.jit(region_features.class_overlaps, static_argnums=4)(
        regions, gt, jnp.array([1, 1, 2]), jnp.array([True, True, False]), 3))
    np.testing.assert_allclose(ov, [[0, 1, 0], [0, 0.5, 0], [0, 0, 0]])  # class 2's box is unusable (difficult)


def _separable(rng, n, dim, shift):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x[:, 0] += shift
    return x


def test_hard_negative_mining_recovers_a_separable_class():
    """Class 0's positives sit at +6 on the first axis, its negatives around 0 (and class 1 the reverse).
    The first image adds every negative; later images only those scoring above -1.0001; retraining after the
    first image and past 2000 added negatives; easy negatives (< -1.2) evicted."""
    rng = np.random.default_rng(0)
    dim = 8
    pos = [_separable(rng, 60, dim, 6.0), _separable(rng, 60, dim, -6.0)]
    s = learners.SvmSettings(C=1.0, retrain_limit=150)
    svms = learners.HardNegativeSvms(pos, dim, s)
    added_per_image = []
    for image in range(8):
        feats = np.concatenate([_separable(rng, 80, dim, 0.0), pos[0][:2]])
        overlap = np.zeros((82, 2), np.float32)
        overlap[80:, 0] = 1.0  # two boxes of class 0: never its negatives, always class 1's
        before = [len(n) for n in svms.neg]
        if image:
            scores = feats @ svms.w + svms.b
            hard = (scores > s.hard_thresh) & (overlap < 0.3)
        svms.add_image(feats, overlap)
        if image == 0:
            assert [len(n) for n in svms.neg] <= [80, 82] and svms.trained.all()
        else:
            added_per_image.append(hard.sum(axis=0))
            assert all(len(n) <= b + h for n, b, h in zip(svms.neg, before, hard.sum(axis=0), strict=True))
    svms.finish()
    test_pos = [_separable(rng, 200, dim, 6.0), _separable(rng, 200, dim, -6.0)]
    test_neg = _separable(rng, 400, dim, 0.0)
    for j in range(2):
        assert np.mean(svms.scores(test_pos[j])[:, j] > 0) > 0.97
        assert np.mean(svms.scores(test_neg)[:, j] < 0) > 0.97
        kept = svms.neg[j] @ svms.w[:, j] + svms.b[j]
        assert np.all(kept >= s.evict_thresh)  # the cache holds no easy negative after the last update
    assert svms.retrainings >= 4  # first image + final, per class
    assert np.sum(added_per_image) < 7 * 80 * 2  # mining keeps only the hard ones


def test_linear_svm_uses_the_authors_liblinear_objective():
    """sklearn's LinearSVC wraps liblinear: the solution minimises 0.5 |w|^2 + 0.5 (b / B)^2 + C sum_i c_i
    hinge(y_i (w x_i + b)) with c = 2 for positives (rcnn_train.m's loss printout); nudging it does not help."""
    rng = np.random.default_rng(3)
    pos, neg = _separable(rng, 40, 5, 1.0), _separable(rng, 120, 5, -1.0)
    s = learners.SvmSettings(C=0.1, tol=1e-6)
    w, b = learners.train_linear_svm(pos, neg, s)

    def objective(w, b):
        hinge = lambda z: np.maximum(0, 1 - z).sum()  # noqa: E731
        return (0.5 * w @ w + 0.5 * (b / s.bias_mult) ** 2 + s.C * s.pos_weight * hinge(pos @ w + b)
                + s.C * hinge(-(neg @ w + b)))

    best = objective(w, b)
    for _ in range(50):
        dw, db = rng.normal(size=5) * 1e-2, rng.normal() * 1e-2
        assert objective(w + dw, b + db) >= best - 1e-6


def test_ridge_closed_form_in_primal_and_dual_form():
    rng = np.random.default_rng(0)
    for n, d in ((50, 8), (6, 20)):  # more examples than features (primal) and fewer (dual)
        x, y = rng.normal(size=(n, d)), rng.normal(size=(n, 4))
        beta, mu = learners.fit_ridge(x, y, lam=3.0)
        a = np.concatenate([x, np.ones((n, 1))], axis=1)
        ref = np.linalg.inv(a.T @ a + 3.0 * np.eye(d + 1)) @ a.T @ (y - y.mean(0))
        np.testing.assert_allclose(beta, ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(mu, y.mean(0), rtol=1e-6)


def test_box_regressors_learn_the_offsets_of_their_class():
    """Features that encode each region's true (dy, dx, dh, dw) linearly: the class's ridge regressor (small lambda)
    moves the regions onto the gt box; regions of IoU <= 0.6 and other classes' boxes give no examples."""
    rng = np.random.default_rng(0)
    reg = learners.BoxRegressors(num_classes=2, min_iou=0.6, lam=1e-3)
    gt = np.array([[20.0, 20.0, 60.0, 50.0]], np.float32)
    for _ in range(3):
        jitter = rng.uniform(-3, 3, size=(40, 4)).astype(np.float32)
        regions = gt + jitter
        deltas = np.asarray(learners.box_ops.encode(gt, regions))
        feats = np.concatenate([deltas, rng.normal(size=(40, 3)).astype(np.float32) * 0.01], axis=1)
        far = np.array([[100, 100, 120, 130]], np.float32)
        reg.add_image(np.concatenate([feats, np.ones((1, 7), np.float32)]), np.concatenate([regions, far]), gt,
                      np.array([1]))
    assert reg.fit() == 1 and reg.models[0] is None
    regions = gt + rng.uniform(-3, 3, size=(10, 4)).astype(np.float32)
    feats = np.concatenate([np.asarray(learners.box_ops.encode(gt, regions)), np.zeros((10, 3), np.float32)], axis=1)
    np.testing.assert_allclose(reg.predict(1, feats, regions), np.tile(gt, (10, 1)), atol=0.05)
    np.testing.assert_array_equal(reg.predict(0, feats, regions), regions)  # no regressor: unchanged


def test_image_detections_take_the_top_k_per_class_then_nms():
    regions = np.array([[0, 0, 10, 10], [0, 1, 10, 11], [20, 20, 30, 30], [0, 0, 10, 10]], np.float32)
    scores = np.array([[0.9, -1], [0.8, 2], [0.5, -np.inf], [-np.inf, 1.5]], np.float32)
    boxes, classes, sc = learners.image_detections(regions, scores, top_k=3, nms_iou=0.3, size=(25, 25))
    # class 0: regions 0 and 1 overlap (IoU 0.82): 1 suppressed; region 2 clipped to the image.
    # class 1: region 2 is not a candidate (-inf); region 3 overlaps region 1 (0.82): suppressed.
    np.testing.assert_array_equal(classes, [0, 0, 1])
    np.testing.assert_allclose(sc, [0.9, 0.5, 2.0])
    np.testing.assert_allclose(boxes, [[0, 0, 10, 10], [20, 20, 25, 25], [0, 1, 10, 11]])
    boxes, _, _ = learners.image_detections(regions, scores, top_k=1, nms_iou=0.3)
    assert len(boxes) == 2  # the best of each class only


def test_feature_scale_brings_the_mean_norm_to_20():
    x = np.random.default_rng(0).normal(size=(100, 30)) * 7
    f = learners.scale_factor(np.linalg.norm(x, axis=1))
    assert np.isclose(np.linalg.norm(x * f, axis=1).mean(), 20.0)


def _tiny(scenes_dir: str):
    from experiments import rcnn_quickstart

    c = rcnn_quickstart.get_config()
    c.data.data_dir = scenes_dir
    c.data.cache = False
    c.model.stage_widths = (4, 8, 8, 8, 8)
    c.model.fc_features = 16
    c.detection.grid_stride = 32
    c.detection.grid_sizes = (17.0, 34.0)
    c.batch_size = c.eval_batch_size = 8
    c.num_train_steps = 2
    c.log_every = '1'
    c.checkpoint_every = ''
    c.optimizer.warmup_steps = 0
    c.evals.val.max_train_images = 8
    c.evals.val.norm_images = 4
    return c


@pytest.mark.slow
def test_rcnn_quickstart_trains_and_evaluates_through_main(tmp_path, scenes_dir):
    """2 steps of fine-tuning, then SVMs + box regressors on 8 training scenes and the test on 32: mAP for the
    four variants (SVM / softmax, with and without box regression) and the devkit files, through the CLI."""
    workdir = str(tmp_path / 'run')
    cmd = cli.main_command(workdir, scenes_dir, '--config.num_train_steps=2', '--config.model.stage_widths=(4,8,8,8,8)',
                           '--config.model.fc_features=16', '--config.detection.grid_stride=32',
                           '--config.detection.grid_sizes=(17.0,34.0)', '--config.evals.val.max_train_images=8',
                           '--config.evals.val.norm_images=4', '--config.checkpoint_every=', '--config.log_every=1',
                           '--config.data.cache=False', config='experiments/rcnn_quickstart.py')
    proc = cli.run(cmd, num_devices=8, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, 'results.json')) as f:
        results = json.load(f)
    train, ev = results['train'], results['eval']
    assert np.isfinite(train['loss']) and 0 < train['fg_regions'] <= 0.25
    assert ev['num_images'] == 32 and ev['train_images'] == 8 and ev['svm_retrainings'] >= 1
    for variant in ('svm', 'svm_bbox_reg', 'softmax', 'softmax_bbox_reg'):
        assert 0.0 <= ev[f'{variant}/mAP'] <= 1.0
    assert ev['mAP'] == ev['svm_bbox_reg/mAP'] and len([k for k in ev if k.startswith('AP/')]) == 10
    directory = os.path.join(workdir, 'detections', 'val')
    assert len([f for f in os.listdir(directory) if f.startswith('comp4_det_test_')]) == 10
    for variant in ('svm', 'softmax', 'softmax_bbox_reg'):
        assert len(os.listdir(os.path.join(directory, variant))) == 10


@pytest.mark.slow
def test_one_and_eight_devices_train_the_same(tmp_path, scenes_dir):
    """Regions, their mirroring and the loss do not depend on the device count (keys of each image's global
    index; loss over a fixed number of region slots)."""
    from convnets.train import loop

    params = {}
    for n in (1, 8):
        c = _tiny(scenes_dir)
        c.rcnn.flip = True
        c.evals.val.at_end = False
        loop.train_and_evaluate(c, str(tmp_path / f'd{n}'), devices=jax.devices()[:n])
        params[n] = helpers.final_params(str(tmp_path / f'd{n}'))
    helpers.assert_trees_close(params[1], params[8], rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_svms_on_fast_rcnn_features(tmp_path, scenes_dir):
    """Fast R-CNN's "SVM instead of softmax" row (Table 8): the 'rcnn_svm' evaluator trains per-class SVMs on a
    detection run's fc7 features (one image pass with every region as a RoI) and scores the test scenes, with and
    without the network's own box regression."""
    from convnets.train import loop
    from experiments import rcnn
    from tests import helpers

    c = helpers.tiny_fast_rcnn(scenes_dir, num_train_steps=1)
    c.evals.val = rcnn.rcnn_svm_eval(classifiers=('svm',), bbox_reg=True)  # the network's own regressors
    c.evals.val.max_train_images = 8
    c.evals.val.norm_images = 2
    ev = loop.train_and_evaluate(c, str(tmp_path / 'run'))['eval']
    assert ev['num_images'] == 32 and ev['train_images'] == 8 and ev['svm_retrainings'] >= 10
    assert 0.0 <= ev['mAP'] == ev['svm_bbox_reg/mAP'] <= 1.0 and 0.0 <= ev['svm/mAP'] <= 1.0
    assert ev['detections'] > 0 and ev['box_regressors'] == 0  # no ridge regressor for a Fast R-CNN
    with pytest.raises(ValueError, match="'softmax' is the 'detection' evaluator's job"):
        c.evals.val.classifiers = ('svm', 'softmax')
        loop.train_and_evaluate(c, str(tmp_path / 'bad'))


NARROW = {'rcnn_alexnet_voc07': ('--config.model.widths=(8, 8, 8, 8, 8)',),
          'rcnn_vgg16_voc07': ('--config.model.stage_widths=(4, 4, 4, 4, 8)', '--config.model.fc_features=16')}


@pytest.mark.slow
@pytest.mark.parametrize('experiment', sorted(NARROW))
def test_rcnn_voc07_recipes_run_end_to_end(tmp_path, voc_dir, voc_proposals, experiment):
    """Each VOC 2007 recipe on the fake VOC in the official tar layout (TFDS's voc builder) with its selective
    search cache: 227x227 (VGG16: 224) warps of the cached proposals through a narrow network, 2 steps, then SVMs on
    trainval (4 images) and the test (3 images) with the devkit files of the 20 classes."""
    workdir = str(tmp_path / 'run')
    cmd = cli.main_command(workdir, voc_dir[0], f'--config.data.proposals_dir={voc_proposals}', *NARROW[experiment],
                           '--config.num_train_steps=2', '--config.log_every=1', '--config.checkpoint_every=',
                           '--config.data.max_proposals=50', '--config.evals.val.norm_images=2',
                           config=f'experiments/{experiment}.py')
    proc = cli.run(cmd, num_devices=1, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(workdir, 'results.json')) as f:
        ev = json.load(f)['eval']
    assert ev['num_images'] == 3 and ev['train_images'] == 4 and 0.0 <= ev['mAP'] <= 1.0
    directory = os.path.join(workdir, 'detections', 'val')
    files = [f for f in os.listdir(directory) if f.endswith('.txt')]
    assert len(files) == 20
    # VOC's own test image ids and boxes inside those images (devkit: 1-based, inclusive).
    sizes = {i: (h, w) for i, (split, h, w, _) in fake_voc.IMAGES.items() if split == 'test'}
    lines = []
    for name in files:
        with open(os.path.join(directory, name)) as f:
            lines += [line.split() for line in f]
    assert lines, 'no detections written'
    for image_id, _, x1, y1, x2, y2 in lines:
        h, w = sizes[image_id]
        assert 1 <= float(x1) <= float(x2) <= w and 1 <= float(y1) <= float(y2) <= h


def test_the_rcnn_recipes_hold_the_papers_settings():
    """Sec. 2.1 / 2.3, appendices B-C and the authors' prototxt / rcnn_train.m values (experiments/rcnn.py)."""
    from experiments import rcnn_alexnet_voc07, rcnn_vgg16_voc07

    for module, size in ((rcnn_alexnet_voc07, 227), (rcnn_vgg16_voc07, 224)):
        c = module.get_config()
        d, r, ev, opt = c.detection, c.rcnn, c.evals.val, c.optimizer
        assert c.task == 'rcnn' and c.model.num_classes == 21 and r.warp_size == c.model.input_size == size
        assert (r.context_pad, r.warp_mode, r.flip) == (16, 'warp', True)
        assert c.batch_size * d.rois_per_image == 128 and d.fg_fraction == 0.25  # 32 positives of 128
        assert (d.fg_iou, d.bg_iou_low, d.bg_iou_high, d.include_gt_rois) == (0.5, 0.0, 0.5, True)
        assert (opt.learning_rate, opt.momentum, opt.weight_decay, opt.decay_factor) == (0.001, 0.9, 5e-4, 0.1)
        assert tuple(opt.boundaries) == (20_000, 40_000, 60_000) and opt.boundary_unit == 'steps'
        assert (ev.svm_C, ev.svm_pos_weight, ev.svm_bias_mult, ev.svm_neg_iou) == (1e-3, 2.0, 10.0, 0.3)
        assert (ev.hard_thresh, ev.evict_thresh, ev.retrain_limit) == (-1.0001, -1.2, 2000)
        assert (ev.layer, ev.bbox_layer, ev.bbox_lambda, ev.bbox_min_iou, ev.nms_iou) == ('fc7', 'pool5', 1000.0,
                                                                                           0.6, 0.3)
        assert ev.train_split == c.data.train_split == 'train+validation' and ev.max_train_images == 0
        assert "load_proposals('', 'voc/2007', 'train+validation', 2000)" in ev.train_preprocess
        assert 'flip_lr' not in c.data.train_preprocess + ev.train_preprocess  # the regions are mirrored instead
        assert c.init_from_skip == ('params/fc8_layer/',)
