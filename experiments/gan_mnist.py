"""The original GAN on MNIST (Goodfellow, Pouget-Abadie, Mirza, Xu, Warde-Farley, Ozair, Courville, Bengio 2014,
"Generative Adversarial Nets", Sec. 5, Table 1).

Reproduces Table 1's MNIST row: the networks of the authors' released mnist.yaml (goodfeli/adversarial;
convnets/models/gan_mlp.py: G ReLU 1200-1200 + sigmoid 784, D maxout 240x5-240x5 + sigmoid with dropout 0.2 on the
image and 0.5 on the hidden inputs), z of 100 dims ~ U(-sqrt 3, sqrt 3) (the yaml's 'uniform' noise), images in
[0, 1], k = 1 discriminator step per generator step (Algorithm 1; Sec. 5: "we used k = 1"), the non-saturating
generator loss (Sec. 3, --config.gan.g_loss=minimax for eq. 1 as written), SGD with mini-batches of 100, lr 0.1
decayed by 1/1.000004 every step and momentum 0.5 (the yaml raises it linearly to 0.7 over 250 epochs; a constant
0.5 here), trained on the first 50,000 training digits. Not applied: the yaml's start of G's output bias at the
log-odds of the training pixels' means (gan_mlp.with_marginal_output_bias does it; the task starts it at 0).
Evaluation (Sec. 5, Table 1): a Gaussian Parzen window on 10,000 samples, its width chosen on the 10,000 held-out
training digits (the authors' parzen_ll.py: widths logspace(-1, 0, 10), the first 1,000 validation digits), the
mean log-likelihood of the 10,000 test digits.

The authors' code (adversarial/__init__.py, AdversaryCost2) updates D and G together in one SGD step from the same
minibatch, samples and dropout masks; this task alternates (D, then G on fresh noise) as Algorithm 1 describes.

Paper result (Table 1): Parzen window log-likelihood 225 +- 2 (MNIST; DBN 138 +- 2, stacked CAE 121 +- 1.6, deep
GSN 214 +- 1.1). results.json: 'parzen' (log_likelihood, std_error, sigma).

Run:
  python -m convnets.main --config=experiments/gan_mnist.py --workdir=/tmp/gan_mnist
MNIST comes through TFDS (mnist, 11 MB). Hardware/time: not run here (no MNIST download on this machine).
Sweep 'table1' (Table 1's row, and the minimax generator loss beside it; the table: `python -m launch.report ROOT`):
  python -m launch.sweep --config=experiments/gan_mnist.py --sweep=table1 --workdir=/tmp/gan_mnist_table1
"""

import math

from convnets import sweeps
from experiments import gan


def get_config():
    c = gan.base_config()
    c.generator = gan.config_dict.ConfigDict({'name': 'gan_mlp_generator', 'z_dim': 100, 'hidden': (1200, 1200)})
    c.discriminator = gan.config_dict.ConfigDict({'name': 'gan_mlp_discriminator', 'hidden': (240, 240),
                                                  'pieces': (5, 5)})
    c.gan.z_dim = 100
    c.gan.z_bound = math.sqrt(3.0)  # adversarial.Generator.get_noise: U(-sqrt 3, sqrt 3), unit variance
    c.gan.image_range = (0.0, 1.0)  # sigmoid outputs; MNIST scaled to [0, 1]
    c.data.name = 'mnist'
    c.data.train_split = 'train[:50000]'
    c.data.eval_split = 'test'
    c.data.train_preprocess = 'decode|value_range(0, 1)'
    c.data.eval_preprocess = 'decode|value_range(0, 1)'
    for opt in (c.g_optimizer, c.d_optimizer):  # the yaml's SGD: lr 0.1 x (1/1.000004)^step, momentum 0.5
        opt.update(dict(name='sgd', learning_rate=0.1, momentum=0.5, schedule='exponential',
                        decay_factor=1 / 1.000004, decay_every=1.0, boundary_unit='steps'))
    c.batch_size = 100
    c.eval_batch_size = 100
    c.num_epochs = 300.0
    c.log_every = '1 epoch'
    c.checkpoint_every = '10 epochs'
    c.evals.samples.every = '10 epochs'
    c.evals.parzen = gan.parzen_eval(every='50 epochs', results_key='parzen', num_samples=10_000)
    c.optimizer.plateau_metric = ''
    return c


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """Table 1's MNIST entry, with the generator loss as written in eq. 1 beside the non-saturating one."""
    return {'table1': sweeps.Sweep(
        title='Parzen window log-likelihood of the MNIST test digits',
        source='Goodfellow et al. 2014, Table 1',
        columns=(sweeps.Column('log-likelihood', 'parzen.log_likelihood', scale=1.0),
                 sweeps.Column('std. error', 'parzen.std_error', scale=1.0)),
        runs=(sweeps.Run('adversarial nets (-log D(G(z)))', {'gan.g_loss': 'non_saturating'},
                         paper={'log-likelihood': 225.0, 'std. error': 2.0}),
              sweeps.Run('minimax G loss (eq. 1)', {'gan.g_loss': 'minimax'})),
        notes='The paper trains G with -log D(G(z)) (Sec. 3) and prints one number; the minimax row has none.')}
