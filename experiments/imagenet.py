"""What every ImageNet (ILSVRC-2012) experiment shares: the dataset, its statistics, and the preprocessing specs.

Data: TFDS `imagenet2012` (1,281,167 train / 50,000 validation images, 1,000 classes). It cannot be downloaded
automatically: put ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar (from https://image-net.org) in
`<data_dir>/downloads/manual/` or pass --config.data.manual_dir=DIR; the first run prepares the TFDS files
(hours, ~150 GB). The papers report on the validation set, so it is our eval split.

CPU smoke runs without ImageNet: TFDS `imagenette` (10 ImageNet classes, 1.5 GB download) fits every recipe with
--config.data.name=imagenette --config.data.eval_split=validation --config.model.num_classes=10.
"""

from ml_collections import ConfigDict

from convnets.data import constants
from experiments import default

# Mean RGB over the ILSVRC-2012 training set, in 0..255 pixel units (one source: convnets.data.constants).
RGB_MEAN = constants.IMAGENET_RGB_MEAN


def subtract_mean() -> str:
    return f'subtract_mean({RGB_MEAN})'


def get_config() -> ConfigDict:
    """The default config pointed at ImageNet, with the papers' common SGD settings."""
    c = default.get_config()
    c.model.num_classes = 1000
    c.data.name = 'imagenet2012'
    c.data.train_split = 'train'
    c.data.eval_split = 'validation'
    c.data.cache = False  # ~150 GB of JPEGs.
    c.data.shuffle_buffer = 10_000
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.decay_factor = 0.1
    c.log_every = '100 steps'
    c.keep_checkpoints = 3
    return c
