"""Model zoo: ``get_model(name, **kwargs)`` builds any registered model.

Importing this package imports every model module, which registers its models.
"""

from convnets.models import convnet, lenet  # noqa: F401  (imported for registration)
from convnets.models.convnet import ConvNet
from convnets.models.lenet import C3_TABLE, LeNet5
from convnets.models.registry import UnknownModelArgumentError, get_model, list_models, register

__all__ = [
    "C3_TABLE",
    "ConvNet",
    "LeNet5",
    "UnknownModelArgumentError",
    "get_model",
    "list_models",
    "register",
]
