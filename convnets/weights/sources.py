"""The public ImageNet weights convnets can import: where each file comes from, which of our models it fits, the
mapping of its tensors onto that model's variables, the preprocessing it was trained with and its published
top-1. ``convnets.weights.torchvision`` and ``convnets.weights.keras`` register their sources here.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Callable
from typing import Any

from convnets.weights.mapping import Entry

FRAMEWORKS = ('torchvision', 'keras')


@dataclasses.dataclass(frozen=True)
class Preprocessing:
    """What the weights expect after the crop: ``value_ops`` is the op spec that turns the 0..255 RGB crop into the
    network's input (the ops of ``convnets.data.ops``)."""

    name: str
    value_ops: str
    description: str
    antialias: bool = False  # torchvision's Resize antialiases (its default since 0.17, and PIL always does)

    def eval_preprocess(self, resize: int = 256, crop: int = 224) -> str:
        """The single-crop evaluation of torchvision's references and the Keras applications' reported numbers:
        the shorter side resized to ``resize`` (bilinear), the central ``crop`` square, then ``value_ops``."""
        resized = f'resize_short({resize}, antialias=True)' if self.antialias else f'resize_short({resize})'
        return f'decode(3)|{resized}|center_crop({crop})|{self.value_ops}'

    def record(self) -> dict[str, str]:
        return {'name': self.name, 'value_ops': self.value_ops, 'description': self.description,
                'eval_preprocess': self.eval_preprocess()}


# torchvision: RGB in 0..1 normalised by the ImageNet mean and standard deviation (torchvision's transforms
# .Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])); here in 0..255 units.
TORCHVISION = Preprocessing(
    'torchvision', 'normalize((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))',
    'RGB, (x / 255 - mean) / std with mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225)', antialias=True)
# torchvision's googlenet weights come from TensorFlow and are used with transform_input=True, which maps the
# mean/std-normalised input back to (x / 255 - 0.5) / 0.5: the network itself sees RGB scaled to [-1, 1].
TORCHVISION_GOOGLENET = Preprocessing(
    'torchvision_googlenet', 'normalize(127.5, 127.5)',
    'RGB scaled to [-1, 1]: what transform_input=True makes of the torchvision normalisation', antialias=True)
# Keras applications' 'caffe' mode (keras.applications.imagenet_utils.preprocess_input): RGB -> BGR, then the
# ImageNet BGR mean (103.939, 116.779, 123.68) subtracted, no scaling.
CAFFE_BGR = Preprocessing(
    'caffe_bgr', 'subtract_mean((123.68, 116.779, 103.939))|rgb_to_bgr',
    'BGR in 0..255 minus the ImageNet mean (Caffe / Keras "caffe" mode)')


@dataclasses.dataclass(frozen=True)
class Source:
    """One public weight file and how it becomes a checkpoint of ours."""

    framework: str  # 'torchvision' | 'keras'
    name: str  # the source's own model name, e.g. 'resnet50'
    model: dict[str, Any]  # our model config section, e.g. {'name': 'resnet50_v1_5'}
    file_name: str  # the released file's name
    url: str  # where it is published
    preprocessing: Preprocessing
    top1: float  # published ImageNet val top-1 (%), single 224 centre crop
    top1_reference: str  # where that number is published
    mapping: Callable[[], list[Entry]]  # our variables <- the file's tensors
    ignore: tuple[str, ...] = ()  # regexes of tensors that carry no weights (torch's num_batches_tracked)
    layout: str = 'torch'  # 'torch' or 'keras': the tensor layout (for seeded test weights)

    @property
    def key(self) -> str:
        return f'{self.framework}_{self.name}'

    def where_to_get(self, path: str | None = None) -> str:
        place = f'and pass its path with --file (e.g. --file={path})' if path else 'and pass its path with --file'
        return (f'Download {self.file_name} from {self.url} {place}. It cannot be fetched here: convnets never '
                f'downloads weights itself.')

    def record(self, file: str, sha256: str) -> dict[str, Any]:
        """What a checkpoint made from this source carries in its meta item ('pretrained')."""
        return {'framework': self.framework, 'name': self.name, 'file': os.path.basename(file), 'sha256': sha256,
                'url': self.url, 'top1': self.top1, 'top1_reference': self.top1_reference,
                'preprocessing': self.preprocessing.record(), 'model': dict(self.model)}


_SOURCES: dict[str, Source] = {}


def register(source: Source) -> Source:
    if source.framework not in FRAMEWORKS:
        raise ValueError(f'framework must be one of {FRAMEWORKS}, got {source.framework!r}')
    _SOURCES[source.key] = source
    return source


def _load_all() -> None:
    from convnets.weights import keras, torchvision  # noqa: F401  (they register their sources)


def names(framework: str | None = None) -> list[str]:
    """The importable model names of ``framework`` (all as '<framework>_<name>' if None)."""
    _load_all()
    if framework is None:
        return sorted(_SOURCES)
    return sorted(s.name for s in _SOURCES.values() if s.framework == framework)


def get(framework: str, name: str) -> Source:
    """The source ``name`` of ``framework``; a ValueError lists the valid names."""
    _load_all()
    if framework not in FRAMEWORKS:
        raise ValueError(f'--from={framework!r}: weights can be imported from {", ".join(FRAMEWORKS)}.')
    source = _SOURCES.get(f'{framework}_{name}')
    if source is None:
        valid = names(framework)
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f' Did you mean {close[0]!r}?' if close else ''
        raise ValueError(f'--model={name!r} is not an importable {framework} network.{hint} Valid: {", ".join(valid)}.')
    return source
