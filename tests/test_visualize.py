"""Visualisations: occlusion maps on a synthetic model, filter grids, receptive fields, top-k and the report."""

import os
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from convnets.models import lenet
from convnets.tasks import build_model
from convnets.train import loop
from convnets.visualize import filters, images, occlusion, report
from tests.helpers import tiny_config

SQUARE = (slice(3, 7), slice(2, 6))  # The only informative pixels: rows 3..6, columns 2..5.


class _SquareModel(nn.Module):
    """Class 1 iff every pixel of SQUARE is bright (min > 0.5); sows 'maps' = [x, 1 - x]."""

    @nn.compact
    def __call__(self, x, train=False):
        self.sow('intermediates', 'maps', jnp.concatenate([x, 1.0 - x], axis=-1))
        score = 20.0 * (jnp.min(x[:, SQUARE[0], SQUARE[1], 0], axis=(1, 2)) - 0.5)
        return jnp.stack([jnp.zeros_like(score), score], axis=-1)


def _overlaps(i, j, patch, stride):
    rows = i * stride < SQUARE[0].stop and i * stride + patch > SQUARE[0].start
    cols = j * stride < SQUARE[1].stop and j * stride + patch > SQUARE[1].start
    return rows and cols


@pytest.mark.parametrize('size,patch,stride', [(12, 3, 1), (12, 4, 2), (13, 5, 3), (12, 12, 1), (11, 2, 4)])
def test_occlusion_drops_probability_exactly_where_the_square_is_covered(size, patch, stride):
    image = np.zeros((size, size, 1), np.float32)
    image[SQUARE] = 1.0
    m = occlusion.occlusion_maps(_SquareModel(), {}, image, 1, patch=patch, stride=stride, layer='maps', fill=0.0)
    shape = ((size - patch) // stride + 1,) * 2
    assert m['probability'].shape == m['class'].shape == m['activation'].shape == shape
    assert occlusion.map_shape(size, size, patch, stride) == shape
    covered = np.array([[_overlaps(i, j, patch, stride) for j in range(shape[1])] for i in range(shape[0])])
    assert m['unoccluded_probability'] > 0.99 and m['unoccluded_class'] == 1
    np.testing.assert_array_equal(m['probability'] < 0.01, covered)
    np.testing.assert_array_equal(m['probability'] > 0.99, ~covered)
    np.testing.assert_array_equal(m['class'], np.where(covered, 0, 1))
    # Strongest map on the clean image: 1 - x (size^2 - 16 > 16). Occluding with 0 adds 1 per covered square pixel.
    assert m['feature'] == 1
    for i in range(shape[0]):
        for j in range(shape[1]):
            block = image[i * stride:i * stride + patch, j * stride:j * stride + patch]
            assert m['activation'][i, j] == pytest.approx(size * size - 16 + block.sum())


def test_occlusion_default_fill_is_the_image_mean_and_shape_errors():
    image = np.arange(36, dtype=np.float32).reshape(6, 6, 1)
    batch = occlusion.occluded_images(image, patch=2, stride=2)
    assert batch.shape == (9, 6, 6, 1)
    np.testing.assert_array_equal(batch[4, 2:4, 2:4], np.full((2, 2, 1), image.mean()))
    np.testing.assert_array_equal(batch[4, :2], image[:2])
    with pytest.raises(ValueError):
        occlusion.map_shape(6, 6, 7, 1)


def test_filter_grid_tiles_each_filter_to_full_range():
    kernel = np.random.default_rng(0).normal(size=(5, 5, 1, 6))
    grid = filters.filter_grid(kernel, pad=1)
    assert grid.dtype == np.uint8 and grid.shape == (2 * 5 + 3, 3 * 5 + 4, 1)  # 2 rows x 3 columns
    for k in range(6):
        r, c = divmod(k, 3)
        t = grid[1 + r * 6:1 + r * 6 + 5, 1 + c * 6:1 + c * 6 + 5, 0]
        assert t.min() == 0 and t.max() == 255
        np.testing.assert_array_equal(np.argsort(t, axis=None, kind='stable')[[0, -1]],
                                      [np.argmin(kernel[..., 0, k]), np.argmax(kernel[..., 0, k])])
    rgb = filters.filter_grid(np.random.default_rng(1).normal(size=(3, 3, 3, 4)))
    assert rgb.shape == (9, 9, 3)


def test_receptive_fields_of_lenet_follow_the_kernel_and_stride_arithmetic():
    model = lenet.LeNet5()
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 1)))
    expect = {'C1': (5, 1), 'S2': (6, 2), 'C3': (14, 2), 'S4': (16, 4), 'C5': (32, 1)}
    for layer, (size, stride) in expect.items():
        field = filters.receptive_field(model, variables, (32, 32, 1), layer)
        assert field['size'] == (size, size) and field['stride'] == (stride, stride), layer
        assert field['offset'] == (0, 0), layer
    crop = filters.crop_field(np.arange(32 * 32.).reshape(32, 32, 1), {'size': (6, 6), 'stride': (2, 2),
                                                                      'offset': (0, 0)}, 3, 4)
    np.testing.assert_array_equal(crop[..., 0], np.arange(32 * 32.).reshape(32, 32)[6:12, 8:14])


def test_top_activations_and_activation_summary():
    acts = np.zeros((5, 3, 3, 2), np.float32)
    for n, (y, x, v) in enumerate([(0, 1, 3.0), (2, 2, 7.0), (1, 0, 5.0), (2, 0, 1.0), (0, 0, 9.0)]):
        acts[n, y, x, 0] = v
    top = filters.top_activations(acts, [0], k=3, mask=np.array([1, 1, 1, 1, 0]))
    assert top[0] == [(1, 2, 2, 7.0), (2, 1, 0, 5.0), (0, 0, 1, 3.0)]
    rows = filters.activation_summary({'a': np.array([[0.0, 1.0, -2.0, 2.0]])})
    assert rows[0]['frac_zero'] == 0.25 and rows[0]['frac_saturated'] == 0.5 and rows[0]['max'] == 2.0


def test_images_helpers():
    np.testing.assert_array_equal(images.to_uint8(np.array([1.0, 2.0, 3.0])), [0, 128, 255])
    assert images.colormap(np.zeros((3, 4))).shape == (3, 4, 3)
    assert images.resize_nearest(np.arange(6).reshape(2, 3), 4, 6).shape == (4, 6)
    assert images.hstack([np.zeros((4, 2, 1), np.uint8), np.zeros((3, 5, 3), np.uint8)], gap=1).shape == (4, 8, 3)


def _tensorboard_image_tags(logdir):
    import tensorflow as tf

    tags = set()
    for name in os.listdir(logdir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == 'images':
                    tags.add(value.tag)
    return tags


def test_visualize_quickstart_end_to_end(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    with config.unlocked():
        config.visualize.num_images = 40
        config.visualize.features = 2
        config.visualize.occlusion_images = 1
    out = report.visualize(config, workdir)
    vis = os.path.join(workdir, 'visualize')
    # LeNet-5 on 32x32x1: maps (32 - 8) // 2 + 1 = 13, upsampled to the image size x 4 (>= 128 pixels).
    expect = {'filters.png': None, 'occlusion_0_image.png': (128, 128), 'occlusion_0_activation.png': (128, 128),
              'occlusion_0_probability.png': (128, 128), 'occlusion_0_class.png': (128, 128),
              'input_0.png': (128, 128), 'featuremaps_C1.png': None}
    expect.update({f'top9_{layer}_{f}.png': None for layer in ('C1', 'S2', 'C3', 'S4', 'C5') for f in (0, 1)})
    for name, size in expect.items():
        path = os.path.join(vis, name)
        assert path in out['files'] and os.path.getsize(path) > 0, name
        with Image.open(path) as img:
            img.load()
            if size is not None:
                assert img.size == size, name
    with Image.open(os.path.join(vis, 'filters.png')) as img:  # 6 tiles of 5x5 in 2x3, pad 1: 13x19, upsampled.
        assert img.size[0] * 13 == img.size[1] * 19 and img.size[1] % 13 == 0
    assert out['index'] == os.path.join(vis, 'index.html')
    with open(out['index']) as f:
        page = f.read()
    srcs = re.findall(r'<img src="([^"]+)"', page)
    assert sorted(srcs) == sorted(os.path.basename(p) for p in out['files'])
    assert all(os.path.getsize(os.path.join(vis, s)) > 0 for s in srcs)
    assert 'frac_zero' in page and 'C3' in page
    try:
        from convnets.visualize import deconvnet
        shown = deconvnet.supported(build_model(config.model))
    except ImportError:
        shown = False
    assert ('DeconvNet projections are not shown' in page) == (not shown)
    tags = _tensorboard_image_tags(os.path.join(workdir, 'tensorboard'))
    assert {'visualize/filters', 'visualize/occlusion_0_probability', 'visualize/top9_C3_0'} <= tags


def test_visualize_shows_deconvnet_projections_when_supported(tmp_path, digits_dir):
    """With a model the DeconvNet supports, each top-k figure holds the patches and the projections side by side."""
    deconvnet = pytest.importorskip('convnets.visualize.deconvnet')
    config = tiny_config(digits_dir, name='convnet', num_classes=10)
    if not deconvnet.supported(build_model(config.model)):
        pytest.skip('the DeconvNet does not support convnet')
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    with config.unlocked():
        config.visualize.num_images = 20
        config.visualize.features = 1
        config.visualize.occlusion_images = 1
    out = report.visualize(config, workdir)
    with open(out['index']) as f:
        page = f.read()
    assert 'DeconvNet projections are not shown' not in page and 'DeconvNet projections (mode=max)' in page
    with Image.open(os.path.join(workdir, 'visualize', 'top9_conv1_0.png')) as img:
        assert img.size[0] > 2 * img.size[1]  # Two 3x3 grids side by side.
