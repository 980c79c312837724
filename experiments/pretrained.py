"""Released ImageNet weights (torchvision, Keras applications), imported into this project and evaluated with the
preprocessing they were trained with. The argument after the colon names the source: `<framework>_<model>`
(`python -c "from convnets.weights import sources; print(sources.names())"` lists them).

Reproduces: the published single-crop ImageNet top-1 of each released network (torchvision: shorter side 256,
centre 224 crop, RGB normalised by the ImageNet mean/std; Keras: the same crop, BGR minus the ImageNet mean). The
import records the preprocessing with the weights (checkpoint meta 'pretrained'); this config selects it. The
numbers each source publishes are in convnets/weights/{torchvision,keras}.py and WORKSPACE.md.

Run (the file cannot be downloaded here; the import says where it comes from):
  python -m convnets.weights.import --from=torchvision --model=resnet50 --file=resnet50-0676ba61.pth --workdir=DIR
  python -m convnets.main --config=experiments/pretrained.py:torchvision_resnet50 --workdir=DIR --mode=eval
ImageNet itself is prepared as in experiments/imagenet.py (manual tars). Continuing to train an imported network
(--mode=train) uses torchvision's reference recipe below: random-sized crops, flips, SGD lr 0.1 /10 every 30 epochs.
"""

from convnets.weights import sources
from experiments import imagenet

DEFAULT = 'torchvision_resnet50'


def get_config(source: str = DEFAULT):
    framework, _, name = (source or DEFAULT).partition('_')
    src = sources.get(framework, name)
    c = imagenet.get_config()
    for field, value in src.model.items():
        setattr(c.model, field, value)
    c.model.num_classes = 1000
    size = 224  # every released network here was evaluated on 224 centre crops
    value_ops = src.preprocessing.value_ops
    c.data.train_preprocess = f'decode(3)|inception_crop({size})|flip_lr|{value_ops}'
    c.data.eval_preprocess = src.preprocessing.eval_preprocess(resize=256, crop=size)
    c.batch_size = 256
    c.eval_batch_size = 250  # 50,000 validation images in 200 batches
    c.resources.accelerators_per_node = 2  # 250 divides by 2, not by 8
    c.num_epochs = 90.0
    c.optimizer.learning_rate = 0.1
    c.optimizer.weight_decay = 1e-4
    c.optimizer.schedule = 'step'
    c.optimizer.boundaries = (30.0, 60.0)
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c
