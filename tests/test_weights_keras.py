"""The Keras applications' weights (convnets.weights.keras): each source's mapping covers exactly the tensors Keras
lists and our model's variables, seeded weights written as a released legacy h5 file give Keras' logits to 1e-4
(fixtures made by tools/weight_fixtures_keras.py; Keras is not needed here), and the h5 reader reads the other
layouts Keras writes (Keras 3 ``.weights.h5``, whole-model ``.h5``)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from convnets.weights import files, importer, mapping, sources
from tests import weight_parity

KERAS = ('vgg16', 'vgg19', 'resnet50')
# Our model for each Keras application and the input size of its fixture.
MODELS = {'vgg16': ('vgg16', 224), 'vgg19': ('vgg19', 224), 'resnet50': ('resnet50_keras', 64)}


@pytest.mark.parametrize('name', KERAS)
def test_source_record(name):
    source = sources.get('keras', name)
    assert source.key == f'keras_{name}' and source.layout == 'keras'
    assert source.model == {'name': MODELS[name][0]}
    assert source.preprocessing is sources.CAFFE_BGR
    assert source.url.startswith('https://storage.googleapis.com/tensorflow/keras-applications/')
    assert source.url.endswith('/' + source.file_name) and source.file_name.endswith('_tf_kernels.h5')
    assert source.top1 == {'vgg16': 71.3, 'vgg19': 71.3, 'resnet50': 74.9}[name]
    assert 'keras.io' in source.top1_reference
    assert name in sources.names('keras')


@pytest.mark.parametrize('name', KERAS)
def test_mapping_fits_the_keras_manifest_and_our_model(name):
    """Every tensor Keras lists is mapped once, onto every variable of our model, shapes equal (no compute)."""
    fix = weight_parity.fixture(f'keras_{name}')
    source = sources.get('keras', name)
    entries = source.mapping()
    ours = importer.variable_shapes(importer.build_model(source), fix['input_shape'])
    assert sorted(e.source for e in entries) == sorted(fix['shapes'])
    assert sorted(e.target for e in entries) == sorted(ours)
    for e in entries:  # every Keras tensor is already in our layout
        assert e.layout is mapping.IDENTITY
        assert tuple(fix['shapes'][e.source]) == ours[e.target], e


# VGG at 224 (138M / 144M parameters, 0.5 GB files) is slow; ResNet50 at 64 takes ~7 s on 2 CPU cores.
PARITY = [pytest.param(n, marks=pytest.mark.slow) for n in ('vgg16', 'vgg19', 'resnet50')]


@pytest.mark.parametrize('name', PARITY)
def test_parity_with_keras_logits(name, tmp_path):
    """Seeded weights in the released files' h5 layout, imported like a released file, give Keras' logits, and
    our trainable parameter count is Keras' (VGG16 138,357,544; VGG19 143,667,240; ResNet50 25,583,592)."""
    result = weight_parity.check(f'keras_{name}', str(tmp_path))
    assert result['ours'].shape == result['theirs'].shape == (2, 1000)
    assert result['relative'] <= weight_parity.RTOL, (result['max_abs'], result['relative'])
    assert result['num_params'] == result['source_num_params']
    # And back: exporting our variables gives the file's tensors, by Keras name, bit for bit.
    exported = importer.export_tensors(result['source'], result['variables'])
    read = files.read(result['path'])
    assert sorted(exported) == sorted(read)
    for key, value in read.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


# ------------------------------------------------------------------------------------------------ the h5 reader


def test_reader_reads_keras3_weights_h5_layout(tmp_path):
    """Keras 3 ``model.save_weights('x.weights.h5')``: ``layers/<layer>/vars/<i>``, read as ``<layer>/<i>`` in
    numeric order (10 after 9); layers without variables give nothing."""
    path = str(tmp_path / 'model.weights.h5')
    values = [np.full((2, i + 1), i, np.float32) for i in range(11)]
    with h5py.File(path, 'w') as f:
        f.create_group('vars')
        f.create_group('layers/input_layer/vars')
        many = f.create_group('layers/conv2d/vars')
        for i, value in enumerate(values):
            many.create_dataset(str(i), data=value)
        f.create_dataset('layers/dense/vars/0', data=np.ones((3, 4), np.float32))
        f.create_dataset('layers/dense/vars/1', data=np.zeros(4, np.float32))
    read = files.read(path)
    assert list(read) == [f'conv2d/{i}' for i in range(11)] + ['dense/0', 'dense/1']
    for i, value in enumerate(values):
        np.testing.assert_array_equal(read[f'conv2d/{i}'], value)
    assert read['dense/0'].shape == (3, 4) and read['dense/1'].shape == (4,)


def test_reader_reads_whole_model_h5(tmp_path):
    """A whole legacy model (``model.save('x.h5')``) keeps the weights under ``model_weights``; weight names may
    be nested paths (Keras 3's legacy writer: 'fc/kernel') or Keras 2 names ('fc/bias:0'); order is the
    ``weight_names`` order, not the file's."""
    path = str(tmp_path / 'model.h5')
    kernel, bias = np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(3, dtype=np.float32)
    with h5py.File(path, 'w') as f:
        f.attrs['model_config'] = '{}'
        f.create_group('optimizer_weights').create_dataset('iterations', data=np.zeros(()))
        root = f.create_group('model_weights')
        root.attrs['layer_names'] = [b'input', b'fc']
        root.create_group('input').attrs['weight_names'] = []
        fc = root.create_group('fc')
        fc.attrs['weight_names'] = [b'fc/kernel', b'fc/bias:0']
        fc.create_dataset('fc/bias:0', data=bias)
        fc.create_dataset('fc/kernel', data=kernel)
    read = files.read(path)
    assert list(read) == ['fc/0', 'fc/1']
    np.testing.assert_array_equal(read['fc/0'], kernel)
    np.testing.assert_array_equal(read['fc/1'], bias)


def test_legacy_h5_round_trip_through_write_keras_h5(tmp_path):
    """What the parity check writes is what the reader reads back, in Keras' order."""
    path = str(tmp_path / 'w.h5')
    bn = [np.full(3, i, np.float32) for i in range(4)]
    files.write_keras_h5(path, {'conv1_bn': bn, 'predictions': [np.ones((3, 2), np.float32), np.zeros(2)]})
    read = files.read(path)
    assert list(read) == ['conv1_bn/0', 'conv1_bn/1', 'conv1_bn/2', 'conv1_bn/3', 'predictions/0', 'predictions/1']
    for i in range(4):
        np.testing.assert_array_equal(read[f'conv1_bn/{i}'], bn[i])
