"""DCGAN on CelebA faces at 64x64 (Radford, Metz, Chintala 2015, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks").

Reproduces the paper's face model (Sec. 4.2, Fig. 3, and the vector arithmetic of Sec. 6.3 on its samples) with the
architecture of Fig. 1 (convnets/models/dcgan.py: G projects z to 4x4x1024, four fractionally strided 5x5 convs
to 64x64x3 with tanh; D four strided 5x5 convs 128-1024, LeakyReLU 0.2, BatchNorm except on D's input, one logit)
and the Sec. 4 recipe: z ~ U(-1, 1) of 100 dims, mini-batches of 128, weights N(0, 0.02), Adam lr 2e-4 with beta1
0.5 for both networks, images scaled to [-1, 1], no other augmentation; one D and one G update per batch.
Data: the paper's faces are 3M web images of 10K people that were never released; CelebA (TFDS celeb_a, 162,770
aligned training faces) is the usual stand-in: the centre 108x108 crop of each 178x218 image resized to 64x64.
The paper does not state the face model's training length; 25 epochs at a constant rate here, as the authors'
faces/train_uncond_dcgan.py (niter 25, niter_decay 0). That script also adds an L2 weight decay of 1e-5 to both
Adam updates (not in the paper; kept, experiments/gan.py) and alternates whole minibatches between G and D, where
this task makes one D and one G update per batch (convnets/tasks/gan.py).

Measured by the paper only qualitatively (samples, walks in z, vector arithmetic). results.json: 'samples'
(pixel statistics of a fixed-z grid; grids in <workdir>/samples/ and TensorBoard).

Run:
  python -m convnets.main --config=experiments/dcgan_celeba.py --workdir=/tmp/dcgan_celeba
  python -m convnets.main --config=experiments/dcgan_celeba.py --workdir=/tmp/dcgan_celeba --mode=generate \
    --num_samples=64
CelebA comes through TFDS (celeb_a: 1.4 GB from Google Drive, which often refuses large downloads; the error
message lists the files to place by hand in --config.data.manual_dir). Hardware/time: not run here (no data, no GPU).
"""

from experiments import gan

CELEBA_CROP = 108  # the centre square of the 178x218 aligned faces that holds the face


def get_config():
    c = gan.dcgan_config(image_size=64, channels=3)
    c.data.name = 'celeb_a'
    c.data.train_split = 'train'
    c.data.eval_split = 'validation'
    c.data.train_preprocess = gan.dcgan_spec(64, crop=CELEBA_CROP)
    c.data.eval_preprocess = gan.dcgan_spec(64, crop=CELEBA_CROP)
    c.num_epochs = 25.0
    c.log_every = '200 steps'
    c.checkpoint_every = '2000 steps'
    c.evals.samples.every = '1000 steps'
    return c
