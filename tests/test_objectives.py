"""Training objectives beyond plain cross-entropy: auxiliary classifier losses and Polyak averaging."""

import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from convnets import parallel
from convnets.data import pipeline
from convnets.tasks import base, classification
from convnets.train import loop
from tests.helpers import tiny_config


class _TwoHeads(nn.Module):
    """A linear classifier with two auxiliary heads that exist only in training, as GoogLeNet's."""

    @nn.compact
    def __call__(self, x, train=False):
        x = x.reshape((x.shape[0], -1))
        if train or self.is_initializing():
            for name in ('aux1', 'aux2'):
                self.sow('aux_logits', name, nn.Dense(10, name=f'{name}_head')(x))
        return nn.Dense(10, name='main')(x)


def test_auxiliary_losses_are_added_with_their_weight():
    model = _TwoHeads()
    rng = np.random.default_rng(0)
    batch = {'image': rng.normal(size=(8, 4, 4, 1)).astype(np.float32),
             'label': rng.integers(0, 10, 8).astype(np.int32)}
    tx = optax.sgd(0.1)
    state = classification.init_state(model, tx, 0, (4, 4, 1))
    assert {'aux1_head', 'aux2_head', 'main'} <= set(state.params)
    par = parallel.Parallel(parallel.make_mesh(jax.devices()[:2]))
    step = par.compile(classification.make_train_step(model, tx, optax.constant_schedule(0.1), axis_name=parallel.AXIS,
                                                      loss_is_global=True, aux_loss_weight=0.3), donate=False)
    _, metrics = step(state, par.shard_batch(batch))
    _, aux = model.apply(state.variables, batch['image'], train=True, mutable=['aux_logits'])
    ce = lambda logits: float(jnp.mean(classification.cross_entropy(logits, batch['label'])))
    main = ce(model.apply(state.variables, batch['image']))
    expected = main + 0.3 * (ce(aux['aux_logits']['aux1'][0]) + ce(aux['aux_logits']['aux2'][0]))
    assert float(metrics['main_loss']) == pytest.approx(main, rel=1e-5)
    assert float(metrics['loss']) == pytest.approx(expected, rel=1e-5)
    # Inference runs no auxiliary head.
    _, inference = model.apply(state.variables, batch['image'], train=False, mutable=['aux_logits'])
    assert 'aux_logits' not in inference


def _checkpoint(workdir, step):
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(os.path.join(workdir, 'checkpoints', str(step), 'state'))


@pytest.mark.slow  # a trained run (~7 s)
def test_polyak_average_is_evaluated_and_saved(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    config.ema_decay = 0.5
    config.checkpoint_every = '1'
    config.keep_checkpoints = 5
    workdir = str(tmp_path / 'run')
    results = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])

    model = base.build_model(config.model)
    tx = optax.sgd(0.0)
    initial = classification.init_state(model, tx, config.seed, (32, 32, 1)).params
    ema = initial
    for step in (1, 2, 3):  # By hand: e <- 0.5 e + 0.5 p_step.
        ema = jax.tree.map(lambda e, p: 0.5 * e + 0.5 * p, ema, _checkpoint(workdir, step)['nets']['model']['params'])
    saved = _checkpoint(workdir, 3)
    for a, b in zip(jax.tree.leaves(saved['nets']['model']['ema_params']), jax.tree.leaves(ema), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

    def eval_loss(params):
        losses = []
        for batch in pipeline.eval_batches(config.data, global_batch_size=config.batch_size):
            logits = model.apply({'params': params}, batch['image'])
            losses.append(np.asarray(classification.cross_entropy(logits, batch['label'])) * batch['mask'])
        return float(np.sum(np.concatenate(losses)) / 360)

    assert results['eval']['loss'] == pytest.approx(eval_loss(saved['nets']['model']['ema_params']), rel=1e-5)
    assert results['eval']['loss'] != pytest.approx(eval_loss(saved['nets']['model']['params']), rel=1e-5)
