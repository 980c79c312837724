"""The detection task (Fast R-CNN) through the one training loop: model shapes, training and VOC evaluation on the
embedded digit scenes, device-count equivalence, degenerate images."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets import models, tasks
from convnets.tasks import detection
from convnets.train import loop
from tests import helpers

_tiny = helpers.tiny_fast_rcnn


def test_fast_rcnn_vgg16_is_vgg16_with_two_sibling_heads():
    """Sec. 2.2: VGG16's pool5 replaced by 7x7 RoI pooling, fc8 by the (K+1)-way softmax and 4K regressors; every
    other layer has VGG16's name and shape, so a VGG16 checkpoint initialises it (config.init_from)."""
    images, rois = jnp.zeros((1, 600, 1000, 3)), jnp.zeros((1, 2, 4))
    det = models.get_model('fast_rcnn_vgg16')
    det_vars = jax.eval_shape(lambda: det.init(jax.random.key(0), images, rois))
    vgg_vars = jax.eval_shape(lambda: models.get_model('vgg16').init(jax.random.key(0), jnp.zeros((1, 224, 224, 3))))
    shapes = lambda v: {k: jax.tree.map(lambda a: a.shape, v['params'][k]) for k in v['params']}  # noqa: E731
    ours, theirs = shapes(det_vars), shapes(vgg_vars)
    assert set(ours) - set(theirs) == {'cls_score_layer', 'bbox_pred_layer'}
    assert set(theirs) - set(ours) == {'fc8_layer'}
    assert all(ours[k] == theirs[k] for k in ours if k in theirs)
    assert ours['cls_score_layer']['kernel'] == (4096, 21) and ours['bbox_pred_layer']['kernel'] == (4096, 80)
    count = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(det_vars['params']))
    assert count == 138_357_544 - (4096 * 1000 + 1000) + (4096 * 21 + 21) + (4096 * 80 + 80)
    (logits, deltas), sown = jax.eval_shape(
        lambda v: det.apply(v, images, rois, mutable=['intermediates']), det_vars)
    assert sown['intermediates']['features'][0].shape == (1, 38, 63, 512)  # py-faster-rcnn's conv5_3 at 600x1000
    assert logits.shape == (1, 2, 21) and deltas.shape == (1, 2, 20, 4)


@pytest.mark.slow
def test_quickstart_trains_and_evaluates(tmp_path, scenes_dir):
    workdir = str(tmp_path / 'run')
    results = loop.train_and_evaluate(_tiny(scenes_dir), workdir)
    assert np.isfinite(results['train']['loss']) and results['train']['fg_rois'] > 0
    ev = results['eval']
    assert ev['num_images'] == 32 and 0.0 <= ev['mAP'] <= 1.0
    assert sorted(k for k in ev if k.startswith('AP/')) == sorted(f'AP/{n}' for n in (
        'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'))
    files = sorted(os.listdir(os.path.join(workdir, 'detections', 'val')))
    assert files == sorted(f'comp4_det_test_{n}.txt' for n in ('zero', 'one', 'two', 'three', 'four', 'five', 'six',
                                                               'seven', 'eight', 'nine'))


@pytest.mark.slow
def test_one_and_eight_devices_agree(tmp_path, scenes_dir):
    """The same global batch on 1 and 8 devices: the same RoIs are sampled (keys from each image's global index)
    and the same loss is minimised; parameters after 2 steps agree to float32 reduction-order noise (dropout off:
    its masks are drawn per device)."""
    params = {}
    for n in (1, 8):
        c = _tiny(scenes_dir, num_train_steps=2)
        c.model.dropout_rate = 0.0
        c.evals.val.at_end = False
        loop.train_and_evaluate(c, str(tmp_path / f'd{n}'), devices=jax.devices()[:n])
        params[n] = helpers.final_params(str(tmp_path / f'd{n}'))
    helpers.assert_trees_close(params[1], params[8], rtol=1e-4, atol=1e-6)


def _step_inputs(boxes_mask, difficult):
    c = _tiny('unused')
    model = models.get_model(**{k: v for k, v in c.model.to_dict().items()})
    b, g = 2, 4
    batch = {'image': jnp.zeros((b, 64, 64, 3)), 'boxes': jnp.tile(jnp.array([[8., 8., 30., 24.]]), (b, g, 1)),
             'box_classes': jnp.zeros((b, g), jnp.int32), 'box_mask': boxes_mask, 'box_difficult': difficult}
    return c, model, batch


@pytest.mark.parametrize('case', ['no objects', 'all difficult', 'zero-area boxes'])
def test_degenerate_images_give_finite_loss_and_gradients(case):
    b, g = 2, 4
    mask = jnp.zeros((b, g), bool) if case == 'no objects' else jnp.ones((b, g), bool)
    difficult = jnp.ones((b, g), bool) if case == 'all difficult' else jnp.zeros((b, g), bool)
    c, model, batch = _step_inputs(mask, difficult)
    if case == 'zero-area boxes':
        batch['boxes'] = jnp.tile(jnp.array([[10., 10., 10., 10.]]), (b, g, 1))
    props, prop_mask = detection.proposals(c, batch)
    s = detection.sample_rois(c, jax.random.split(jax.random.key(0), b), props, prop_mask, batch)
    params = model.init(jax.random.key(1), batch['image'], s['rois'])['params']

    def loss(p):
        logits, deltas = model.apply({'params': p}, batch['image'], s['rois'])
        return detection.detection_loss(c, logits, deltas, s)[0]

    value, grads = jax.jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(value) and all(np.all(np.isfinite(x)) for x in jax.tree.leaves(grads))
    if case != 'zero-area boxes':
        assert not np.any(s['fg'])  # nothing to detect: no foreground RoI


def test_config_errors(scenes_dir):
    task = tasks.get('detection')
    c = _tiny(scenes_dir)
    c.data.batch_keys = ('image', 'boxes')
    with pytest.raises(ValueError, match=r"data.batch_keys lacks \['box_classes', 'box_difficult', 'box_mask'\]"):
        task.validate(c)
    c = _tiny(scenes_dir)
    c.detection.bg_iou_high = 0.7
    with pytest.raises(ValueError, match='bg_iou_high .0.7. <= fg_iou'):
        task.validate(c)
    c = _tiny(scenes_dir)
    c.detection.proposals = 'selective_search'
    with pytest.raises(ValueError, match="detection.proposals must be one of \\('grid', 'batch'\\)"):
        task.validate(c)


def test_grid_proposals_cover_the_canvas():
    boxes = detection.grid_proposals(64, 96, (16.0, 32.0), (1.0, 2.0), 8)
    assert boxes.dtype == np.float32 and boxes.shape[1] == 4
    assert np.all(boxes >= 0) and np.all(boxes[:, 2] <= 64) and np.all(boxes[:, 3] <= 96)
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    tall = boxes[(boxes[:, 2] - boxes[:, 0]) > (boxes[:, 3] - boxes[:, 1]) * 1.9]
    assert len(tall)  # ratio 2 (height:width) windows exist


@pytest.mark.slow
def test_a_vgg_classifier_initialises_the_detector_by_name():
    """config.init_from maps a VGG checkpoint onto Fast R-CNN by layer name: every conv layer and fc6 / fc7 load;
    fc8 is left out and the two sibling heads keep their fresh initialisation (init_from_skip, sec. 2.2)."""
    from convnets.train import init_from
    from convnets.train.state import NetState, TrainState

    widths = (4, 8, 8, 8, 8)
    vgg = models.get_model('vgg', config='D', stage_widths=widths, fc_features=16, num_classes=5)
    det = models.get_model('fast_rcnn', vgg_config='D', stage_widths=widths, fc_features=16, num_classes=3)
    classifier = vgg.init(jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    fresh = det.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)), jnp.zeros((1, 1, 4)))['params']
    state = TrainState(step=jnp.zeros((), jnp.int32), rng=jax.random.key_data(jax.random.key(2)),
                       nets={'model': NetState(params=fresh, batch_stats={}, opt_state=())})
    skip = ('params/fc8_layer/', 'params/cls_score_layer/', 'params/bbox_pred_layer/')
    loaded = init_from.transfer(state, {'model': {'params': classifier['params'], 'batch_stats': {}}}, skip)
    params = loaded.nets['model'].params
    for layer in [k for k in classifier['params'] if k != 'fc8_layer']:
        helpers.assert_trees_equal(params[layer], classifier['params'][layer])
    for head in ('cls_score_layer', 'bbox_pred_layer'):
        helpers.assert_trees_equal(params[head], fresh[head])
    with pytest.raises(init_from.InitFromError, match='fc8_layer'):
        init_from.transfer(state, {'model': {'params': classifier['params'], 'batch_stats': {}}},
                           skip=('params/cls_score_layer/', 'params/bbox_pred_layer/'))


@pytest.mark.slow
def test_a_resumed_detection_run_equals_an_uninterrupted_one(tmp_path, scenes_dir):
    """Stopping after 2 steps and resuming to 4 gives the parameters of 4 steps in one go: the RoI sampling keys
    and dropout masks are functions of the step, the input stream of the step (the loop's exact resume)."""
    straight = str(tmp_path / 'straight')
    loop.train_and_evaluate(_tiny(scenes_dir, num_train_steps=4, checkpoint_every='2'), straight)
    resumed = str(tmp_path / 'resumed')
    c = _tiny(scenes_dir, num_train_steps=2, checkpoint_every='2')
    c.evals.val.at_end = False
    loop.train_and_evaluate(c, resumed)
    c = _tiny(scenes_dir, num_train_steps=4, checkpoint_every='2')
    loop.train_and_evaluate(c, resumed)
    helpers.assert_trees_equal(helpers.final_params(resumed), helpers.final_params(straight))
