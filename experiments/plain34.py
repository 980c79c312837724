"""the plain 34-layer network, sec. 4.1 ablation: deeper plain nets train worse.

He et al. 2015, with the shared ImageNet recipe of experiments/resnet.py.

Reproduces: scale augmentation [256, 480], 224 crops, flips, colour augmentation; SGD batch 256, momentum 0.9,
weight decay 1e-4, lr 0.1 /10 on plateau, 60e4 iterations; 10-crop test.
Blocks place a downsampling stride on the first 1x1 conv as the paper does (v1); torchvision's v1.5 is
--config.model.stride_on=3x3 (bottleneck nets only).
Paper result (ILSVRC-2012 val): 28.54% top-1 error (Table 2, 10-crop), worse than plain-18; ResNet-34 25.03%.

Table 2 and Fig. 4 (plain vs ResNet, 18 / 34 layers) are a sweep of experiments/resnet34.py (get_sweeps).
Run:
  python -m convnets.main --config=experiments/plain34.py --workdir=/tmp/plain34
Hardware/time: as resnet34. Tiny CPU smoke run: see experiments/imagenet.py, with
  --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from experiments import resnet


def get_config():
    return resnet.get_config('plain34')
