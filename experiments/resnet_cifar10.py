"""What the CIFAR-10 ResNets share (He et al. 2015, sec. 4.2) — the 32x32x3 setting of the seed lecture.

Network: 6n+2 layers, 16/32/64 filters, option A (parameter-free) shortcuts. Training: 45k/5k is the paper's
analysis split; its reported test errors train on all 50k images, as here. SGD batch 128, momentum 0.9, weight decay
1e-4, lr 0.1 divided by 10 at 32k and 48k iterations, stop at 64k; 4-pixel zero padding, random 32x32 crop, flip;
mean subtraction (per channel here; per pixel in the paper). ResNet-110 warms up at 0.01 for 400 iterations.
"""

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
