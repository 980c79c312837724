"""A tiny ImageNet in the real manual-download format, prepared through TFDS's own `imagenet2012` builder.

ILSVRC2012_img_train.tar holds one tar per synset (n01440764.tar, ...) of JPEGs; ILSVRC2012_img_val.tar holds
ILSVRC2012_val_00000001.JPEG, ... whose labels TFDS takes from its bundled validation_labels.txt. Images get random
sizes (like ImageNet's) and a colour that depends on the class, so a network can learn something from them.
"""

import io
import os
import tarfile

import numpy as np
from PIL import Image

SYNSETS = ('n01440764', 'n01443537', 'n01484850', 'n01491361')  # The first four ImageNet classes.


def _jpeg(rng: np.random.Generator, tint: np.ndarray) -> bytes:
    h, w = int(rng.integers(36, 64)), int(rng.integers(36, 64))
    pixels = np.clip(rng.normal(tint, 30.0, size=(h, w, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format='JPEG')
    return buf.getvalue()


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_manual_dir(manual_dir: str, images_per_class: int = 6, num_val: int = 8, seed: int = 0) -> None:
    """Writes ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar into `manual_dir`."""
    rng = np.random.default_rng(seed)
    tints = rng.uniform(40, 215, size=(len(SYNSETS), 3))
    os.makedirs(manual_dir, exist_ok=True)
    with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_train.tar'), 'w') as train:
        for c, synset in enumerate(SYNSETS):
            inner = io.BytesIO()
            with tarfile.open(fileobj=inner, mode='w') as class_tar:
                for i in range(images_per_class):
                    _add(class_tar, f'{synset}_{i}.JPEG', _jpeg(rng, tints[c]))
            _add(train, f'{synset}.tar', inner.getvalue())
    with tarfile.open(os.path.join(manual_dir, 'ILSVRC2012_img_val.tar'), 'w') as val:
        for i in range(num_val):
            _add(val, f'ILSVRC2012_val_{i + 1:08d}.JPEG', _jpeg(rng, tints[i % len(SYNSETS)]))
