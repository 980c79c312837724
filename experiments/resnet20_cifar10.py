"""ResNet-20 on CIFAR-10 (He et al. 2015, sec. 4.2, n = 3; 0.27M parameters).

Reproduces: the paper's CIFAR-10 network and recipe (experiments/resnet_cifar10.py).
Paper result (CIFAR-10 test, Table 6): 8.75% error.

Run (CIFAR-10 downloads through TFDS on first use):
  python -m convnets.main --config=experiments/resnet20_cifar10.py --workdir=/tmp/resnet20_cifar10
Sweep (get_sweeps; each row sets its net, depth and warm-up): 'table6' (ResNet-20 ... 1202 and Fig. 6's plain nets):
  python -m launch.sweep --config=experiments/resnet20_cifar10.py --sweep=table6 --workdir=/tmp/resnet_table6
Hardware/time: about 1 hour on one modern GPU, ~1 day on a 2-core CPU.
Tiny CPU smoke run: --config.num_train_steps=20 --config.evals.val.every=20
"""

from convnets import sweeps
from experiments import resnet_cifar10


def get_config():
    c = resnet_cifar10.get_config('resnet20')
    return c


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """The paper's Table 6 with Fig. 6 (experiments/resnet_cifar10.py `paper_sweeps`)."""
    return resnet_cifar10.paper_sweeps()
