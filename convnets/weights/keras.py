"""The Keras applications' ImageNet weights: VGG16, VGG19 and ResNet50, registered as sources of
:mod:`convnets.weights.sources`.

Files: the ``include_top`` ("with the classifier") weights that ``keras.applications.VGG16/VGG19/ResNet50``
download (keras/src/applications/vgg16.py, vgg19.py: ``WEIGHTS_PATH``; resnet.py: ``BASE_WEIGHTS_PATH`` +
``f"{weights_name}_weights_tf_dim_ordering_tf_kernels.h5"``), in the legacy Keras 2 h5 layout. The reader
(:func:`convnets.weights.files.read`) names each tensor ``'<layer>/<i>'``, the i-th weight of the layer in Keras'
order: Conv2D and Dense ``kernel`` 0, ``bias`` 1; BatchNormalization ``gamma`` 0, ``beta`` 1, ``moving_mean`` 2,
``moving_variance`` 3.

Layouts: Keras (channels_last) keeps conv kernels as (kh, kw, in, out) and Dense kernels as (in, out), as flax
does, and its ``Flatten`` before VGG's fc1 flattens the NHWC map in row-major (h, w, c) order, as our VGG's fc6
does: every tensor maps unchanged (the parity tests prove it on Keras' own logits).

Architectures: VGG16 / VGG19 are our ``vgg16`` / ``vgg19`` (configs D / E) layer for layer (3x3 'same' convs
with biases, 2x2/2 max pools, fc1 / fc2 / predictions = our fc6 / fc7 / fc8). ResNet50 is our
``resnet50_keras``: the paper's v1 (stride on the first 1x1 of a downsampling bottleneck) with option-B
projections, plus a bias on every conv and BN epsilon 1.001e-5 (see :mod:`convnets.models.resnet`). Keras' other
details equal ours: ``ZeroPadding2D(3)`` + a 'valid' 7x7/2 conv is our symmetric padding 3; ``ZeroPadding2D(1)`` +
a 'valid' 3x3/2 max pool is our -inf padding 1, because the pool follows a ReLU (inputs >= 0, so a zero pad never
wins over the window's own values); the bottleneck's 3x3 is 'same' at stride 1 (= padding 1); Keras' projection
(``conv_shortcut=True``) is in block 1 of every stack, which is exactly where option B projects (stage 1's block
1 because 64 -> 256 channels, the others because of the stride 2); then a global average pool and the
``predictions`` Dense.

Preprocessing: Keras' 'caffe' mode (``imagenet_utils.preprocess_input``, used by vgg16/vgg19/resnet50
``preprocess_input``): RGB -> BGR, then the BGR mean (103.939, 116.779, 123.68) subtracted, no scaling
(:data:`convnets.weights.sources.CAFFE_BGR`).
"""

from __future__ import annotations

from convnets.models import resnet, vgg
from convnets.models.layers import param_name
from convnets.weights import sources
from convnets.weights.mapping import Entry

BASE_URL = 'https://storage.googleapis.com/tensorflow/keras-applications'
# keras.io/api/applications/, "Available models" (keras-team/keras-io templates/api/applications/index.md):
# single 224 centre crop top-1 on the ILSVRC-2012 validation set.
TOP1_REFERENCE = 'https://keras.io/api/applications/ ("Available models" table, Top-1 Accuracy)'


def dense_entries(target: str, source_layer: str) -> list[Entry]:
    """A Dense (or Conv2D with bias) layer: Keras' weight 0 is the kernel, 1 the bias; layouts already ours."""
    return [Entry(f'params/{target}/kernel', f'{source_layer}/0'), Entry(f'params/{target}/bias', f'{source_layer}/1')]


def batch_norm_entries(target: str, source_layer: str) -> list[Entry]:
    """A BatchNormalization layer: Keras' gamma, beta, moving_mean, moving_variance (weights 0-3)."""
    return [Entry(f'params/{target}/scale', f'{source_layer}/0'), Entry(f'params/{target}/bias', f'{source_layer}/1'),
            Entry(f'batch_stats/{target}/mean', f'{source_layer}/2'),
            Entry(f'batch_stats/{target}/var', f'{source_layer}/3')]


def vgg_mapping(config: str) -> list[Entry]:
    """Keras' VGG16 (config 'D') / VGG19 ('E'): ``block{s}_conv{i}`` -> ``conv{s}_{i}_layer``, ``fc1``, ``fc2``,
    ``predictions`` -> ``fc6_layer``, ``fc7_layer``, ``fc8_layer`` (keras/src/applications/vgg16.py, vgg19.py)."""
    entries: list[Entry] = []
    for s, kernels in enumerate(vgg.CONFIGS[config], start=1):
        for i in range(1, len(kernels) + 1):
            entries += dense_entries(param_name(vgg.conv_name(s, i)), f'block{s}_conv{i}')
    for ours, theirs in (('fc6', 'fc1'), ('fc7', 'fc2'), ('fc8', 'predictions')):
        entries += dense_entries(param_name(ours), theirs)
    return entries


def resnet_mapping(depth: int, width: int = 64) -> list[Entry]:
    """Keras' ResNet50/101/152 (v1, keras/src/applications/resnet.py) onto our ``resnet{depth}`` with
    ``conv_bias=True``: stem ``conv1_conv`` / ``conv1_bn``; stage s (1-4) is Keras' stack ``conv{s+1}``, block b's
    convs ``conv{s+1}_block{b}_{i}_conv`` / ``_{i}_bn`` (i = 1, 2, 3), its projection ``..._0_conv`` / ``_0_bn``;
    ``predictions`` the fc layer. Projections are placed where our option B puts them (dimensions change), which
    for bottleneck nets is block 1 of every stage, as Keras' ``conv_shortcut=True``."""
    stage_sizes, block = resnet.DEPTHS[depth]
    if block != 'bottleneck':
        raise ValueError(f'Keras has no basic-block ResNet; resnet{depth} has {block} blocks')
    entries = dense_entries('conv1_layer', 'conv1_conv') + batch_norm_entries('bn1_layer', 'conv1_bn')
    channels = width
    for s, (n, stride) in enumerate(zip(stage_sizes, resnet.STAGE_STRIDES, strict=True), start=1):
        features = width * 2 ** (s - 1)
        out = features * resnet.BOTTLENECK_EXPANSION
        for b in range(1, n + 1):
            ours, theirs = f'stage{s}_block{b}', f'conv{s + 1}_block{b}'
            for i in (1, 2, 3):
                entries += dense_entries(f'{ours}/conv{i}_layer', f'{theirs}_{i}_conv')
                entries += batch_norm_entries(f'{ours}/bn{i}_layer', f'{theirs}_{i}_bn')
            if (stride if b == 1 else 1) != 1 or channels != out:  # option B: a projection where dims change
                entries += dense_entries(f'{ours}/proj_layer', f'{theirs}_0_conv')
                entries += batch_norm_entries(f'{ours}/proj_bn_layer', f'{theirs}_0_bn')
            channels = out
    return entries + dense_entries('fc_layer', 'predictions')


def _vgg_source(name: str, config: str, top1: float) -> sources.Source:
    file_name = f'{name}_weights_tf_dim_ordering_tf_kernels.h5'  # keras/src/applications/{name}.py WEIGHTS_PATH
    return sources.Source(
        framework='keras', name=name, model={'name': name}, file_name=file_name,
        url=f'{BASE_URL}/{name}/{file_name}', preprocessing=sources.CAFFE_BGR, top1=top1,
        top1_reference=TOP1_REFERENCE, mapping=lambda: vgg_mapping(config), layout='keras')


VGG16 = sources.register(_vgg_source('vgg16', 'D', 71.3))
VGG19 = sources.register(_vgg_source('vgg19', 'E', 71.3))
# keras/src/applications/resnet.py: BASE_WEIGHTS_PATH + f"{weights_name}_weights_tf_dim_ordering_tf_kernels.h5".
RESNET50 = sources.register(sources.Source(
    framework='keras', name='resnet50', model={'name': 'resnet50_keras'},
    file_name='resnet50_weights_tf_dim_ordering_tf_kernels.h5',
    url=f'{BASE_URL}/resnet/resnet50_weights_tf_dim_ordering_tf_kernels.h5', preprocessing=sources.CAFFE_BGR,
    top1=74.9, top1_reference=TOP1_REFERENCE, mapping=lambda: resnet_mapping(50), layout='keras'))
