"""GAN quickstart: a DCGAN (Radford et al. 2015) learns to draw the embedded digits on a CPU in minutes.

What it shows: the 'gan' task (convnets/tasks/gan.py) trains a DCGAN-style generator and discriminator at 32x32x1
(convnets/models/dcgan.py with image_size 32: G projects z to 4x4x128, then three fractionally strided 5x5 convs
with BatchNorm + ReLU and a tanh output; D mirrors it with strided convs, LeakyReLU 0.2, BatchNorm except on its
input layer, and one logit; no pooling, no hidden fully connected layers) on convnets_digits (1,437 training
digits, 32x32, no download), with the paper's recipe otherwise: z ~ U(-1, 1) of 100 dims, Adam lr 2e-4 beta1 0.5,
weights N(0, 0.02), images scaled to [-1, 1], no augmentation, the non-saturating generator loss.
Deviations for a CPU: width 32 instead of 128 (G 0.36M, D 0.26M parameters), mini-batches of 64.

Measured (results.json 'frechet', WORKSPACE.md): the Fréchet distance between 1,000 samples and the 360 held-out
test digits in the feature space of the quickstart's LeNet-5 (F6, 84-d), against the untrained generator and the
real-vs-real floor (1,000 training digits against the same test digits), and the class coverage (classes the
classifier finds in at least 1% of the samples). The classifier is experiments/quickstart.py's LeNet-5: the
evaluator trains it on the fly into <workdir>/digits_classifier (~30 s) unless
--config.evals.frechet.classifier_workdir names a finished quickstart run. Sample grids every 20 epochs
(<workdir>/samples/, TensorBoard 'samples/grid', and the latent walk 'samples/interpolation', DCGAN Fig. 4).

Run:
  python -m convnets.main --config=experiments/gan_quickstart.py --workdir=/tmp/gan_quickstart
  python -m convnets.main --config=experiments/gan_quickstart.py --workdir=/tmp/gan_quickstart --mode=generate \
    --num_samples=100
Hardware/time: see WORKSPACE.md (2-core CPU).
"""

from experiments import gan


def get_config():
    c = gan.dcgan_config(image_size=32, channels=1, width=32)
    c.data.name = 'convnets_digits'
    c.data.cache = True
    c.data.train_preprocess = 'decode|value_range(-1, 1)'
    c.data.eval_preprocess = 'decode|value_range(-1, 1)'
    c.batch_size = 64
    c.eval_batch_size = 120  # divides the 360 test digits and 8 devices' worth of 15
    c.num_epochs = 100.0
    c.log_every = '5 epochs'
    c.checkpoint_every = '20 epochs'
    c.evals.samples = gan.samples_eval(every='20 epochs', num_samples=64, interpolations=4, interpolation_steps=10)
    c.evals.frechet = gan.frechet_eval(every='50 epochs', num_samples=1000, results_key='frechet')
    c.optimizer.plateau_metric = 'frechet/fd'  # results.json 'best': the lowest distance seen
    return c
