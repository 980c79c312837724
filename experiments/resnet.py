"""What the ImageNet ResNet experiments share (He et al. 2015, "Deep residual learning for image recognition",
sec. 3.4): scale augmentation (short side sampled in [256, 480]), random 224 crop, flip, mean subtraction, AlexNet's
colour augmentation; BN after every conv, no dropout; SGD batch 256, momentum 0.9, weight decay 1e-4, lr 0.1 divided
by 10 when the error plateaus, 60e4 iterations; test: 10-crop (Table 3), or fully-convolutional multi-scale
(`fully_convolutional_views`, the paper's best results: scores averaged over short sides {224, 256, 384, 480, 640}).
Deviations: per-channel instead of per-pixel mean; multi-scale views use the central square at each scale.
The paper's Table 2 / Fig. 4 (plain vs residual) and Table 3 (shortcut options, deeper nets) are sweeps
(`paper_sweeps`, declared by experiments/resnet34.py).
"""

from convnets import sweeps
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


# ---- The paper's Table 2 / Fig. 4 and Table 3 as sweeps ---------------------------------------------------

def _net(model: str, shortcut: str = 'B') -> dict:
    """Overrides that turn any ImageNet ResNet config of this family into `model` (its Table 1 stages)."""
    depth = int(model.removeprefix('resnet').removeprefix('plain'))
    overrides = {'model.name': model, 'model.stage_sizes': DEPTHS[depth][0]}
    return overrides if model.startswith('plain') else {**overrides, 'model.shortcut': shortcut}


# (row, model, shortcut option, the paper's top-1 / top-5 error), Table 3 (10-crop testing).
TABLE3 = (
    ('plain-34', 'plain34', '', 28.54, 10.02),
    ('ResNet-34 A', 'resnet34', 'A', 25.03, 7.76), ('ResNet-34 B', 'resnet34', 'B', 24.52, 7.46),
    ('ResNet-34 C', 'resnet34', 'C', 24.19, 7.40),
    ('ResNet-50', 'resnet50', 'B', 22.85, 6.71), ('ResNet-101', 'resnet101', 'B', 21.75, 6.05),
    ('ResNet-152', 'resnet152', 'B', 21.43, 5.71),
)


def paper_sweeps() -> dict[str, sweeps.Sweep]:
    """Table 2 with Fig. 4 (plain vs ResNet at 18 / 34 layers, option A) and Table 3 (options A / B / C at 34
    layers, and the bottleneck nets 50 / 101 / 152 with option B)."""
    top1 = sweeps.Column('top-1 err.', 'eval.top1', error=True)
    top5 = sweeps.Column('top-5 err.', 'eval.top5', error=True)
    table2 = sweeps.Sweep(
        title='Top-1 error (%, 10-crop testing) on ImageNet validation: plain vs residual nets',
        source='He et al. 2016 (CVPR, arXiv 1512.03385), Table 2 and Fig. 4',
        columns=(top1,),
        runs=(sweeps.Run('plain-18', _net('plain18'), name='plain18', paper={'top-1 err.': 27.94}),
              sweeps.Run('plain-34', _net('plain34'), name='plain34', paper={'top-1 err.': 28.54}),
              sweeps.Run('ResNet-18', _net('resnet18', 'A'), name='resnet18_A', paper={'top-1 err.': 27.88}),
              sweeps.Run('ResNet-34', _net('resnet34', 'A'), name='resnet34_A', paper={'top-1 err.': 25.03})),
        figure=sweeps.Figure(
            title='Fig. 4: training on ImageNet (dotted: training error, solid: validation error of the centre crop)',
            panels=(('plain', ('plain-18', 'plain-34')), ('ResNet', ('ResNet-18', 'ResNet-34'))),
            tags=(('train/top1', ':'), ('eval_periodic/top1', '-'))),
        notes="Sec. 4.1: Table 2's ResNets use identity shortcuts with zero-padding where dimensions grow (option "
              'A), so each has exactly the parameters of its plain counterpart. Fig. 4 plots the training error '
              '(of the augmented training crops: TensorBoard train/top1) and the validation error of the centre '
              'crops (eval_periodic/top1, once an epoch) against iterations.')
    table3 = sweeps.Sweep(
        title='Top-1 / top-5 error (%, 10-crop testing) on ImageNet validation: shortcut options and depth',
        source='He et al. 2016 (CVPR, arXiv 1512.03385), Table 3',
        columns=(top1, top5),
        runs=tuple(sweeps.Run(label, _net(model, shortcut), paper={'top-1 err.': e1, 'top-5 err.': e5},
                              name=f'{model}_{shortcut}' if model == 'resnet34' else model)
                   for label, model, shortcut, e1, e5 in TABLE3),
        notes='A: zero-padding shortcuts where dimensions grow, all parameter-free; B: projections where dimensions '
              'grow, identity elsewhere; C: projections everywhere (sec. 4.1). The 50/101/152-layer nets use '
              "option B. Table 3's VGG-16, GoogLeNet and PReLU-net rows are other papers' nets and are left out.")
    return {'table2': table2, 'table3': table3}
