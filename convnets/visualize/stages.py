"""The DeconvNet stages of a model (Zeiler and Fergus 2013, Sec. 2.1), as the model itself declares them.

Each supported model class defines ``deconv_stages()`` next to its ``__call__`` (convnet, AlexNet, ZF Net, VGG,
LeNet-5), built from the same constants, so the description follows the architecture. The stage vocabulary
(:class:`Conv`, :class:`ReLU`, :class:`MaxPool`, :class:`Norm`, :class:`Subsample`, :class:`Squash`) lives in
:mod:`convnets.models.deconv_stages` and is re-exported here.
"""

from __future__ import annotations

import flax.linen as nn

from convnets.models.deconv_stages import Conv, MaxPool, Norm, Padding, ReLU, Squash, Stage, Subsample, Table
from convnets.models.registry import get_model, list_models

__all__ = [
    "Conv", "MaxPool", "Norm", "Padding", "ReLU", "Squash", "Stage", "Subsample", "Table", "describe",
    "supported_models",
]


def describe(model: nn.Module) -> list[Stage]:
    """The stages of ``model`` up to its last conv layer.

    ``NotImplementedError`` for a model without ``deconv_stages`` (or a variant it rejects, e.g. BatchNorm);
    ``ValueError`` for an invalid configuration.
    """
    stages = getattr(model, "deconv_stages", None)
    if stages is None:
        raise NotImplementedError(
            f"DeconvNet: model {type(model).__name__} is not supported; supported models: "
            f"{', '.join(supported_models())}"
        )
    return list(stages())


def supported_models() -> list[str]:
    """The registered model names whose default configuration declares its DeconvNet stages.

    Derived from the registry (importing :mod:`convnets.models.registry` imports every model module), so the list
    in the error message cannot go stale.
    """
    names = []
    for name in list_models():
        model = get_model(name)
        if not hasattr(model, "deconv_stages"):
            continue
        try:
            model.deconv_stages()
        except (NotImplementedError, ValueError):  # e.g. convnet_bn
            continue
        names.append(name)
    return names
