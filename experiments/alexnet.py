"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, "ImageNet classification with deep convolutional neural networks").

Reproduces: the two-tower network of sec. 3 (grouped conv2/4/5, LRN after conv1/conv2, overlapping 3x3/2 pooling,
dropout 0.5 before fc6/fc7) trained as in sec. 4-5: 256x256 images, random 224 crops + flips, PCA colour
augmentation (alpha ~ N(0, 0.1)), mean subtraction; SGD batch 128, momentum 0.9, weight decay 5e-4 inside the
velocity (v <- 0.9 v - 0.0005 lr w - lr g), lr 0.01 divided by 10 when the validation error stops improving,
~90 epochs; init N(0, 0.01), biases 1 in conv2/4/5 and fc6/fc7. Test: 10 crops (4 corners + centre, and flips),
softmax averaged.
Paper result (ILSVRC-2012 val, 1 CNN, 10-crop): 40.7% top-1 / 18.2% top-5 error.

Run:
  python -m convnets.main --config=experiments/alexnet.py --workdir=/tmp/alexnet
Sweeps (get_sweeps): 'ablations' (sec. 3.2-3.4: one tower, no LRN, non-overlapping pooling vs the full net):
  python -m launch.sweep --config=experiments/alexnet.py --sweep=ablations --workdir=/tmp/alexnet_ablations
Hardware/time: the paper trained 5-6 days on two GTX 580s; expect roughly a day on one modern GPU, where JPEG
decoding (tf.data on the host CPUs) is usually the limit. Tiny CPU smoke run (any ImageNet-format data, e.g.
imagenette, see experiments/imagenet.py): --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from convnets import sweeps
from experiments import default, imagenet

EVAL_CROPS = f'decode(3)|resize((256, 256))|{imagenet.subtract_mean()}'


def get_config():
    c = imagenet.get_config()
    c.model.name = 'alexnet'
    c.model.towers = 2
    c.model.lrn = True
    c.model.overlapping_pool = True
    c.model.input_size = 224  # Sec. 3.5's 224 (conv1 padded by 2); 227 gives Caffe's unpadded variant.
    # Sec. 2: images down-sampled to 256x256; sec. 4.1: random 224 patches, reflections, PCA colour noise.
    c.data.train_preprocess = ('decode(3)|resize((256, 256))|random_crop(224)|flip_lr|pca_lighting(0.1)|'
                               + imagenet.subtract_mean())
    c.data.eval_preprocess = EVAL_CROPS + '|center_crop(224)'  # Periodic evaluation: the centre crop.
    # Sec. 4.1: ten patches, softmax averaged.
    default.add_test_protocol(c, (EVAL_CROPS + '|ten_crop(224)',), crops=True)
    c.batch_size = 128
    c.num_epochs = 90.0
    c.optimizer.learning_rate = 0.01
    c.optimizer.velocity = 'lr_inside'  # Sec. 5: the paper's update, weight decay inside the velocity.
    c.optimizer.schedule = 'plateau'  # Sec. 5: /10 when the validation error stopped improving (3 times).
    c.optimizer.plateau_patience = 3  # Evaluations (epochs) without improvement: our choice, the paper gives none.
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c


FULL = 'two towers, LRN, overlapping pooling'
# Sec. 3.2-3.4 report each component as a reduction of the full net's top-1 / top-5 error (40.7 / 18.2, Table 2,
# 1 CNN): the ablated nets' numbers below are those errors plus the reductions.
ABLATIONS = (  # (label, override, top-1 / top-5 error reduction that the component brings)
    ('one tower (sec. 3.2)', {'model.towers': 1}, (1.7, 1.2)),
    ('no LRN (sec. 3.3)', {'model.lrn': False}, (1.4, 1.2)),
    ('non-overlapping pooling, 2x2/2 (sec. 3.4)', {'model.overlapping_pool': False}, (0.4, 0.3)),
)


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """The architecture ablations of sec. 3.2-3.4, each one change to the full net of this file."""
    full = {'top-1 err.': 40.7, 'top-5 err.': 18.2}
    runs = [sweeps.Run(FULL, {}, paper=full)]
    for label, overrides, (d1, d5) in ABLATIONS:
        paper = {'top-1 err.': round(full['top-1 err.'] + d1, 1), 'top-5 err.': round(full['top-5 err.'] + d5, 1)}
        runs.append(sweeps.Run(label, overrides, paper=paper))
    return {'ablations': sweeps.Sweep(
        title='Top-1 / top-5 error (%, 10 crops) on ILSVRC-2012 val, one component removed at a time',
        source='Krizhevsky et al. 2012, sec. 3.2 (two GPUs), 3.3 (LRN), 3.4 (overlapping pooling); Table 2 (1 CNN)',
        columns=(sweeps.Column('top-1 err.', 'eval.top1', error=True),
                 sweeps.Column('top-5 err.', 'eval.top5', error=True)),
        runs=tuple(runs), baseline=FULL,
        notes='The paper reports these ablations only as differences to the full net (40.7 / 18.2): two towers '
              '-1.7 / -1.2 versus the one-GPU net, LRN -1.4 / -1.2, overlapping pooling -0.4 / -0.3 (top-1 / top-5). '
              "The paper column shows 40.7 / 18.2 plus those differences, so compare the report's differences to "
              "the baseline row. The paper's one-GPU net has half as many kernels per conv layer (but the full last "
              'conv and fc layers: a footnote of sec. 3.2); ours keeps the widths and drops the grouping '
              "(model.towers=1), so it has more parameters than the paper's.")}
