"""What the CIFAR-10 ResNets share (He et al. 2015, sec. 4.2) — the 32x32x3 setting of the seed lecture.

Network: 6n+2 layers, 16/32/64 filters, option A (parameter-free) shortcuts. Training: 45k/5k is the paper's
analysis split; its reported test errors train on all 50k images, as here. SGD batch 128, momentum 0.9, weight decay
1e-4, lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; 4-pixel zero padding, random 32x32 crop, flip;
mean subtraction (per channel here; per pixel in the paper). ResNet-110 warms up at 0.01 for 400 iterations.
Table 6 and Fig. 6 (plain vs residual, 20 to 1202 layers) are one sweep (`paper_sweeps`, declared by
experiments/resnet20_cifar10.py).
"""

from convnets import sweeps
from experiments import default

CIFAR10_MEAN = (125.3, 123.0, 113.9)


def get_config(model: str):
    c = default.get_config()
    c.model.name = model
    c.model.depth = int(model.removeprefix('resnet'))  # 6n+2; smoke runs may use --config.model.depth=8.
    c.model.num_classes = 10
    c.model.shortcut = 'A'  # Sec. 4.2: identity shortcuts (option A) in all cases; B / C as switches.
    c.data.name = 'cifar10'
    c.data.cache = True
    c.data.train_preprocess = f'decode|random_crop(32, pad=4)|flip_lr|subtract_mean({CIFAR10_MEAN})'
    c.data.eval_preprocess = f'decode|subtract_mean({CIFAR10_MEAN})'
    c.batch_size = 128
    c.num_train_steps = 64_000
    c.optimizer.learning_rate = 0.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = 'step'
    c.optimizer.boundaries = (32_000, 48_000)
    c.optimizer.boundary_unit = 'steps'
    c.log_every = '100 steps'
    c.evals.val.every = '5 epochs'
    c.checkpoint_every = '5 epochs'
    return c


# ---- Table 6 and Fig. 6 as one sweep -------------------------------------------------------------------------

# Sec. 4.2: ResNet-110 starts at lr 0.01 until the training error is below 80% (about 400 iterations); the
# 1202-layer net "is trained as described above", which we read as the 110-layer recipe, warm-up included.
WARMUP = {'optimizer.warmup_steps': 400, 'optimizer.warmup_kind': 'constant', 'optimizer.warmup_factor': 0.1}
# (depth, parameters, the paper's test error %); Table 6. ResNet-110: best of 5 runs (mean 6.61 +- 0.16).
TABLE6 = ((20, '0.27M', 8.75), (32, '0.46M', 7.51), (44, '0.66M', 7.17), (56, '0.85M', 6.97), (110, '1.7M', 6.43),
          (1202, '19.4M', 7.93))
PLAIN = (20, 32, 44, 56)  # Fig. 6 (left); plain-110 (error above 60%) is not plotted there.


def _depth(model: str, depth: int) -> dict:
    """Overrides that make any CIFAR config of this family the `depth`-layer `model` ('resnet' or 'plain')."""
    overrides = {'model.name': f'{model}{depth}', 'model.depth': depth}
    return {**overrides, **WARMUP} if depth >= 110 else overrides


def paper_sweeps() -> dict[str, sweeps.Sweep]:
    """Table 6 (ResNets of 20 to 1202 layers) with Fig. 6's plain nets and training curves."""
    resnets = tuple(sweeps.Run(f'ResNet-{d} ({params})', _depth('resnet', d), name=f'resnet{d}',
                               paper={'error': err}) for d, params, err in TABLE6)
    plains = tuple(sweeps.Run(f'plain-{d}', _depth('plain', d), name=f'plain{d}') for d in PLAIN)
    label = {r.name: r.label for r in resnets + plains}
    return {'table6': sweeps.Sweep(
        title='Classification error (%) on the CIFAR-10 test set, by depth; plain nets of Fig. 6',
        source='He et al. 2016 (CVPR, arXiv 1512.03385), Table 6 and Fig. 6',
        columns=(sweeps.Column('error', 'eval.top1', error=True),),
        runs=resnets + plains,
        figure=sweeps.Figure(
            title='Fig. 6: training on CIFAR-10 (dotted: training error, solid: test error)',
            panels=(('plain', tuple(label[f'plain{d}'] for d in PLAIN)),
                    ('ResNet', tuple(label[f'resnet{d}'] for d in (20, 32, 44, 56, 110))),
                    ('ResNet-110 vs 1202', (label['resnet110'], label['resnet1202']))),
            tags=(('train/top1', ':'), ('eval/top1', '-'))),
        notes='Option A shortcuts throughout (sec. 4.2), so plain and residual nets of one depth have the same '
              'parameters. ResNet-110 and -1202 warm up at lr 0.01 for 400 iterations (the paper: until the '
              'training error is below 80%; for 1202 it says only "trained as described above"). '
              "The paper's 110-layer number is the best of 5 runs (mean 6.61 +- 0.16); the plain nets have no "
              'table entry (Fig. 6 only).')}
