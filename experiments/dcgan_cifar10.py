"""DCGAN features on CIFAR-10 (Radford, Metz, Chintala 2015, Sec. 5.1, Table 1): a discriminator trained without
labels as a feature extractor for a linear classifier.

Reproduces Table 1's "DCGAN (ours) + L2-SVM" row: every conv layer of the ImageNet-1k discriminator
(experiments/dcgan_imagenet32.py) max-pooled to a 4x4 grid, flattened and concatenated (28,672 features), a
regularised linear L2-SVM (scikit-learn LinearSVC, squared hinge; C = 1: the paper gives none) trained on the
50,000 CIFAR-10 training images, accuracy on the 10,000 test images (the 'gan_svm' evaluator,
convnets/evaluate/gan_features_svm.py). D runs in inference mode: its BatchNorm uses the running averages of its
ImageNet training (the authors' SVHN analysis averages the statistics over the training set instead).
The evaluation reads the ImageNet run's checkpoint as it is (--mode=eval; results in its eval_results.json).
Variant ':train' trains the same DCGAN on CIFAR-10 itself (25 epochs) and runs the same SVM at the end: the
features of a D that saw only CIFAR-10 (no paper number).

Paper results (Table 1, CIFAR-10 accuracy): DCGAN + L2-SVM 82.8% (+- 0.1 over the training subsets' sizes they
vary; 1 layer K-means 80.6%, 3 layer K-means learned RF 82.0%, View Invariant K-means 81.9%, Exemplar CNN 84.3%).
results.json / eval_results.json: 'svm' (top1).

Run (the ImageNet DCGAN first):
  python -m convnets.main --config=experiments/dcgan_cifar10.py --workdir=/tmp/dcgan_imagenet32 --mode=eval
  python -m convnets.main --config=experiments/dcgan_cifar10.py:train --workdir=/tmp/dcgan_cifar10
CIFAR-10 comes through TFDS (cifar10, 162 MB). Hardware/time: not run here (no download, no GPU).
"""

from experiments import dcgan_imagenet32, gan

VARIANTS = ('', 'train')


def get_config(variant: str = ''):
    """`variant`: '' (the paper's protocol on an ImageNet DCGAN checkpoint, --mode=eval) or 'train'."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r} of dcgan_cifar10: use one of {VARIANTS}')
    c = dcgan_imagenet32.get_config()
    c.data.name = 'cifar10'
    c.data.train_split = 'train'
    c.data.eval_split = 'test'
    c.evals.svm = gan.gan_svm_eval(results_key='svm', C=1.0, pool_grid=4)
    if variant == 'train':
        c.num_epochs = 25.0
        c.log_every = '100 steps'
        c.checkpoint_every = '2000 steps'
        c.evals.samples.every = '2000 steps'
    else:
        c.evals.samples.at_end = False  # --mode=eval: only the SVM
    return c
