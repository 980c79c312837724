"""ResNet-110 on CIFAR-10 (He et al. 2015, sec. 4.2, n = 18; 1.7M parameters).

Reproduces: the paper's CIFAR-10 network and recipe (experiments/resnet_cifar10.py).
Paper result (CIFAR-10 test, Table 6): 6.43% (best of 5 runs; mean 6.61 +- 0.16) error.

Table 6 and Fig. 6 (20 to 1202 layers, plain nets) are a sweep of experiments/resnet20_cifar10.py (get_sweeps).
Run (CIFAR-10 downloads through TFDS on first use):
  python -m convnets.main --config=experiments/resnet110_cifar10.py --workdir=/tmp/resnet110_cifar10
Hardware/time: about 5 hours on one modern GPU.
Tiny CPU smoke run: --config.num_train_steps=20 --config.evals.val.every=20
"""

from experiments import resnet_cifar10


def get_config():
    c = resnet_cifar10.get_config('resnet110')
    # Sec. 4.2: 0.1 is too large to start converging; 0.01 until the training error is below 80% (~400 iterations).
    c.optimizer.warmup_steps = 400
    c.optimizer.warmup_kind = 'constant'
    c.optimizer.warmup_factor = 0.1

    return c
