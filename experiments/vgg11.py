"""VGG A (Simonyan and Zisserman 2014): configuration A (VGG-11: 8 conv + 3 fc layers).

Reproduces: fixed training scale S = 256, dense evaluation at Q = 256 with flips, with the shared VGG recipe of
experiments/vgg.py (SGD batch 256, momentum 0.9,
weight decay 5e-4, lr 0.01 /10 on plateau, 370K iterations, random 224 crops, flips, RGB colour shift).
Paper result (ILSVRC-2012 val): Table 3, S = 256, Q = 256 (single scale, dense): 29.6% top-1 / 10.4% top-5 error.

The paper's Tables 3-5 (all configurations) are sweeps of experiments/vgg16.py (get_sweeps).
Run:
  python -m convnets.main --config=experiments/vgg11.py --workdir=/tmp/vgg11
Hardware/time: 2-3 weeks on 4 Titan Black GPUs per net in the paper; about 2 days on 8 modern GPUs. Tiny CPU smoke
run (small images; the dense head adapts): see experiments/imagenet.py, with
  --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from experiments import vgg


def get_config():
    return vgg.get_config('vgg11', s_min=256, s_max=None, test_scales=(256,))
