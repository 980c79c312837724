"""Generative adversarial networks (Goodfellow et al. 2014; DCGAN, Radford et al. 2015) as a task of the one loop.

Two networks, two optimisers, alternating updates inside ONE jitted step:
  k times (config.gan.d_steps; k = 1 in both papers): the discriminator D ascends
        log D(x) + log(1 - D(G(z)))             (Goodfellow et al. Algorithm 1; BCE on real = 1, fake = 0)
  then the generator G descends, with config.gan.g_loss
        'minimax':         log(1 - D(G(z)))      (eq. 1 as written)
        'non_saturating':  -log D(G(z))          (Sec. 3: "rather than training G to minimize log(1 - D(G(z)))
                                                  we can train G to maximize log D(G(z))"; DCGAN's code does this)
D's phase sees G's samples as constants (no gradient reaches G); G's phase differentiates through the updated D.

Noise. z ~ U(-1, 1)^z_dim (DCGAN Sec. 4; config.gan.z_dist='uniform', z_bound 1; the GAN authors' MNIST yaml
draws U(-sqrt 3, sqrt 3)) or N(0, 1). Each example's z is drawn from
a key folded from (the run's key, the step, the phase, the example's GLOBAL index in the batch): every device
draws its own examples' z (device d holds global rows d * B/P ...), and the draws do not depend on how many
devices share the batch, so 1 and 8 devices take the same step.

BatchNorm across devices. D's and G's BatchNorm layers normalise over the GLOBAL batch (`bn_axis_name`, set by
`base.build_model`: the statistics are averaged over the mesh axis), so the result is the same for any device
count, as the papers' single-GPU batches of 128. D sees the real and the fake batch in separate calls, each
normalised with its own batch's statistics, as in the DCGAN authors' code (two D passes, one per batch); D's running
averages (used only when D is evaluated in inference mode, e.g. as a feature extractor) are taken from the real
batches. G's running averages come from its own phase. Dropout (the MLP GAN's D) draws per device, so only
dropout-free networks are device-count invariant bit for bit.

Batches: 'image' [B, H, W, C] real images in the generator's range (config.gan.image_range: [-1, 1] for tanh
outputs, [0, 1] for sigmoid; the data spec maps the pixels there). Metrics: d_loss, g_loss, d_real and d_fake (mean
D(x) and D(G(z)) in the D phase), and each network's lr / grad_norm / param_norm (float16: loss_scale, skipped)
with a d_ or g_ prefix. Both networks run in `config.dtype` (`convnets.train.precision`), each with its own loss
scale under float16.

Config: `generator` and `discriminator` (model sections: name + constructor fields), `gan` (z_dim, z_dist,
d_steps, g_loss, image_range), `g_optimizer` and `d_optimizer` (sections like `optimizer`; DCGAN: Adam lr 2e-4,
beta1 0.5). `optimizer` itself only names the metric the "best" bookkeeping watches (plateau_metric).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from ml_collections import ConfigDict

from convnets.tasks import base, sgd
from convnets.train import optim
from convnets.train.precision import Policy
from convnets.train.state import TrainState

GENERATOR = 'generator'
DISCRIMINATOR = 'discriminator'
Z_DISTS = ('uniform', 'normal')
G_LOSSES = ('non_saturating', 'minimax')


def latents(gan: ConfigDict, key: jax.Array, n: int) -> jax.Array:
    """`n` noise vectors [n, z_dim] from `key`: U(-b, b) with b = gan.z_bound ('uniform'; DCGAN b = 1, the GAN
    authors' MNIST yaml b = sqrt(3)) or N(0, 1) ('normal')."""
    if gan.z_dist == 'uniform':
        bound = float(gan.get('z_bound', 1.0))
        return jax.random.uniform(key, (n, gan.z_dim), jnp.float32, -bound, bound)
    return jax.random.normal(key, (n, gan.z_dim), jnp.float32)


def example_latents(gan: ConfigDict, key: jax.Array, index: jax.Array) -> jax.Array:
    """One noise vector per global example index: [len(index), z_dim], independent of how the batch is split."""
    return jax.vmap(lambda i: latents(gan, jax.random.fold_in(key, i), 1)[0])(index)


def generate(generator: nn.Module, variables: dict[str, Any], z: jax.Array, policy: Policy | None = None
             ) -> jax.Array:
    """G's samples [n, H, W, C] in its own range (inference mode: BatchNorm's running averages), computed in the
    compute dtype of `policy` (None: float32) and returned in float32."""
    return (policy or Policy()).apply(generator, variables, z, train=False)


def initial_generator_variables(config: ConfigDict, generator: nn.Module) -> dict[str, Any]:
    """G's variables at step 0 of a run of `config` (the same draw as the task's initial state)."""
    rngs = {k: jax.random.fold_in(v, 0) for k, v in base.init_rngs(config.seed).items()}
    return generator.init(rngs, jnp.zeros((1, int(config.gan.z_dim)), jnp.float32), train=False)


def image_range(config: ConfigDict) -> tuple[float, float]:
    """The range of the generator's output and of the real batches: config.gan.image_range."""
    lo, hi = config.gan.image_range
    return float(lo), float(hi)


def discriminator_losses(real_logits: jax.Array, fake_logits: jax.Array) -> jax.Array:
    """-[log D(x) + log(1 - D(G(z)))] averaged over the batch, with D = sigmoid(logit): softplus(-r) + softplus(f)."""
    return jnp.mean(jax.nn.softplus(-real_logits)) + jnp.mean(jax.nn.softplus(fake_logits))


def generator_loss(fake_logits: jax.Array, kind: str) -> jax.Array:
    """'non_saturating': -log D(G(z)) = softplus(-f); 'minimax': log(1 - D(G(z))) = -softplus(f)."""
    if kind == 'non_saturating':
        return jnp.mean(jax.nn.softplus(-fake_logits))
    return -jnp.mean(jax.nn.softplus(fake_logits))


def _variables(params: Any, stats: Any) -> dict[str, Any]:
    return {'params': params, 'batch_stats': stats} if stats else {'params': params}


class Phases:
    """The two halves of a GAN step on one device's slice, usable alone (tests) or composed (`make_train_step`).

    `discriminator(state, real, key, phase)` returns the state with D updated once (G untouched) and D's metrics;
    `generator(state, key, phase)` returns the state with G updated once (D untouched) and G's metrics. `key` is
    the step's key; `phase` numbers the draws of noise and dropout within the step.
    """

    def __init__(self, config: ConfigDict, nets: Mapping[str, nn.Module], optimizers: Mapping[str, base.Optimizer],
                 *, axis_name: str, loss_is_global: bool):
        self.g_net, self.d_net = nets[GENERATOR], nets[DISCRIMINATOR]
        self.g_opt, self.d_opt = optimizers[GENERATOR], optimizers[DISCRIMINATOR]
        self.gan, self.axis_name, self.loss_is_global = config.gan, axis_name, loss_is_global
        self.policy = Policy.from_config(config)  # both networks run in config.dtype; samples and logits float32

    def noise(self, key: jax.Array, phase: int, local: int) -> jax.Array:
        """This device's rows of the global batch's noise (device d holds the global rows d * local ...)."""
        index = lax.axis_index(self.axis_name) * local + jnp.arange(local)
        return example_latents(self.gan, jax.random.fold_in(key, phase), index)

    def _dropout(self, key: jax.Array, draw: int) -> dict[str, jax.Array]:
        return {'dropout': jax.random.fold_in(jax.random.fold_in(key, 1000 + draw), lax.axis_index(self.axis_name))}

    def discriminator(self, state: TrainState, real: jax.Array, key: jax.Array, phase: int
                      ) -> tuple[TrainState, dict[str, jax.Array]]:
        g, d = state.nets[GENERATOR], state.nets[DISCRIMINATOR]
        fake, _ = self.policy.apply(self.g_net, g.variables, self.noise(key, phase, real.shape[0]), train=True,
                                    mutable=['batch_stats'])
        fake = lax.stop_gradient(fake)  # D's phase: G's samples are constants

        def loss_fn(params):
            real_logits, real_vars = self.policy.apply(self.d_net, _variables(params, d.batch_stats), real,
                                                       train=True, mutable=['batch_stats'],
                                                       rngs=self._dropout(key, 2 * phase))
            fake_logits, _ = self.policy.apply(self.d_net, _variables(params, d.batch_stats), fake, train=True,
                                               mutable=['batch_stats'], rngs=self._dropout(key, 2 * phase + 1))
            return discriminator_losses(real_logits, fake_logits), (
                real_vars.get('batch_stats', {}), jax.nn.sigmoid(real_logits), jax.nn.sigmoid(fake_logits))

        (loss, (stats, d_real, d_fake)), grads = sgd.net_value_and_grad(
            loss_fn, d, axis_name=self.axis_name, loss_is_global=self.loss_is_global, policy=self.policy)
        new_d = sgd.apply_gradients(d, grads, self.d_opt.tx, batch_stats=stats if d.batch_stats else None)
        metrics = {'d_loss': loss, 'd_real': lax.pmean(jnp.mean(d_real), self.axis_name),
                   'd_fake': lax.pmean(jnp.mean(d_fake), self.axis_name),
                   **{f'd_{k}': v for k, v in sgd.update_metrics(state.step, self.d_opt.schedule, d, grads,
                                                                 new_d).items()}}
        return state.replace(nets={**state.nets, DISCRIMINATOR: new_d}), metrics

    def generator(self, state: TrainState, key: jax.Array, phase: int, local: int
                  ) -> tuple[TrainState, dict[str, jax.Array]]:
        g, d = state.nets[GENERATOR], state.nets[DISCRIMINATOR]
        z = self.noise(key, phase, local)

        def loss_fn(params):
            fake, g_vars = self.policy.apply(self.g_net, _variables(params, g.batch_stats), z, train=True,
                                             mutable=['batch_stats'])
            # D in training mode (batch statistics of the fake batch), as in D's own phase; its state is not kept.
            logits, _ = self.policy.apply(self.d_net, d.variables, fake, train=True, mutable=['batch_stats'],
                                          rngs=self._dropout(key, 2 * phase))
            return generator_loss(logits, self.gan.g_loss), g_vars.get('batch_stats', {})

        (loss, stats), grads = sgd.net_value_and_grad(loss_fn, g, axis_name=self.axis_name,
                                                      loss_is_global=self.loss_is_global, policy=self.policy)
        new_g = sgd.apply_gradients(g, grads, self.g_opt.tx, batch_stats=stats if g.batch_stats else None)
        metrics = {'g_loss': loss, **{f'g_{k}': v for k, v in sgd.update_metrics(state.step, self.g_opt.schedule, g,
                                                                                 grads, new_g).items()}}
        return state.replace(nets={**state.nets, GENERATOR: new_g}), metrics


def make_train_step(config: ConfigDict, nets: Mapping[str, nn.Module], optimizers: Mapping[str, base.Optimizer], *,
                    axis_name: str, loss_is_global: bool) -> base.StepFn:
    """One GAN step on one device's slice: k = config.gan.d_steps discriminator updates on the batch's real images
    (fresh noise each), then one generator update."""
    phases = Phases(config, nets, optimizers, axis_name=axis_name, loss_is_global=loss_is_global)
    d_steps = int(config.gan.d_steps)

    def step(state: TrainState, batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
        real = batch['image']
        key = jax.random.fold_in(state.rng, state.step)
        metrics: dict[str, jax.Array] = {}
        for phase in range(d_steps):
            state, metrics = phases.discriminator(state, real, key, phase)
        state, g_metrics = phases.generator(state, key, d_steps, real.shape[0])
        return state.replace(step=state.step + 1), {**metrics, **g_metrics}

    return step


class GAN(base.Task):
    """A generator and a discriminator (`config.generator`, `config.discriminator`) with their own optimisers
    (`config.g_optimizer`, `config.d_optimizer`), trained by alternating updates (`config.gan`)."""

    @property
    def evaluators(self) -> Mapping[str, base.EvaluatorFactory]:  # type: ignore[override]
        # Imported when asked for: these modules import this one.
        from convnets.evaluate import frechet, gan_features_svm, parzen
        from convnets.visualize import samples

        return {'samples': samples.make_evaluator, 'parzen': parzen.make_evaluator,
                'frechet': frechet.make_evaluator, 'gan_svm': gan_features_svm.make_evaluator}

    divergence_metrics = ()  # A GAN's losses oscillate by design: only non-finite values stop a run.

    def architecture(self, config: ConfigDict) -> dict[str, Any]:
        return {'generator': config.generator.to_dict(), 'discriminator': config.discriminator.to_dict(),
                'z_dim': config.gan.z_dim}

    def run_config(self, config: ConfigDict) -> dict[str, Any]:
        return super().run_config(config) | {'gan': config.gan.to_dict(),
                                             'g_optimizer': config.g_optimizer.to_dict(),
                                             'd_optimizer': config.d_optimizer.to_dict()}

    def validate(self, config: ConfigDict) -> None:
        super().validate(config)
        optim.validate(config.g_optimizer)
        optim.validate(config.d_optimizer)
        gan = config.gan
        if gan.z_dist not in Z_DISTS:
            raise ValueError(f'gan.z_dist={gan.z_dist!r}: use one of {Z_DISTS} (DCGAN: uniform).')
        if gan.g_loss not in G_LOSSES:
            raise ValueError(f"gan.g_loss={gan.g_loss!r}: use 'non_saturating' (-log D(G(z)), Goodfellow et al. "
                             f"Sec. 3) or 'minimax' (log(1 - D(G(z))), eq. 1).")
        if gan.z_dist == 'uniform' and not float(gan.get('z_bound', 1.0)) > 0:
            raise ValueError(f'gan.z_bound={gan.z_bound}: the uniform noise U(-b, b) needs b > 0 (DCGAN: 1).')
        if int(gan.d_steps) < 1 or int(gan.z_dim) < 1:
            raise ValueError(f'gan.d_steps={gan.d_steps} and gan.z_dim={gan.z_dim} must be >= 1 (the papers: k = 1, '
                             f'z_dim = 100).')
        lo, hi = image_range(config)
        if not lo < hi:
            raise ValueError(f'gan.image_range={tuple(gan.image_range)} must be (low, high) with low < high.')

    def build_nets(self, config: ConfigDict) -> dict[str, nn.Module]:
        return {GENERATOR: base.build_model(config.generator), DISCRIMINATOR: base.build_model(config.discriminator)}

    def make_optimizers(self, config: ConfigDict, *, steps_per_epoch: int, total_steps: int
                        ) -> dict[str, base.Optimizer]:
        out = {}
        for name, opt in ((GENERATOR, config.g_optimizer), (DISCRIMINATOR, config.d_optimizer)):
            schedule = optim.make_schedule(opt, steps_per_epoch=steps_per_epoch, total_steps=total_steps)
            out[name] = base.Optimizer(optim.make_optimizer(opt, schedule), schedule)
        return out

    def init_state(self, config: ConfigDict, nets: Mapping[str, nn.Module], optimizers: Mapping[str, base.Optimizer],
                   batch_spec: base.BatchSpec) -> TrainState:
        d_rngs = {k: jax.random.fold_in(v, 1) for k, v in base.init_rngs(config.seed).items()}
        x = jnp.zeros((1, *batch_spec['image'].shape), jnp.float32)
        scale = Policy.from_config(config).initial_loss_scale()  # float16: one dynamic scale per network
        g = base.fresh_state(initial_generator_variables(config, nets[GENERATOR]), optimizers[GENERATOR].tx,
                             config.seed, name=GENERATOR, loss_scale=scale)
        d = base.fresh_state(nets[DISCRIMINATOR].init(d_rngs, x, train=False), optimizers[DISCRIMINATOR].tx,
                             config.seed, name=DISCRIMINATOR, loss_scale=scale)
        return g.replace(nets={**g.nets, **d.nets})

    def make_train_step(self, config: ConfigDict, nets: Mapping[str, nn.Module],
                        optimizers: Mapping[str, base.Optimizer], *, axis_name: str, loss_is_global: bool
                        ) -> base.StepFn:
        return make_train_step(config, nets, optimizers, axis_name=axis_name, loss_is_global=loss_is_global)


TASK = GAN()

