"""What the ImageNet ResNet experiments share (He et al. 2015, "Deep residual learning for image recognition",
sec. 3.4): scale augmentation (short side sampled in [256, 480]), random 224 crop, flip, mean subtraction, AlexNet's
colour augmentation; BN after every conv, no dropout; SGD batch 256, momentum 0.9, weight decay 1e-4, lr 0.1 divided
by 10 when the error plateaus, 60e4 iterations; test: 10-crop (Table 3), or fully-convolutional multi-scale
(`fully_convolutional_views`, the paper's best results: scores averaged over short sides {224, 256, 384, 480, 640}).
Deviations: per-channel instead of per-pixel mean; multi-scale views use the central square at each scale.
"""

from convnets.models.resnet import DEPTHS
from experiments import default, imagenet

MEAN = imagenet.subtract_mean()


def ten_crop_views() -> tuple[str, ...]:
    return (f'decode(3)|resize_short(256)|{MEAN}|ten_crop(224)',)


def fully_convolutional_views(scales: tuple[int, ...] = (224, 256, 384, 480, 640)) -> tuple[str, ...]:
    """Sec. 3.4: the whole (here: central square of the) image at several scales; the network's global average
    pooling makes it fully convolutional, so no model change is needed."""
    return tuple(f'decode(3)|resize_short({q})|center_crop({q})|{MEAN}' for q in scales)


def get_config(model: str):
    c = imagenet.get_config()
    c.model.name = model
    # Table 1's blocks per stage, stated here so that smoke runs can shrink them (--config.model.stage_sizes).
    c.model.stage_sizes = DEPTHS[int(model.removeprefix('resnet').removeprefix('plain'))][0]
    # Ablation switches (stated so that the command line can set them): Table 3's shortcut options A / B / C (B:
    # projections where dimensions change), and where a downsampling bottleneck strides: '1x1' (the paper's v1) or
    # '3x3' (torchvision's v1.5).
    c.model.shortcut = 'B'
    c.model.stride_on = '1x1'
    c.data.train_preprocess = ('decode(3)|random_resize_short(256, 480)|random_crop(224)|flip_lr|pca_lighting(0.1)|'
                               + MEAN)
    c.data.eval_preprocess = f'decode(3)|resize_short(256)|center_crop(224)|{MEAN}'
    default.add_test_protocol(c, ten_crop_views(), crops=True)
    c.batch_size = 256
    c.num_train_steps = 600_000
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = 'plateau'
    c.optimizer.plateau_patience = 3
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c
