"""Per-model stage descriptions for the DeconvNet (Zeiler and Fergus 2013, Sec. 2.1).

A supported model is described, from its own fields, as the ordered list of the stages between the image and its
last conv layer (the fully-connected layers are not projected):

- :class:`Conv`: a convolution whose parameters live in ``params['<layer>_layer']`` (``kernel``; the bias is not
  used on the way down). Strides and padding are given here; the kernel size and the number of groups
  (``feature_group_count``) are read from the kernel's shape and the input's channel count.
- :class:`ReLU`: the rectification after a conv layer.
- :class:`MaxPool`: max pooling (``window``, ``stride``, ``ceil_mode`` as in :func:`convnets.models.layers.max_pool`).
- :class:`Norm`: LRN / contrast normalisation across maps, passed through unchanged on the way down (as the ZF
  paper does: its DeconvNet has no normalisation step).
- :class:`Subsample`: LeNet-5's trainable subsampling (``params['<layer>_layer']``: ``coeff``, ``bias``); on the way
  down, the transpose of its linear part (each value spread over its window times the map's coefficient, no bias).
- :class:`Squash`: LeNet-5's scaled tanh; on the way down, the ZF rectification step (see
  :mod:`convnets.visualize.deconvnet`).

A :class:`Conv` with a connection ``table`` (LeNet-5's C3) stores only the connected kernels, ``(kh, kw, n)``; the
DeconvNet scatters them into the full ``(kh, kw, n_in, n_out)`` kernel as the model does.

``sown`` names the intermediate (collection ``'intermediates'``) the model sows for a stage's output, when it
sows one; the DeconvNet reads the forward activations from those names. The activation of conv layer ``L`` is the
output of its ReLU (the ``Conv`` itself when no ReLU follows, e.g. a linear net).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import flax.linen as nn

from convnets.models.alexnet import CAFFE_INPUT_SIZE, AlexNet
from convnets.models.convnet import ConvNet
from convnets.models.lenet import C3_TABLE, LeNet5
from convnets.models.vgg import CONFIGS, LRN_CONFIGS, VGG
from convnets.models.zfnet import ZFNet

Padding = str | Sequence[tuple[int, int]]
Table = tuple[tuple[bool, ...], ...]


@dataclasses.dataclass(frozen=True)
class Conv:
    layer: str  # parameters in params[layer + '_layer']
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "VALID"  # 'VALID', 'SAME' or ((top, bottom), (left, right))
    sown: str | None = None
    table: Table | None = None  # table[i][j]: output map j sees input map i (ConnectionTableConv)


@dataclasses.dataclass(frozen=True)
class ReLU:
    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class MaxPool:
    window: int
    stride: int
    ceil_mode: bool = False
    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class Norm:
    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class Subsample:
    layer: str  # parameters (coeff, bias) in params[layer + '_layer']
    window: int = 2
    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class Squash:
    sown: str | None = None


Stage = Conv | ReLU | MaxPool | Norm | Subsample | Squash

SUPPORTED_MODELS = ("convnet", "alexnet", "alexnet_one_tower", "zfnet", "vgg (A, A-LRN, B, C, D, E)", "lenet5")


def _convnet(model: ConvNet) -> list[Stage]:
    if model.batch_norm:
        raise NotImplementedError("DeconvNet: ConvNet with batch_norm=True (convnet_bn) is not supported")
    return [Conv("conv1", padding="SAME", sown="conv1"), ReLU("relu1"), MaxPool(2, 2, sown="pool1")]


def _alexnet(model: AlexNet) -> list[Stage]:
    pad1 = "VALID" if model.input_size == CAFFE_INPUT_SIZE else ((2, 2), (2, 2))
    pool = (3, 2) if model.overlapping_pool else (2, 2)
    stages: list[Stage] = []
    for i, (strides, pad) in enumerate((((4, 4), pad1), ((1, 1), ((2, 2), (2, 2)))), start=1):
        stages += [Conv(f"conv{i}", strides, pad), ReLU(f"conv{i}")]
        if model.lrn:
            stages.append(Norm(f"norm{i}"))
        stages.append(MaxPool(*pool, sown=f"pool{i}"))
    for name in ("conv3", "conv4", "conv5"):
        stages += [Conv(name, (1, 1), ((1, 1), (1, 1))), ReLU(name)]
    return stages


def _zfnet(model: ZFNet) -> list[Stage]:
    stages: list[Stage] = []
    for i, (strides, pad) in enumerate((((2, 2), ((1, 1), (1, 1))), ((2, 2), "VALID")), start=1):
        stages += [Conv(f"conv{i}", strides, pad), ReLU(f"conv{i}"), MaxPool(3, 2, ceil_mode=True, sown=f"pool{i}")]
        if model.contrast_norm:
            stages.append(Norm(f"norm{i}"))
    for name in ("conv3", "conv4", "conv5"):
        stages += [Conv(name, (1, 1), ((1, 1), (1, 1))), ReLU(name)]
    return stages


def _vgg(model: VGG) -> list[Stage]:
    if model.config not in CONFIGS:
        raise ValueError(f"Unknown VGG config {model.config!r}; valid: {', '.join(CONFIGS)}")
    stages: list[Stage] = []
    for s, kernels in enumerate(CONFIGS[model.config], start=1):
        for i, k in enumerate(kernels, start=1):
            pad = (k - 1) // 2
            stages += [Conv(f"conv{s}_{i}", (1, 1), ((pad, pad), (pad, pad))), ReLU(f"conv{s}_{i}")]
            if s == 1 and i == 1 and model.config in LRN_CONFIGS:
                stages.append(Norm("norm1"))
        stages.append(MaxPool(2, 2, sown=f"pool{s}"))
    # Nothing above the last conv layer is projected: drop the trailing pool5.
    return stages[:-1]


def _lenet(model: LeNet5) -> list[Stage]:
    # Conv layers C1, C3, C5; their activations are sown after the squashing function, as are S2 and S4.
    table = tuple(tuple(bool(v) for v in row) for row in C3_TABLE) if model.c3_table else None
    return [
        Conv("C1"), Squash("C1"), Subsample("S2"), Squash("S2"),
        Conv("C3", table=table), Squash("C3"), Subsample("S4"), Squash("S4"),
        Conv("C5"), Squash("C5"),
    ]


DESCRIBERS: dict[type, Callable[[Any], list[Stage]]] = {
    ConvNet: _convnet,
    AlexNet: _alexnet,
    ZFNet: _zfnet,
    VGG: _vgg,
    LeNet5: _lenet,
}


def describe(model: nn.Module) -> list[Stage]:
    """The stages of ``model`` up to its last conv layer; ``NotImplementedError`` for unsupported models."""
    for cls, fn in DESCRIBERS.items():
        if isinstance(model, cls):
            return fn(model)
    raise NotImplementedError(
        f"DeconvNet: model {type(model).__name__} is not supported; supported models: {', '.join(SUPPORTED_MODELS)}"
    )
