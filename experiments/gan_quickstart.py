"""GAN quickstart: the original GAN (Goodfellow et al. 2014) learns to draw the embedded digits on a CPU in minutes.

What it shows: the 'gan' task (convnets/tasks/gan.py: k = 1 discriminator update, then one generator update, per
batch; the non-saturating generator loss of Sec. 3) with the networks and recipe of the authors' MNIST model
(convnets/models/gan_mlp.py, the released mnist.yaml: G ReLU 1200-1200 + sigmoid, D maxout 240x5-240x5 + sigmoid
with dropout 0.2 on the image and 0.5 on the hidden inputs; z of 100 dims ~ U(-sqrt 3, sqrt 3); SGD with
mini-batches of 100, lr 0.1 decayed by 1/1.000004 per step, momentum 0.5) on convnets_digits (1,437 training
digits of 32x32, no download: 32x32x1 instead of MNIST's 28x28x1, everything else as the yaml).
Why not DCGAN here: DCGAN-style nets (experiments/dcgan_*.py) on these 1,437 digits reach a Fréchet distance of
~22 after ~500 steps and then get worse as D overfits the small set (WORKSPACE.md, GANs); the MLP GAN's dropout D
keeps improving.

Measured (results.json 'frechet', WORKSPACE.md): the Fréchet distance between 1,000 samples and the 360 held-out
test digits in the feature space of the quickstart's LeNet-5 (F6, 84-d), against the untrained generator
(fd_untrained) and the real-vs-real floor (fd_floor: 1,000 training digits against the same test digits), and the
class coverage (classes the classifier finds in at least 1% of the samples). The classifier is
experiments/quickstart.py's LeNet-5: the evaluator trains it once into <workdir>/digits_classifier (~40 s) unless
--config.evals.frechet.classifier_workdir names a finished quickstart run. Sample grids every 100 epochs
(<workdir>/samples/, TensorBoard 'samples/grid', and the latent walk 'samples/interpolation').

Run:
  python -m convnets.main --config=experiments/gan_quickstart.py --workdir=/tmp/gan_quickstart
  python -m convnets.main --config=experiments/gan_quickstart.py --workdir=/tmp/gan_quickstart --mode=generate \
    --num_samples=100
Hardware/time: see WORKSPACE.md (2-core CPU).
"""

from experiments import gan, gan_mnist


def get_config():
    c = gan_mnist.get_config()  # the authors' networks, noise and SGD recipe
    c.generator.image_shape = (32, 32, 1)
    c.discriminator.image_shape = (32, 32, 1)
    c.data.name = 'convnets_digits'
    c.data.train_split = 'train'
    c.data.eval_split = 'test'
    c.data.cache = True
    c.data.train_preprocess = 'decode|value_range(0, 1)'
    c.data.eval_preprocess = 'decode|value_range(0, 1)'
    c.batch_size = 100
    c.eval_batch_size = 120  # divides the 360 test digits (and 8 devices' worth of 15)
    c.num_epochs = 700.0
    c.log_every = '20 epochs'
    c.checkpoint_every = '100 epochs'
    del c.evals['parzen']  # Parzen windows on 32x32 digits: see gan_mnist.py; the Fréchet distance is the number here
    c.evals.samples = gan.samples_eval(every='100 epochs', num_samples=64, interpolations=4, interpolation_steps=10)
    c.evals.frechet = gan.frechet_eval(every='100 epochs', num_samples=1000, results_key='frechet')
    c.optimizer.plateau_metric = 'frechet/fd'  # results.json 'best': the lowest distance seen
    return c
