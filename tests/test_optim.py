"""Learning-rate schedules give exact values at exact steps; weight decay is coupled as documented."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convnets.train import optim
from experiments import default


def _opt(**kw):
    c = default.get_config().optimizer
    c.update(kw)
    return c


def test_constant():
    s = optim.make_schedule(_opt(learning_rate=0.05), steps_per_epoch=10, total_steps=100)
    assert [float(s(i)) for i in (0, 50, 99)] == pytest.approx([0.05] * 3)


def test_step_boundaries_in_epochs_and_steps():
    s = optim.make_schedule(_opt(schedule='step', learning_rate=0.1, boundaries=(2.0, 3.0)), steps_per_epoch=10,
                            total_steps=40)
    assert [float(s(i)) for i in (0, 19, 20, 29, 30, 39)] == pytest.approx([0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    # ResNet-on-CIFAR style: /10 at 32k and 48k iterations.
    s = optim.make_schedule(_opt(schedule='step', boundaries=(32000, 48000), boundary_unit='steps'),
                            steps_per_epoch=391, total_steps=64000)
    assert [float(s(i)) for i in (31999, 32000, 47999, 48000)] == pytest.approx([0.1, 0.01, 0.01, 0.001])


def test_exponential_staircase():
    # GoogLeNet: x0.96 every 8 epochs.
    s = optim.make_schedule(_opt(schedule='exponential', learning_rate=1.0, decay_factor=0.96, decay_every=8.0),
                            steps_per_epoch=5, total_steps=1000)
    assert [float(s(i)) for i in (0, 39, 40, 79, 80)] == pytest.approx([1, 1, 0.96, 0.96, 0.96 ** 2])


def test_cosine_and_warmup():
    s = optim.make_schedule(_opt(schedule='cosine', learning_rate=0.4, warmup_steps=10), steps_per_epoch=10,
                            total_steps=100)
    assert float(s(0)) == 0.0
    assert float(s(5)) == pytest.approx(0.5 * float(optax.cosine_decay_schedule(0.4, 100)(5)))
    assert float(s(50)) == pytest.approx(0.2)
    assert float(s(100)) == pytest.approx(0.0)


def test_unknown_schedule():
    with pytest.raises(ValueError, match='constant, step, exponential, cosine'):
        optim.make_schedule(_opt(schedule='plateau_typo'), steps_per_epoch=1, total_steps=1)


@pytest.mark.parametrize('on,bias_decays', [('all', True), ('kernels', False)])
def test_coupled_weight_decay(on, bias_decays):
    """v <- m v + (g + wd w); w <- w - lr v, with zero gradient: only the decay moves the weights."""
    opt = _opt(learning_rate=0.1, momentum=0.9, weight_decay=0.01, weight_decay_on=on)
    tx = optim.make_optimizer(opt, optim.make_schedule(opt, steps_per_epoch=1, total_steps=10))
    params = {'kernel': jnp.full((2, 2), 2.0), 'bias': jnp.full((2,), 2.0)}
    zeros = jax.tree.map(jnp.zeros_like, params)
    state = tx.init(params)
    updates, state = tx.update(zeros, state, params)
    new = optax.apply_updates(params, updates)
    np.testing.assert_allclose(new['kernel'], 2.0 - 0.1 * 0.01 * 2.0, rtol=1e-6)
    np.testing.assert_allclose(new['bias'], 2.0 - 0.1 * 0.01 * 2.0 if bias_decays else 2.0, rtol=1e-6)
    updates, state = tx.update(zeros, state, new)  # Second step: momentum carries the first decay term.
    v2 = 0.9 * 0.01 * 2.0 + 0.01 * float(new['kernel'][0, 0])
    np.testing.assert_allclose(optax.apply_updates(new, updates)['kernel'], new['kernel'] - 0.1 * v2, rtol=1e-6)
