"""DCGAN on ImageNet-1k at 32x32: the unsupervised feature learner of Radford, Metz, Chintala 2015, Sec. 5.1.

Reproduces the network whose discriminator gives Table 1's CIFAR-10 features (experiments/dcgan_cifar10.py runs
that evaluation on this run's checkpoint): the authors' released "32x32 imagenet model used in the paper"
(convnets/models/dcgan.py `dcgan_imagenet32_*`: 3x3 kernels, z of 256 dims, width 128, a stride-1 conv before
each stride-2 conv, so that D's six conv layers max-pooled to 4x4 give the paper's 28,672 features), trained with
the Sec. 4 recipe (z ~ U(-1, 1), batches of 128, weights N(0, 0.02), Adam lr 2e-4 beta1 0.5, images to [-1, 1],
no augmentation) on TFDS imagenet_resized/32x32 (the 1.28M ImageNet training images downsampled to 32x32 by
Chrabaszcz et al. 2017; the paper's own 32x32 crops, "min-resized center crops", are not distributed).
The paper does not say how long; 25 epochs, as its other models. ImageNet at 64x64 (Fig. 1's networks) is
--config.data.name=imagenet_resized/64x64 with --config.generator.name=dcgan_generator
--config.discriminator.name=dcgan_discriminator --config.generator.image_size=64
--config.discriminator.image_size=64 --config.gan.z_dim=100 --config.generator.z_dim=100.

Run:
  python -m convnets.main --config=experiments/dcgan_imagenet32.py --workdir=/tmp/dcgan_imagenet32
Hardware/time: not run here (no ImageNet, no GPU).
"""

from experiments import gan

Z_DIM = 256  # the released model's nz


def get_config():
    c = gan.dcgan_config(image_size=32, channels=3)
    c.generator.name = 'dcgan_imagenet32_generator'
    c.discriminator.name = 'dcgan_imagenet32_discriminator'
    c.gan.z_dim = Z_DIM
    c.generator.z_dim = Z_DIM
    c.data.name = 'imagenet_resized/32x32'
    c.data.train_split = 'train'
    c.data.eval_split = 'validation'
    c.data.train_preprocess = 'decode|value_range(-1, 1)'
    c.data.eval_preprocess = 'decode|value_range(-1, 1)'
    c.num_epochs = 25.0
    c.log_every = '500 steps'
    c.checkpoint_every = '5000 steps'
    c.evals.samples.every = '5000 steps'
    return c
