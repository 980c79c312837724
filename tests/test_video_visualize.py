"""`--mode=visualize` on clip models (convnets/visualize/clips.py): frame strips captioned with the prediction, and
the first 3D conv's filters as strips of their temporal slices, checked against the checkpoint's values."""

import math
import os
import re

import jax
import numpy as np
import pytest
from PIL import Image

from convnets.visualize import clips
from experiments import video_quickstart
from tests.helpers import final_params

DIRECTIONS = ('left', 'right', 'up', 'down')  # convnets_moving_digits' label names


def _reference_uint8(x):
    """min -> 0, max -> 255, rounded: the display scaling, written out independently of images.to_uint8."""
    x = np.asarray(x, np.float64)
    return np.round((x - x.min()) / (x.max() - x.min()) * 255.0).astype(np.uint8)


def _up(a, s):
    return np.repeat(np.repeat(a, s, axis=0), s, axis=1)


def _tiny(moving_digits_dir, variant=''):
    c = video_quickstart.get_config(variant)
    c.data.data_dir = moving_digits_dir
    c.model.widths = (4, 4, 8, 8, 8)
    c.model.fc_features = 8
    c.batch_size = c.eval_batch_size = 8
    c.num_train_steps, c.log_every, c.checkpoint_every = 2, '1', ''
    c.optimizer.warmup_steps = 0
    c.evals.val.every = ''
    for ev in c.evals.values():  # the pictures need only the checkpoint
        ev.at_end = False
    c.visualize.num_images = 8
    return c


@pytest.mark.slow
def test_visualize_c3d_draws_clips_with_predictions_and_conv1a_as_temporal_strips(tmp_path, moving_digits_dir):
    from convnets import models
    from convnets.data import pipeline
    from convnets.train import loop
    from convnets.visualize import report

    c = _tiny(moving_digits_dir)
    workdir = str(tmp_path / 'c3d')
    loop.train_and_evaluate(c, workdir, devices=jax.devices()[:1])
    out = report.visualize(c, workdir)
    vis = os.path.join(workdir, 'visualize')
    assert {'clip_0.png', 'conv1_filters.png', 'featuremaps_conv1a.png'} <= {os.path.basename(f) for f in out['files']}

    # The first eval clip and the checkpoint's prediction on it, computed here without the report's code.
    batch = next(pipeline.eval_batches(c.data, global_batch_size=8))
    clip, label = np.asarray(batch['image'][0], np.float32), int(batch['label'][0])
    params = final_params(workdir)
    model = models.get_model(**c.model)
    logits = np.asarray(model.apply({'params': params}, clip[None], train=False), np.float64)[0]
    prob = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    pred = int(np.argmax(prob))

    # clip_0.png: 10 frames of 32x32, upsampled 4x (to 128), 2 white pixels between and around them.
    t, h, w, _ = clip.shape
    strip = np.asarray(Image.open(os.path.join(vis, 'clip_0.png')))
    assert (t, h, w) == (10, 32, 32) and strip.shape == (h * 4 + 4, t * (w * 4 + 2) + 2)
    shown = _reference_uint8(clip[..., 0])  # one scale for the whole clip
    for f in (0, 5, 9):
        x0 = 2 + f * (w * 4 + 2)
        np.testing.assert_array_equal(strip[2:2 + h * 4, x0:x0 + w * 4], _up(shown[f], 4))
    assert np.all(strip[:, 2 + w * 4:4 + w * 4] == 255)  # the gap between frames 0 and 1
    with open(out['index']) as fh:
        page = fh.read()
    caption = re.search(r'src="clip_0.png".*?<figcaption>(.*?)</figcaption>', page).group(1)
    assert f'label {DIRECTIONS[label]} ({label})' in caption
    assert f'predicted {DIRECTIONS[pred]} ({pred}) with probability {prob[pred]:.3f}' in caption

    # conv1_filters.png: conv1a's 4 filters of 3x3x3x1, one strip each (3 slices of 3x3 shown 11x, 2 px apart),
    # strips 4 px apart, each filter scaled on its own over its 3 slices.
    kernel = params['conv1a_layer']['kernel']
    assert kernel.shape == (3, 3, 3, 1, 4)
    grid = np.asarray(Image.open(os.path.join(vis, 'conv1_filters.png')))
    strip_h, strip_w = 33 + 4, 3 * (33 + 2) + 2
    assert grid.shape == (4 + 4 * (strip_h + 4), 4 + strip_w + 4)
    for k in range(4):
        expected = _reference_uint8(kernel[..., 0, k])  # [3 slices, 3, 3]
        y0 = 4 + k * (strip_h + 4) + 2
        for s in range(3):
            x0 = 4 + 2 + s * (33 + 2)
            np.testing.assert_array_equal(grid[y0:y0 + 33, x0:x0 + 33], _up(expected[s], 11))
        assert grid[y0:y0 + 33, 4 + 2:4 + strip_w - 2].min() == 0  # the filter's min and max are in its strip
        assert grid[y0:y0 + 33, 4 + 2:4 + strip_w - 2].max() == 255
    filt_caption = re.search(r'src="conv1_filters.png".*?<figcaption>(.*?)</figcaption>', page).group(1)
    var = clips.temporal_variation(kernel)
    assert 'conv1a: its 4 filters of 3x3x3x1' in filt_caption
    assert f'largest first: {int(np.argmax(var))}: {var.max():.2f}' in filt_caption


class _Writer:
    def __init__(self):
        self.images = {}

    def add(self, section, name, image, caption):
        self.images[name] = (np.asarray(image), caption)


@pytest.mark.slow
def test_fusion_nets_draw_their_conv1_time_extent(moving_digits_dir):
    """Slow fusion's conv1 spans 4 frames (4 slices per strip); a single-frame net's spans 1 (still drawn)."""
    from convnets import models

    x = np.random.default_rng(0).normal(size=(2, 10, 32, 32, 1)).astype(np.float32)
    for variant, extent in (('slow_fusion', 4), ('single_frame', 1)):
        c = _tiny(moving_digits_dir, variant)
        model = models.get_model(**c.model)
        # Random parameters of the right shapes (an eager or jitted init costs seconds of compilation).
        shapes = jax.eval_shape(model.init, jax.random.key(0), x[:1])
        leaves, tree = jax.tree.flatten(shapes)
        rng = np.random.default_rng(1)
        variables = jax.tree.unflatten(tree, [(0.1 * rng.normal(size=a.shape)).astype(np.float32) for a in leaves])
        w = _Writer()
        notes, rows = clips.draw(w, c, model, variables, x, np.array([0, 1]))
        kernel = np.asarray(variables['params']['tower']['conv1_layer']['kernel'])
        assert kernel.shape == (extent, 11, 11, 1, 4)
        grid, caption = w.images['conv1_filters']
        scale = math.ceil(32 / 11)  # 3
        assert grid.shape[:2] == (4 + 4 * (11 * scale + 4 + 4), 4 + extent * (11 * scale + 2) + 2 + 4), variant
        assert caption.startswith(f'tower/conv1: its 4 filters of {extent}x11x11x1'), caption
        assert ('cannot respond to motion' in caption) == (extent == 1)
        assert {'clip_0', 'clip_1', 'featuremaps_tower_conv1'} <= set(w.images)
        assert 'predicted' in w.images['clip_0'][1] and any(r['layer'] == 'tower/conv1' for r in rows)


def test_filter_strips_layout_and_channels():
    rng = np.random.default_rng(0)
    kernel = rng.normal(size=(3, 2, 2, 5, 20))  # 5 input channels -> mean; 20 filters -> 2 columns of strips
    grid = clips.filter_strips(kernel, scale=1)
    strip_h, strip_w = 2 + 4, 3 * (2 + 2) + 2
    assert grid.shape == (4 + 16 * (strip_h + 4), 4 + 2 * (strip_w + 4), 1)
    for k in (0, 15, 16, 19):
        r, q = k % 16, k // 16
        y0, x0 = 4 + r * (strip_h + 4) + 2, 4 + q * (strip_w + 4) + 2
        got = np.stack([grid[y0:y0 + 2, x0 + s * 4:x0 + s * 4 + 2, 0] for s in range(3)])
        np.testing.assert_array_equal(got, _reference_uint8(kernel[..., k].mean(axis=-1)))
    assert np.all(grid[4 + 4 * (strip_h + 4):, 4 + strip_w + 4:] == 255)  # filters 20-31's slots are blank
    rgb = clips.filter_strips(rng.normal(size=(1, 3, 3, 3, 2)), scale=2)
    assert rgb.shape == (4 + 2 * (6 + 4 + 4), 4 + (6 + 4) + 4, 3)


def test_frame_strip_scales_the_whole_clip_at_once():
    clip = np.zeros((3, 4, 4, 4), np.float32)  # 4 channels -> grey mean
    clip[1] = 1.0
    clip[2] = 2.0
    strip = clips.frame_strip(clip, scale=2)
    assert strip.shape == (8 + 4, 3 * (8 + 2) + 2, 1)
    assert [int(strip[2, 2 + f * 10, 0]) for f in range(3)] == [0, 128, 255]
    assert clips.frame_strip(np.ones((2, 4, 4, 3)), 1).shape[-1] == 3


def test_temporal_variation_and_kernel_lookup():
    static = np.repeat(np.random.default_rng(1).normal(size=(1, 3, 3, 1, 2)), 3, axis=0)
    moving = static.copy()
    moving[0] *= -1.0
    var = clips.temporal_variation(np.concatenate([static, moving], axis=-1))
    np.testing.assert_allclose(var[:2], 0.0, atol=1e-12)
    assert np.all(var[2:] > 0.5)
    variables = {'params': {'fc6_layer': {'kernel': np.zeros((4, 2))},
                            'tower': {'conv2_layer': {'kernel': np.zeros((2, 5, 5, 4, 4))},
                                      'conv1_layer': {'kernel': np.ones((4, 11, 11, 1, 4))}}}}
    name, kernel = clips.first_conv3d_kernel(variables, ['tower/conv1', 'tower/conv2'])
    assert name == 'tower/conv1' and kernel.shape == (4, 11, 11, 1, 4)
    name, _ = clips.first_conv3d_kernel(variables, ['fc6'])  # no 5-D kernel in the sown order: the tree's first
    assert name == 'tower/conv1'
