"""VGG D (Simonyan and Zisserman 2014): configuration D (VGG-16).

Reproduces: scale jittering S in [256, 512], dense evaluation at Q in (256, 384, 512) with flips, with the shared
VGG recipe of experiments/vgg.py (SGD batch 256, momentum 0.9,
weight decay 5e-4, lr 0.01 /10 on plateau, 370K iterations, random 224 crops, flips, RGB colour shift).
Paper result (ILSVRC-2012 val): Table 4, multi-scale (train S in [256, 512], test Q in {256, 384, 512}): 24.8% top-1
/ 7.5% top-5 error.

Run:
  python -m convnets.main --config=experiments/vgg16.py --workdir=/tmp/vgg16
Sweeps (get_sweeps; declared here because D is the configuration of all three tables, and each row sets the
configuration, S and Q itself): 'table3' (A ... E, single test scale), 'table4' (multi-scale test), 'table5'
(dense vs multi-crop vs both, D and E), e.g.
  python -m launch.sweep --config=experiments/vgg16.py --sweep=table3 --workdir=/tmp/vgg_table3
Hardware/time: about 3-4 days on 8 modern GPUs. Tiny CPU smoke run (small images; the dense head adapts): see
experiments/imagenet.py, with
  --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from convnets import sweeps
from experiments import vgg


def get_config():
    return vgg.get_config('vgg16', s_min=256, s_max=512, test_scales=(256, 384, 512))


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """The paper's Tables 3, 4 and 5 (experiments/vgg.py `paper_sweeps`)."""
    return vgg.paper_sweeps()
