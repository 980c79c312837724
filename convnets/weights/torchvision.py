"""torchvision's ImageNet weights (the ``IMAGENET1K_V1`` release of each network) as sources for our models.

Registered networks (torchvision builder -> our model):

- ``resnet18``, ``resnet34`` -> ``resnet18``, ``resnet34``; ``resnet50``, ``resnet101``, ``resnet152`` ->
  ``resnet50_v1_5``, ``resnet101_v1_5``, ``resnet152_v1_5``: torchvision's bottleneck puts the stride of a
  downsampling block on its 3x3 conv (torchvision/models/resnet.py, class Bottleneck: ``conv2 = conv3x3(width,
  width, stride, ...)``), the "v1.5" placement; our ``resnet50`` etc. are the paper's v1.
- ``vgg11``, ``vgg13``, ``vgg16``, ``vgg19`` -> the same names (configurations A, B, D, E) and ``vgg11_bn`` ...
  ``vgg19_bn`` -> the same names (``batch_norm=True``).
- ``googlenet`` -> ``googlenet_torchvision`` with its auxiliary heads: the released file holds ``aux1.*`` and
  ``aux2.*``, and every tensor is used. Its input is the [-1, 1] scaling (``transform_input=True`` in torchvision,
  preprocessing here: :data:`~convnets.weights.sources.TORCHVISION_GOOGLENET`).
- ``alexnet`` -> ``alexnet_torchvision`` (one tower, 64-192-384-256-256, no LRN).

The file names, URLs and published top-1 (``meta["_metrics"]["ImageNet-1K"]["acc@1"]`` of the ``*_Weights``
enums, single 224 centre crop of a 256 resize) are those of torchvision 0.29.1, torchvision/models/{resnet, vgg,
googlenet, alexnet}.py; the parity fixtures record them too and a test compares.

Mappings are derived from the architecture tables of our models (``resnet.DEPTHS``, ``vgg.CONFIGS``,
``googlenet.STAGES``, ...) and torchvision's module layout (``nn.Sequential`` indices of VGG's and AlexNet's
``features`` and ``classifier``). PyTorch's ``num_batches_tracked`` BatchNorm counters carry no weights and are
ignored on import.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from convnets.models import alexnet, googlenet, resnet, vgg
from convnets.models.layers import param_name
from convnets.weights.mapping import TORCH_CONV, TORCH_DENSE, Entry, Layout, torch_dense_after_flatten
from convnets.weights.sources import TORCHVISION, TORCHVISION_GOOGLENET, Preprocessing, Source, register

URL_ROOT = 'https://download.pytorch.org/models/'
BN_IGNORE = (r'.*num_batches_tracked',)
REFERENCE = ('torchvision 0.29.1 {enum}.IMAGENET1K_V1.meta["_metrics"]["ImageNet-1K"]["acc@1"] '
             '(torchvision/models/{module}.py; https://pytorch.org/vision/stable/models.html)')


# ----------------------------------------------------------------------------------------------- building blocks


def conv(target: str, source: str, bias: bool = True) -> list[Entry]:
    """A conv layer: flax ``{target}/kernel`` (HWIO) <- torch ``{source}.weight`` (OIHW), and the bias."""
    entries = [Entry(f'params/{target}/kernel', f'{source}.weight', TORCH_CONV)]
    return entries + ([Entry(f'params/{target}/bias', f'{source}.bias')] if bias else [])


def dense(target: str, source: str, layout: Layout = TORCH_DENSE) -> list[Entry]:
    """A linear layer: flax ``{target}/kernel`` (in, out) <- torch ``{source}.weight`` (out, in), and the bias."""
    return [Entry(f'params/{target}/kernel', f'{source}.weight', layout),
            Entry(f'params/{target}/bias', f'{source}.bias')]


def batch_norm(target: str, source: str) -> list[Entry]:
    """flax BatchNorm ``scale``/``bias`` and running ``mean``/``var`` <- torch ``weight``/``bias``/``running_*``."""
    return [Entry(f'params/{target}/scale', f'{source}.weight'),
            Entry(f'params/{target}/bias', f'{source}.bias'),
            Entry(f'batch_stats/{target}/mean', f'{source}.running_mean'),
            Entry(f'batch_stats/{target}/var', f'{source}.running_var')]


# ----------------------------------------------------------------------------------------------- ResNet


def resnet_mapping(depth: int) -> list[Entry]:
    """torchvision ``resnet{depth}`` -> our ResNet of that depth (torchvision/models/resnet.py, class ResNet:
    ``conv1``, ``bn1``, ``layer1`` ... ``layer4`` of blocks with ``conv{i}``, ``bn{i}`` and, where the shortcut is
    a projection, ``downsample = Sequential(conv1x1, BatchNorm2d)``; ``fc``)."""
    stage_sizes, block = resnet.DEPTHS[depth]
    bottleneck = block == 'bottleneck'
    convs = 3 if bottleneck else 2
    entries = conv('conv1_layer', 'conv1', bias=False) + batch_norm('bn1_layer', 'bn1')
    channels = 64  # after the stem
    for s, (n, stride) in enumerate(zip(stage_sizes, resnet.STAGE_STRIDES, strict=True), start=1):
        out = 64 * 2 ** (s - 1) * (resnet.BOTTLENECK_EXPANSION if bottleneck else 1)
        for b in range(n):
            ours, theirs = f'stage{s}_block{b + 1}', f'layer{s}.{b}'
            for i in range(1, convs + 1):
                entries += conv(f'{ours}/conv{i}_layer', f'{theirs}.conv{i}', bias=False)
                entries += batch_norm(f'{ours}/bn{i}_layer', f'{theirs}.bn{i}')
            # Option B (both): a projection exactly where the block changes the size or the width.
            if b == 0 and (stride != 1 or channels != out):
                entries += conv(f'{ours}/proj_layer', f'{theirs}.downsample.0', bias=False)
                entries += batch_norm(f'{ours}/proj_bn_layer', f'{theirs}.downsample.1')
            channels = out
    return entries + dense('fc_layer', 'fc')


# ----------------------------------------------------------------------------------------------- VGG


def vgg_mapping(config: str, batch_norm_: bool) -> list[Entry]:
    """torchvision ``vgg*`` / ``vgg*_bn`` -> our VGG ``config`` (torchvision/models/vgg.py: ``features`` is the
    ``nn.Sequential`` of ``make_layers`` -- Conv2d, [BatchNorm2d,] ReLU per conv and MaxPool2d per stage -- and
    ``classifier`` is Linear(0), ReLU, Dropout, Linear(3), ReLU, Dropout, Linear(6); fc6 reads the (512, 7, 7)
    map flattened in (c, h, w) order)."""
    entries: list[Entry] = []
    index = 0  # position in torchvision's features Sequential
    for s, kernels in enumerate(vgg.CONFIGS[config], start=1):
        for i, _ in enumerate(kernels, start=1):
            entries += conv(param_name(vgg.conv_name(s, i)), f'features.{index}')
            if batch_norm_:
                entries += batch_norm(param_name(f'bn{s}_{i}'), f'features.{index + 1}')
            index += 3 if batch_norm_ else 2  # conv, [bn,] relu
        index += 1  # the stage's max pool
    window = 224 // vgg.DOWNSAMPLING  # torchvision's AdaptiveAvgPool2d((7, 7)): the pool5 map at 224
    fc6_layout = torch_dense_after_flatten(vgg.STAGE_WIDTHS[-1], window, window)
    return (entries + dense('fc6_layer', 'classifier.0', fc6_layout) + dense('fc7_layer', 'classifier.3')
            + dense('fc8_layer', 'classifier.6'))


# ----------------------------------------------------------------------------------------------- GoogLeNet

# Our stem unit <- torchvision's BasicConv2d (torchvision/models/googlenet.py, GoogLeNet.__init__: conv1 7x7/2,
# conv2 1x1, conv3 3x3).
GOOGLENET_STEM = (('conv1', 'conv1'), ('conv2_reduce', 'conv2'), ('conv2', 'conv3'))
# Our Inception branch unit <- torchvision's (class Inception: branch1; branch2 = 1x1, 3x3; branch3 = 1x1,
# "5x5" (3x3); branch4 = MaxPool2d, 1x1).
INCEPTION_BRANCHES = (('b1x1', 'branch1'), ('b3x3_reduce', 'branch2.0'), ('b3x3', 'branch2.1'),
                      ('b5x5_reduce', 'branch3.0'), ('b5x5', 'branch3.1'), ('pool_proj', 'branch4.1'))
AUX_CONV_WIDTH, AUX_POOL = 128, 4  # class InceptionAux: adaptive_avg_pool2d(x, (4, 4)), conv 1x1 128, fc1(2048)


def basic_conv(target: str, source: str) -> list[Entry]:
    """Our ConvUnit (variant 'torchvision': ``conv`` without bias, ``bn``) <- torchvision's BasicConv2d."""
    return conv(f'{target}/conv', f'{source}.conv', bias=False) + batch_norm(f'{target}/bn', f'{source}.bn')


def googlenet_mapping() -> list[Entry]:
    """torchvision ``googlenet`` (``aux_logits=True``: the released file's aux1/aux2 included) -> our
    ``googlenet_torchvision`` with ``aux_heads=True``."""
    entries: list[Entry] = []
    for ours, theirs in GOOGLENET_STEM:
        entries += basic_conv(param_name(ours), theirs)
    for block in (b for stage in googlenet.STAGES for b in stage):
        for ours, theirs in INCEPTION_BRANCHES:
            entries += basic_conv(f'{param_name(f"inception{block}")}/{ours}', f'inception{block}.{theirs}')
    aux_flatten = torch_dense_after_flatten(AUX_CONV_WIDTH, AUX_POOL, AUX_POOL)
    for head in googlenet.AUX_AFTER.values():
        ours = param_name(head)
        entries += basic_conv(f'{ours}/conv', f'{head}.conv')
        entries += dense(f'{ours}/fc', f'{head}.fc1', aux_flatten) + dense(f'{ours}/classifier', f'{head}.fc2')
    return entries + dense('fc_layer', 'fc')


# ----------------------------------------------------------------------------------------------- AlexNet


def alexnet_mapping() -> list[Entry]:
    """torchvision ``alexnet`` -> our ``alexnet_torchvision`` (torchvision/models/alexnet.py: ``features`` is
    Conv, ReLU, MaxPool for conv1 and conv2, Conv, ReLU for conv3-conv5, then MaxPool; ``classifier`` is Dropout,
    Linear(1), ReLU, Dropout, Linear(4), ReLU, Linear(6); fc6 reads the (256, 6, 6) map in (c, h, w) order)."""
    entries: list[Entry] = []
    index = 0
    for name in alexnet.POOLED_CONVS + alexnet.PLAIN_CONVS:
        entries += conv(param_name(name), f'features.{index}')
        index += 3 if name in alexnet.POOLED_CONVS else 2  # conv, relu[, pool]
    fc6_layout = torch_dense_after_flatten(alexnet.TORCHVISION_WIDTHS[-1], 6, 6)
    return (entries + dense('fc6_layer', 'classifier.1', fc6_layout) + dense('fc7_layer', 'classifier.4')
            + dense('fc8_layer', 'classifier.6'))


# ----------------------------------------------------------------------------------------------- the sources

# (torchvision builder, our model, release file, acc@1, weights enum, torchvision module, mapping, preprocessing)
_Row = tuple[str, str, str, float, str, str, Callable[[], list[Entry]], Preprocessing]
RELEASES: tuple[_Row, ...] = (
    ('resnet18', 'resnet18', 'resnet18-f37072fd.pth', 69.758, 'ResNet18_Weights', 'resnet',
     functools.partial(resnet_mapping, 18), TORCHVISION),
    ('resnet34', 'resnet34', 'resnet34-b627a593.pth', 73.314, 'ResNet34_Weights', 'resnet',
     functools.partial(resnet_mapping, 34), TORCHVISION),
    ('resnet50', 'resnet50_v1_5', 'resnet50-0676ba61.pth', 76.130, 'ResNet50_Weights', 'resnet',
     functools.partial(resnet_mapping, 50), TORCHVISION),
    ('resnet101', 'resnet101_v1_5', 'resnet101-63fe2227.pth', 77.374, 'ResNet101_Weights', 'resnet',
     functools.partial(resnet_mapping, 101), TORCHVISION),
    ('resnet152', 'resnet152_v1_5', 'resnet152-394f9c45.pth', 78.312, 'ResNet152_Weights', 'resnet',
     functools.partial(resnet_mapping, 152), TORCHVISION),
    ('vgg11', 'vgg11', 'vgg11-8a719046.pth', 69.020, 'VGG11_Weights', 'vgg',
     functools.partial(vgg_mapping, 'A', False), TORCHVISION),
    ('vgg13', 'vgg13', 'vgg13-19584684.pth', 69.928, 'VGG13_Weights', 'vgg',
     functools.partial(vgg_mapping, 'B', False), TORCHVISION),
    ('vgg16', 'vgg16', 'vgg16-397923af.pth', 71.592, 'VGG16_Weights', 'vgg',
     functools.partial(vgg_mapping, 'D', False), TORCHVISION),
    ('vgg19', 'vgg19', 'vgg19-dcbb9e9d.pth', 72.376, 'VGG19_Weights', 'vgg',
     functools.partial(vgg_mapping, 'E', False), TORCHVISION),
    ('vgg11_bn', 'vgg11_bn', 'vgg11_bn-6002323d.pth', 70.370, 'VGG11_BN_Weights', 'vgg',
     functools.partial(vgg_mapping, 'A', True), TORCHVISION),
    ('vgg13_bn', 'vgg13_bn', 'vgg13_bn-abd245e5.pth', 71.586, 'VGG13_BN_Weights', 'vgg',
     functools.partial(vgg_mapping, 'B', True), TORCHVISION),
    ('vgg16_bn', 'vgg16_bn', 'vgg16_bn-6c64b313.pth', 73.360, 'VGG16_BN_Weights', 'vgg',
     functools.partial(vgg_mapping, 'D', True), TORCHVISION),
    ('vgg19_bn', 'vgg19_bn', 'vgg19_bn-c79401a0.pth', 74.218, 'VGG19_BN_Weights', 'vgg',
     functools.partial(vgg_mapping, 'E', True), TORCHVISION),
    ('googlenet', 'googlenet_torchvision', 'googlenet-1378be20.pth', 69.778, 'GoogLeNet_Weights', 'googlenet',
     googlenet_mapping, TORCHVISION_GOOGLENET),
    ('alexnet', 'alexnet_torchvision', 'alexnet-owt-7be5be79.pth', 56.522, 'AlexNet_Weights', 'alexnet',
     alexnet_mapping, TORCHVISION),
)


def _has_batch_norm(name: str) -> bool:
    return name.startswith(('resnet', 'googlenet')) or name.endswith('_bn')


for _name, _model, _file, _top1, _enum, _module, _mapping, _pre in RELEASES:
    register(Source(
        framework='torchvision', name=_name, model={'name': _model}, file_name=_file, url=URL_ROOT + _file,
        preprocessing=_pre, top1=_top1, top1_reference=REFERENCE.format(enum=_enum, module=_module),
        mapping=_mapping, ignore=BN_IGNORE if _has_batch_norm(_name) else (), layout='torch',
    ))
