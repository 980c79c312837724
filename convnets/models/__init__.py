"""Model zoo: ``get_model(name, **kwargs)`` builds any registered model.

Importing this package imports every model module, which registers its models.
"""

from convnets.models import (  # noqa: F401  (imported for registration)
    alexnet,
    c3d,
    convnet,
    dcgan,
    fast_rcnn,
    faster_rcnn,
    gan_mlp,
    googlenet,
    lenet,
    resnet,
    resnet_cifar,
    vgg,
    video_fusion,
    zfnet,
)
from convnets.models.alexnet import AlexNet
from convnets.models.convnet import ConvNet
from convnets.models.googlenet import GoogLeNet
from convnets.models.layers import LocalResponseNorm
from convnets.models.lenet import C3_TABLE, LeNet5
from convnets.models.registry import UnknownModelArgumentError, get_model, list_models, register
from convnets.models.resnet import ResNet
from convnets.models.resnet_cifar import CifarResNet
from convnets.models.vgg import VGG
from convnets.models.zfnet import ZFNet

__all__ = [
    "C3_TABLE",
    "AlexNet",
    "CifarResNet",
    "ConvNet",
    "GoogLeNet",
    "LeNet5",
    "LocalResponseNorm",
    "ResNet",
    "UnknownModelArgumentError",
    "VGG",
    "ZFNet",
    "get_model",
    "list_models",
    "register",
]
