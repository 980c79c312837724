"""ResNet-34 (basic blocks [3, 4, 6, 3]).

He et al. 2015, with the shared ImageNet recipe of experiments/resnet.py.

Reproduces: scale augmentation [256, 480], 224 crops, flips, colour augmentation; SGD batch 256, momentum 0.9,
weight decay 1e-4, lr 0.1 /10 on plateau, 60e4 iterations; 10-crop test.
Blocks place a downsampling stride on the first 1x1 conv as the paper does (v1); torchvision's v1.5 is
--config.model.stride_on=3x3 (bottleneck nets only).
Paper result (ILSVRC-2012 val): 25.03% top-1 error (10-crop, Table 3).

Run:
  python -m convnets.main --config=experiments/resnet34.py --workdir=/tmp/resnet34
Sweeps (get_sweeps; each row sets its model, stages and shortcut): 'table2' (plain-18/34 vs ResNet-18/34 with
option A, and Fig. 4's training curves), 'table3' (ResNet-34 shortcuts A / B / C, ResNet-50/101/152), e.g.
  python -m launch.sweep --config=experiments/resnet34.py --sweep=table2 --workdir=/tmp/resnet_table2
Hardware/time: about 1.5 days on 8 modern GPUs. Tiny CPU smoke run: see experiments/imagenet.py, with
  --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from convnets import sweeps
from experiments import resnet


def get_config():
    return resnet.get_config('resnet34')


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """The paper's Table 2 with Fig. 4, and Table 3 (experiments/resnet.py `paper_sweeps`)."""
    return resnet.paper_sweeps()
