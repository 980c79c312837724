"""ResNet-32 on CIFAR-10 (He et al. 2015, sec. 4.2, n = 5; 0.46M parameters).

Reproduces: the paper's CIFAR-10 network and recipe (experiments/resnet_cifar10.py).
Paper result (CIFAR-10 test, Table 6): 7.51% error.

Table 6 and Fig. 6 (20 to 1202 layers, plain nets) are a sweep of experiments/resnet20_cifar10.py (get_sweeps).
Run (CIFAR-10 downloads through TFDS on first use):
  python -m convnets.main --config=experiments/resnet32_cifar10.py --workdir=/tmp/resnet32_cifar10
Hardware/time: about 1.5 hours on one modern GPU.
Tiny CPU smoke run: --config.num_train_steps=20 --config.evals.val.every=20
"""

from experiments import resnet_cifar10


def get_config():
    c = resnet_cifar10.get_config('resnet32')
    return c
