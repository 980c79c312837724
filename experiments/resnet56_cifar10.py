"""ResNet-56 on CIFAR-10 (He et al. 2015, sec. 4.2, n = 9; 0.85M parameters).

Reproduces: the paper's CIFAR-10 network and recipe (experiments/resnet_cifar10.py).
Paper result (CIFAR-10 test, Table 6): 6.97% error.

Table 6 and Fig. 6 (20 to 1202 layers, plain nets) are a sweep of experiments/resnet20_cifar10.py (get_sweeps).
Run (CIFAR-10 downloads through TFDS on first use):
  python -m convnets.main --config=experiments/resnet56_cifar10.py --workdir=/tmp/resnet56_cifar10
Hardware/time: about 2.5 hours on one modern GPU.
Tiny CPU smoke run: --config.num_train_steps=20 --config.evals.val.every=20
"""

from experiments import resnet_cifar10


def get_config():
    c = resnet_cifar10.get_config('resnet56')
    return c
