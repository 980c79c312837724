"""AlexNet with one tower (Krizhevsky et al. 2012, sec. 3.2 / 6 ablation): no grouping in conv2, conv4, conv5.

Reproduces: the paper's comparison of the two-GPU network with "a net with half as many kernels in each
convolutional layer trained on one GPU" — here the same widths with full connectivity, which is what
`feature_group_count=1` gives; everything else is experiments/alexnet.py.
Paper result: the two-GPU net has 1.7% lower top-1 and 1.2% lower top-5 error than the one-GPU net.

Run:
  python -m convnets.main --config=experiments/alexnet_one_tower.py --workdir=/tmp/alexnet_one_tower
Hardware/time and tiny CPU overrides: as experiments/alexnet.py.
"""

from experiments import alexnet


def get_config():
    c = alexnet.get_config()
    c.model.towers = 1
    return c
