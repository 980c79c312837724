"""ResNet-101 (bottleneck blocks [3, 4, 23, 3]).

He et al. 2015, with the shared ImageNet recipe of experiments/resnet.py.

Reproduces: scale augmentation [256, 480], 224 crops, flips, colour augmentation; SGD batch 256, momentum 0.9,
weight decay 1e-4, lr 0.1 /10 on plateau, 60e4 iterations; 10-crop test.
Blocks place a downsampling stride on the first 1x1 conv as the paper does (v1); torchvision's v1.5 is
--config.model.stride_on=3x3 (bottleneck nets only).
Paper result (ILSVRC-2012 val): 21.75% top-1 error (10-crop, Table 3).

Table 3 (shortcut options, 34 to 152 layers) is a sweep of experiments/resnet34.py (get_sweeps).
Run:
  python -m convnets.main --config=experiments/resnet101.py --workdir=/tmp/resnet101
Hardware/time: about 3 days on 8 modern GPUs. Tiny CPU smoke run: see experiments/imagenet.py, with
  --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from experiments import resnet


def get_config():
    return resnet.get_config('resnet101')
