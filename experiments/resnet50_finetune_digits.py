"""Fine-tuning an imported ImageNet ResNet-50 (torchvision's v1.5 weights) on the embedded digits: `init_from`.

What it shows: a network started from released weights (`config.init_from`, the workdir the import writes) with a
new 10-way classifier (`config.init_from_skip` keeps the fresh `fc_layer`), trained end to end with the
preprocessing the weights expect (torchvision's mean/std normalisation, recorded with the weights; a run whose
pipeline lacks it gets a warning). The digits (8x8 scans resized to 32x32, grey) are upsampled to 64x64 and
replicated to RGB. The same two switches start the detection recipes from ImageNet weights.

Run (the weight file comes from https://download.pytorch.org/models/resnet50-0676ba61.pth; it cannot be downloaded
here):
  python -m convnets.weights.import --from=torchvision --model=resnet50 --file=resnet50-0676ba61.pth --workdir=/tmp/tv50
  python -m convnets.main --config=experiments/resnet50_finetune_digits.py --workdir=/tmp/resnet50_digits
Any workdir of a ResNet-50 v1.5 run works as --config.init_from=DIR. Hardware/time: ~2 s per step on a 2-core CPU
(3 epochs = 135 steps).
"""

from convnets.weights import sources
from experiments import default

NORMALIZE = sources.TORCHVISION.value_ops  # what the imported weights were trained with


def get_config():
    c = default.get_config()
    c.model.name = 'resnet50_v1_5'
    c.model.num_classes = 10
    c.init_from = '/tmp/tv50'
    c.init_from_skip = ('params/fc_layer/',)  # a new 10-way classifier; every other variable is loaded
    c.data.name = 'convnets_digits'
    c.data.cache = True
    c.data.train_preprocess = f'decode|resize(64)|to_rgb|random_crop(64, pad=4)|{NORMALIZE}'
    c.data.eval_preprocess = f'decode|resize(64)|to_rgb|{NORMALIZE}'
    c.batch_size = 32
    c.num_epochs = 3.0
    # A small rate for pretrained layers (the usual fine-tuning choice), cosine-annealed; wd as in the ImageNet run.
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = 'cosine'
    c.log_every = '10 steps'
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c
