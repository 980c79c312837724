"""VGG E (Simonyan and Zisserman 2014): configuration E (VGG-19).

Reproduces: scale jittering S in [256, 512], dense evaluation at Q in (256, 384, 512) with flips, with the shared
VGG recipe of experiments/vgg.py (SGD batch 256, momentum 0.9,
weight decay 5e-4, lr 0.01 /10 on plateau, 370K iterations, random 224 crops, flips, RGB colour shift).
Paper result (ILSVRC-2012 val): Table 4, multi-scale (train S in [256, 512], test Q in {256, 384, 512}): 24.8% top-1
/ 7.5% top-5 error; with dense + multi-crop (Table 5): 24.4% / 7.1%.

The paper's Tables 3-5 (all configurations) are sweeps of experiments/vgg16.py (get_sweeps).
Run:
  python -m convnets.main --config=experiments/vgg19.py --workdir=/tmp/vgg19
Hardware/time: about 4 days on 8 modern GPUs. Tiny CPU smoke run (small images; the dense head adapts): see
experiments/imagenet.py, with
  --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from experiments import vgg


def get_config():
    return vgg.get_config('vgg19', s_min=256, s_max=512, test_scales=(256, 384, 512))
