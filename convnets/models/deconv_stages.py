"""The stage vocabulary in which a model describes itself to the DeconvNet (Zeiler and Fergus 2013, Sec. 2.1).

A supported model's ``deconv_stages()`` method lists, in order, the stages between the image and its last conv
layer (the fully-connected layers are not projected). Each model builds that list from the same constants its
``__call__`` uses, so the description cannot drift from the architecture. The vocabulary lives here, in the
models package, so that models need nothing from :mod:`convnets.visualize`:

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
from collections.abc import Sequence

Padding = str | Sequence[tuple[int, int]]  # 'VALID', 'SAME' or ((top, bottom), (left, right)), as nn.Conv takes
Table = tuple[tuple[bool, ...], ...]  # table[i][j]: output map j sees input map i (ConnectionTableConv)


@dataclasses.dataclass(frozen=True)
class Conv:
    """A convolution; parameters in ``params[layer + '_layer']``."""

    layer: str
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "VALID"
    sown: str | None = None
    table: Table | None = None


@dataclasses.dataclass(frozen=True)
class ReLU:
    """The rectification after a conv layer."""

    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling over ``window x window`` fields with ``stride``; ``ceil_mode``: Caffe's rounding."""

    window: int
    stride: int
    ceil_mode: bool = False
    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class Norm:
    """Normalisation across maps (LRN, contrast normalisation)."""

    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class Subsample:
    """LeNet-5's trainable subsampling; parameters (``coeff``, ``bias``) in ``params[layer + '_layer']``."""

    layer: str
    window: int = 2
    sown: str | None = None


@dataclasses.dataclass(frozen=True)
class Squash:
    """LeNet-5's squashing function (scaled tanh)."""

    sown: str | None = None


Stage = Conv | ReLU | MaxPool | Norm | Subsample | Squash
