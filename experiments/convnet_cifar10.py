"""The lecture's basic ConvNet on CIFAR-10: INPUT 32x32x3 -> CONV 12 -> RELU -> POOL -> FC 10.

Reproduces: the seed lecture's "score function" network (papers.md section 0) on the dataset whose 32x32x3 images
it was drawn for. There is no paper recipe; ours is SGD + momentum 0.9, batch 128, 30 epochs, rate 0.01 divided by
10 at epochs 20 and 25, weight decay 5e-4, and random flips with 4-pixel pad-and-crop.
Expected: about 60-65% top-1 (one conv layer of 12 filters is a weak model; that is the point of the lecture).

Run (CIFAR-10 downloads through TFDS on first use):
  python -m convnets.main --config=experiments/convnet_cifar10.py --workdir=/tmp/convnet_cifar10
About 10 minutes on a 2-core CPU. Tiny CPU smoke run: add --config.num_train_steps=20 --config.evals.val.every=20.
"""

from experiments import default

# CIFAR-10 training-set channel statistics, in 0..255 units.
CIFAR10_MEAN = (125.3, 123.0, 113.9)
CIFAR10_STD = (63.0, 62.1, 66.7)


def get_config():
    c = default.get_config()
    c.model.name = 'convnet'
    c.model.num_classes = 10
    c.model.num_filters = 12
    c.data.name = 'cifar10'
    c.data.train_preprocess = f'decode|random_crop(32, pad=4)|flip_lr|normalize({CIFAR10_MEAN}, {CIFAR10_STD})'
    c.data.eval_preprocess = f'decode|normalize({CIFAR10_MEAN}, {CIFAR10_STD})'
    c.batch_size = 128
    c.num_epochs = 30.0
    c.optimizer.learning_rate = 0.01
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = 'step'
    c.optimizer.boundaries = (20.0, 25.0)
    c.log_every = '100 steps'
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c
