"""Faster R-CNN (convnets/models/faster_rcnn.py, convnets/tasks/faster_rcnn.py): the networks' shapes, the parts
each training mode trains, eq. 1's normalisation in the task, that no gradient reaches the RPN through the proposal
coordinates in approximate joint training, 1 vs 8 devices, and --mode=detect on a Faster R-CNN checkpoint."""

import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from convnets import models
from convnets.tasks import faster_rcnn as task
from convnets.train.optim import param_paths
from experiments import faster_rcnn as faster_rcnn_experiment
from tests.helpers import assert_trees_close, final_params, tiny_faster_rcnn

RPN_SHAPES_VGG16 = {'rpn_conv_3x3_layer': (3, 3, 512, 512), 'rpn_cls_score_layer': (1, 1, 512, 18),
                    'rpn_bbox_pred_layer': (1, 1, 512, 36)}


def _params(name: str, size=(600, 1000), **kwargs):
    model = models.get_model(name, **kwargs)
    images = jax.ShapeDtypeStruct((1, *size, 3), jnp.float32)
    rois = jax.ShapeDtypeStruct((1, 1, 4), jnp.float32)
    method = 'init_all' if hasattr(model, 'rpn') else None
    variables = jax.eval_shape(lambda x, r: model.init(jax.random.PRNGKey(0), x, r, method=method), images, rois)
    fmap = jax.eval_shape(lambda v, x: model.apply(v, x, method='features'), variables, images)
    return model, variables['params'], fmap.shape


def _count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.slow  # traces VGG16 at 600 x 1000 (eval_shape, ~1.6 s)
def test_vgg16_faster_rcnn_is_fast_rcnn_plus_the_paper_rpn():
    """Sec. 3.1: 3x3 conv of 512 maps on conv5_3, 2k = 18 scores and 4k = 36 offsets; the rest is Fast R-CNN's VGG16
    (same names and shapes: an ImageNet VGG16 or a Fast R-CNN checkpoint loads by name). A 600 x 1000 image gives a
    38 x 63 map, 21546 anchors ("roughly 20000 (~60 x 40 x 9)", sec. 3.3)."""
    model, params, fmap = _params('faster_rcnn_vgg16')
    _, fast, _ = _params('fast_rcnn_vgg16')
    assert {k: params[k]['kernel'].shape for k in RPN_SHAPES_VGG16} == RPN_SHAPES_VGG16
    assert {k: jax.tree.map(lambda x: x.shape, v) for k, v in params.items() if k in fast} == \
        jax.tree.map(lambda x: x.shape, dict(fast))
    assert _count(params) - _count(fast) == 512 * 512 * 9 + 512 + 512 * 18 + 18 + 512 * 36 + 36
    assert fmap == (1, 38, 63, 512) and model.stride == 16
    anchors = model.anchors(38, 63)
    assert anchors.shape == (38 * 63 * 9, 4)
    sides = np.sqrt((anchors[:9, 2] - anchors[:9, 0]) * (anchors[:9, 3] - anchors[:9, 1]))
    np.testing.assert_allclose(np.sort(sides), [128] * 3 + [256] * 3 + [512] * 3, rtol=0.05)


@pytest.mark.slow
def test_zf_faster_rcnn_loads_zf_net_convs_and_has_a_256_rpn():
    """The ZF backbone's convs have ZF Net's names and kernel shapes (an ImageNet ZF Net initialises it); stride 16,
    6x6 RoIs, a 256-wide RPN conv (sec. 3.1)."""
    model, params, fmap = _params('faster_rcnn_zf')
    zf = jax.eval_shape(lambda x: models.get_model('zfnet').init(jax.random.PRNGKey(0), x),
                        jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32))['params']
    for name in ('conv1_layer', 'conv2_layer', 'conv3_layer', 'conv4_layer', 'conv5_layer', 'fc7_layer'):
        assert params[name]['kernel'].shape == zf[name]['kernel'].shape, name
    assert params['fc6_layer']['kernel'].shape == (6 * 6 * 256, 4096) == zf['fc6_layer']['kernel'].shape
    assert params['rpn_conv_3x3_layer']['kernel'].shape == (3, 3, 256, 256)
    assert fmap == (1, 37, 62, 256) and model.stride == 16


def test_table_viii_anchor_switches_change_k():
    model, params, _ = _params('faster_rcnn', size=(64, 64), stage_widths=(8, 16), num_pools=2, fc_features=8,
                               rpn_channels=4, anchor_sizes=(128.0,), anchor_ratios=(0.5, 1.0, 2.0))
    assert model.num_anchors == 3 and params['rpn_cls_score_layer']['kernel'].shape == (1, 1, 4, 6)
    with pytest.raises(ValueError, match='anchor_sizes'):
        _params('faster_rcnn', size=(64, 64), stage_widths=(8,), num_pools=1, anchor_sizes=())


def _config(train='joint', proposals='rpn'):
    c = faster_rcnn_experiment.get_config()
    c.rpn.train = train
    c.detection.proposals = proposals
    return c


def test_each_mode_freezes_the_part_it_does_not_train():
    """'rpn' (4-step steps 1 and 3) freezes fc6 / fc7 / cls_score / bbox_pred; 'detector' (steps 2 and 4) freezes
    the three RPN layers; 'joint' only what optimizer.frozen names (conv1 / conv2 of VGG16). Every pattern matches."""
    _, params, _ = _params('faster_rcnn_vgg16')
    paths = param_paths(params)

    def frozen(train):
        c = _config(train)
        c.optimizer.frozen = ('^conv1_', '^conv2_')  # the VOC recipes' (Fast R-CNN sec. 4.5)
        return {p for p in paths if any(re.search(f, p) for f in task.frozen_patterns(c))}

    rpn_layers = {p for p in paths if p.startswith('rpn_')}
    head = {p for p in paths if p.split('/')[0] in ('fc6_layer', 'fc7_layer', 'cls_score_layer', 'bbox_pred_layer')}
    base = frozen('joint')
    assert base and all(p.startswith(('conv1_', 'conv2_')) for p in base)
    assert frozen('rpn') == base | head
    assert frozen('detector') == base | rpn_layers
    for pattern in task.HEAD_PATTERNS + task.RPN_PATTERNS:
        assert any(re.search(pattern, p) for p in paths), pattern


def test_validate_names_the_fix():
    t = task.TASK
    c = _config('joint', 'grid')
    with pytest.raises(ValueError, match="detection.proposals='rpn'"):
        t.validate(c)
    c = _config('both')
    with pytest.raises(ValueError, match="rpn.train must be one of"):
        t.validate(c)
    c = _config()
    del c['rpn']
    with pytest.raises(ValueError, match='config.rpn section'):
        t.validate(c)
    t.validate(_config('rpn'))
    t.validate(_config('detector', 'grid'))


def test_rpn_loss_normalisation_is_eq_1_per_image_then_averaged():
    """(1/256) sum L_cls + 10 (1/N_reg) sum p* smooth-L1, N_reg = ceil(h/16) ceil(w/16) of each image's real size,
    averaged over the images of the slice."""
    rng = np.random.default_rng(0)
    n = 50
    logits = rng.normal(size=(2, n, 2)).astype(np.float32)
    deltas = rng.normal(size=(2, n, 4)).astype(np.float32)
    targets = rng.normal(size=(2, n, 4)).astype(np.float32)
    labels = rng.choice([-1, 0, 1], size=(2, n)).astype(np.int32)
    sizes = np.array([[600, 1000], [500, 333]], np.float32)
    c = _config()
    loss, parts = task.rpn_loss(c, jnp.asarray(logits), jnp.asarray(deltas), jnp.asarray(labels),
                                jnp.asarray(targets), jnp.asarray(sizes), 16)
    expected = []
    for i, n_reg in enumerate([38 * 63, 32 * 21]):
        sampled = labels[i] >= 0
        log_p = logits[i] - np.log(np.exp(logits[i]).sum(-1, keepdims=True))
        cls = -log_p[np.arange(n), np.maximum(labels[i], 0)][sampled].sum() / 256
        d = np.abs(deltas[i] - targets[i])
        sl1 = np.where(d < 1, 0.5 * d ** 2, d - 0.5).sum(-1)
        reg = sl1[labels[i] == 1].sum() / n_reg
        expected.append(cls + 10 * reg)
    np.testing.assert_allclose(float(loss), np.mean(expected), rtol=1e-5)
    assert set(parts) == {'rpn_cls_loss', 'rpn_box_loss', 'rpn_accuracy', 'rpn_fg_anchors'}
    assert float(parts['rpn_fg_anchors']) == pytest.approx(np.mean(np.sum(labels == 1, -1)))


def _tiny_batch():
    rng = np.random.default_rng(1)
    images = rng.normal(size=(2, 64, 64, 3)).astype(np.float32)
    boxes = np.zeros((2, 4, 4), np.float32)
    boxes[0, :2] = [[8, 8, 30, 24], [30, 34, 56, 60]]
    boxes[1, :1] = [[10, 20, 40, 44]]
    mask = np.array([[1, 1, 0, 0], [1, 0, 0, 0]], bool)
    return {'image': images, 'boxes': boxes, 'box_classes': np.array([[1, 3, 0, 0], [2, 0, 0, 0]], np.int32),
            'box_difficult': np.zeros((2, 4), bool), 'box_mask': mask,
            'image_size': np.array([[64, 64], [56, 60]], np.float32)}


@pytest.mark.slow
def test_joint_training_sends_no_gradient_through_the_proposals(scenes_dir):
    """Approximate joint training (sec. 3.2): d(joint loss) = d(RPN loss) + d(Fast R-CNN loss) with the proposals
    constant: the RPN-only layers get exactly the RPN loss's gradient (nothing through the proposal coordinates or
    scores), the head exactly the detection loss's, and the shared convs the sum of both."""
    c = tiny_faster_rcnn(scenes_dir)
    model = task.TASK.build_nets(c)['model']
    batch = {k: jnp.asarray(v) for k, v in _tiny_batch().items()}
    params = model.init(jax.random.PRNGKey(0), batch['image'], jnp.zeros((2, 1, 4)), method='init_all')['params']
    keys = jax.random.split(jax.random.PRNGKey(3), 2)

    def grads(train):
        cfg = ConfigDict(c.to_dict())
        cfg.rpn.train = train
        return jax.grad(lambda p: task.loss_and_parts(cfg, model, p, batch, jax.random.PRNGKey(4), keys)[0])(params)

    joint, rpn, det = (jax.device_get(grads(m)) for m in ('joint', 'rpn', 'detector'))
    for name in ('rpn_conv_3x3_layer', 'rpn_cls_score_layer', 'rpn_bbox_pred_layer'):
        assert_trees_close(joint[name], rpn[name])
        assert all(not np.any(x) for x in jax.tree.leaves(det[name])), name  # detector loss: zero, not small
    for name in ('fc6_layer', 'fc7_layer', 'cls_score_layer', 'bbox_pred_layer'):
        assert_trees_close(joint[name], det[name])
        assert all(not np.any(x) for x in jax.tree.leaves(rpn[name])), name
    assert_trees_close(joint['conv1_1_layer'], jax.tree.map(np.add, rpn['conv1_1_layer'], det['conv1_1_layer']),
                       rtol=1e-4, atol=1e-6)
    assert np.any(det['conv1_1_layer']['kernel']) and np.any(rpn['conv1_1_layer']['kernel'])


@pytest.mark.slow
def test_one_and_eight_devices_agree_then_detect_mode_runs_on_the_checkpoint(tmp_path, scenes_dir):
    """2 joint steps on 1 and 8 simulated devices give the same parameters (global-index sampling keys, global
    loss); the 8-device run's final evaluation reports VOC mAP from the RPN's proposals and writes the devkit
    files; --mode=detect (convnets.detect) runs the same network on a PNG."""
    from PIL import Image

    from convnets import detect
    from convnets.train import loop

    c = tiny_faster_rcnn(scenes_dir, num_train_steps=2)
    results = {}
    for n in (1, 8):
        results[n] = loop.train_and_evaluate(c, str(tmp_path / f'd{n}'), devices=jax.devices()[:n])
    assert_trees_close(final_params(str(tmp_path / 'd1')), final_params(str(tmp_path / 'd8')), rtol=2e-4, atol=2e-6)
    for n in (1, 8):
        train = results[n]['train']
        assert np.isfinite(train['loss']) and train['rpn_cls_loss'] > 0 and train['det_loss'] > 0
    ev = results[8]['eval']
    assert 0.0 <= ev['mAP'] <= 1.0 and ev['num_images'] == 32
    devkit = tmp_path / 'd8' / 'detections' / 'val'
    assert len(list(devkit.glob('comp4_det_test_*.txt'))) == 10
    photo = tmp_path / 'scene.png'
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (128, 128, 3)).astype(np.uint8)).save(photo)
    c.evals.val.score_threshold = 0.0
    found = detect.detect_images(c, str(tmp_path / 'd8'), [str(photo)], out_dir=str(tmp_path / 'out'))
    assert found['step'] == 2 and len(found['images']) == 1
    dets = found['images'][0]['detections']
    assert dets and all(0 <= d['box'][0] <= d['box'][2] <= 128 for d in dets)  # x1 <= x2 in the image
    assert os.path.exists(found['json'])
