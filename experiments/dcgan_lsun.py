"""DCGAN on LSUN bedrooms at 64x64 (Radford, Metz, Chintala 2015, Sec. 4.1, Fig. 2-4).

Reproduces the bedroom model: Fig. 1's networks (convnets/models/dcgan.py at 64x64x3, width 128) with the Sec. 4
recipe (z ~ U(-1, 1) of 100 dims, batches of 128, weights N(0, 0.02), Adam lr 2e-4 beta1 0.5, images to [-1, 1],
no augmentation), on LSUN's ~3M training bedrooms (TFDS lsun/bedroom), each image's shorter side resized to 64 and
the centre 64x64 crop kept. Fig. 2 shows samples after one pass over the data, Fig. 3 after five: 5 epochs here.
Not reproduced: the paper's de-duplication of the bedrooms (Sec. 4.1.1: a 3072-128-3072 denoising autoencoder whose
ReLU codes are hashed, ~275,000 near duplicates removed).
DCGAN Fig. 4's walks in z: the 'samples' evaluator's interpolation strips (TensorBoard samples/interpolation).

Measured by the paper only qualitatively. results.json: 'samples' (pixel statistics of a fixed-z grid).

Run:
  python -m convnets.main --config=experiments/dcgan_lsun.py --workdir=/tmp/dcgan_lsun
LSUN comes through TFDS (lsun/bedroom: a 43 GB zip, and `pip install lmdb` to read it; the error message lists the
files to place by hand in --config.data.manual_dir). Hardware/time: not run here (no data, no GPU).
"""

from experiments import gan


def get_config():
    c = gan.dcgan_config(image_size=64, channels=3)
    c.data.name = 'lsun/bedroom'
    c.data.train_split = 'train'
    c.data.eval_split = 'validation'
    c.data.train_preprocess = gan.dcgan_spec(64)
    c.data.eval_preprocess = gan.dcgan_spec(64)
    c.num_epochs = 5.0
    c.log_every = '500 steps'
    c.checkpoint_every = '5000 steps'
    c.evals.samples.every = '5000 steps'
    return c
