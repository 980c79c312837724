"""Learning-rate schedules give exact values at exact steps; weight decay is coupled as documented."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from convnets.train import optim, transforms
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


def _sgd_update_size(tx, state, params):
    updates, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    return float(-updates['w'][0]), state


def test_plateau_drops_by_10x_after_patience_not_before():
    opt = _opt(schedule='plateau', learning_rate=0.1, momentum=0.0, plateau_patience=2, decay_factor=0.1)
    tx = optim.make_optimizer(opt, optim.make_schedule(opt, steps_per_epoch=1, total_steps=1))
    plateau = optim.plateau(opt)
    params = {'w': jnp.zeros((1,))}
    state = tx.init(params)
    errors = [0.5, 0.4, 0.41, 0.40, 0.40, 0.39, 0.39]
    expected_scale = [1, 1, 1, 0.1, 0.1, 0.1, 0.1]  # Two evaluations without improvement, then /10.
    for err, scale in zip(errors, expected_scale, strict=True):
        state = plateau.report(state, jnp.float32(err))
        assert float(transforms.rate_multiplier(state)) == pytest.approx(scale)
        size, _ = _sgd_update_size(tx, state, params)
        assert size == pytest.approx(0.1 * scale)


def test_lr_inside_velocity_is_alexnets_update():
    """AlexNet sec. 5: v <- 0.9 v - 0.0005 lr w - lr g; w <- w + v, with lr dropping between the steps."""
    opt = _opt(schedule='step', boundaries=(1,), boundary_unit='steps', learning_rate=0.01, momentum=0.9,
               weight_decay=5e-4, velocity='lr_inside')
    tx = optim.make_optimizer(opt, optim.make_schedule(opt, steps_per_epoch=1, total_steps=3))
    w = jnp.array([1.0, -2.0])
    g = [jnp.array([0.3, 0.1]), jnp.array([-0.2, 0.4])]
    state = tx.init({'w': w})
    v, w_ref = np.zeros(2), np.asarray(w)
    params = {'w': w}
    for step, (grad, lr) in enumerate(zip(g, [0.01, 0.001], strict=True)):
        v = 0.9 * v - 5e-4 * lr * w_ref - lr * np.asarray(grad)
        w_ref = w_ref + v
        updates, state = tx.update({'w': grad}, state, params)
        params = optax.apply_updates(params, updates)
        np.testing.assert_allclose(params['w'], w_ref, rtol=1e-6, err_msg=f'step {step}')


def test_zf_filter_renormalisation():
    opt = _opt(learning_rate=1.0, momentum=0.0, filter_rms_max=0.1)
    tx = optim.make_optimizer(opt, optim.make_schedule(opt, steps_per_epoch=1, total_steps=1))
    kernel = np.zeros((3, 3, 2, 3), np.float32)
    kernel[..., 0] = 0.5   # RMS 0.5 -> scaled to 0.1
    kernel[..., 1] = 0.05  # RMS 0.05 -> untouched
    kernel[..., 2] = np.random.default_rng(0).normal(0, 1, (3, 3, 2))  # RMS ~1 -> 0.1, direction kept
    params = {'conv': {'kernel': jnp.zeros_like(kernel), 'bias': jnp.zeros(3)}, 'dense': jnp.zeros((4, 4))}
    grads = {'conv': {'kernel': -jnp.asarray(kernel), 'bias': -jnp.full(3, 5.0)}, 'dense': -jnp.full((4, 4), 5.0)}
    updates, _ = tx.update(grads, tx.init(params), params)
    new = optax.apply_updates(params, updates)
    rms = np.sqrt(np.mean(np.square(new['conv']['kernel']), axis=(0, 1, 2)))
    np.testing.assert_allclose(rms, [0.1, 0.05, 0.1], rtol=1e-5)
    np.testing.assert_allclose(new['conv']['kernel'][..., 1], kernel[..., 1])  # Small filter not touched.
    np.testing.assert_allclose(new['conv']['kernel'][..., 2], kernel[..., 2] * 0.1 / np.sqrt(np.mean(
        kernel[..., 2] ** 2)), rtol=1e-5)
    np.testing.assert_allclose(new['conv']['bias'], 5.0)  # Biases and dense weights are not filters.
    np.testing.assert_allclose(new['dense'], 5.0)


def test_constant_warmup_of_resnet110():
    """He et al. sec. 4.2: 0.01 for the first 400 iterations, then 0.1 and the usual /10 steps."""
    s = optim.make_schedule(_opt(schedule='step', learning_rate=0.1, boundaries=(32000, 48000), boundary_unit='steps',
                                 warmup_steps=400, warmup_kind='constant', warmup_factor=0.1),
                            steps_per_epoch=391, total_steps=64000)
    assert [float(s(i)) for i in (0, 399, 400, 31999, 32000, 48000)] == pytest.approx(
        [0.01, 0.01, 0.1, 0.1, 0.01, 0.001])


@pytest.mark.parametrize('velocity', ['lr_outside', 'lr_inside'])
def test_bias_lr_multiplier_doubles_bias_steps_only(velocity):
    """Caffe's lr_mult: 2 (R-CNN / Fast R-CNN prototxts): bias updates twice the kernel's rate, every step."""
    params = {'fc': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)}}
    grads = jax.tree.map(jnp.ones_like, params)
    updates = {}
    for mult in (1.0, 2.0):
        opt = _opt(learning_rate=0.1, momentum=0.9, velocity=velocity, bias_lr_multiplier=mult)
        tx = optim.make_optimizer(opt, optim.make_schedule(opt, steps_per_epoch=1, total_steps=10))
        state = tx.init(params)
        for _ in range(3):  # momentum carries the multiplier along
            u, state = tx.update(grads, state, params)
        updates[mult] = u
    np.testing.assert_allclose(updates[2.0]['fc']['bias'], 2 * updates[1.0]['fc']['bias'], rtol=1e-6)
    np.testing.assert_array_equal(updates[2.0]['fc']['kernel'], updates[1.0]['fc']['kernel'])


def test_frozen_parameters_get_no_update_and_no_state():
    params = {'conv1_1_layer': {'kernel': jnp.ones((3, 3, 1, 2))}, 'conv3_1_layer': {'kernel': jnp.ones((3, 3, 2, 2))}}
    opt = _opt(learning_rate=0.1, momentum=0.9, weight_decay=5e-4, frozen=('^conv1_',))
    tx = optim.make_optimizer(opt, optim.make_schedule(opt, steps_per_epoch=1, total_steps=10))
    state = tx.init(params)
    u, state = tx.update(jax.tree.map(jnp.ones_like, params), state, params)
    assert not np.any(u['conv1_1_layer']['kernel']) and np.all(u['conv3_1_layer']['kernel'] < 0)
    traces = [x for x in jax.tree.leaves(state) if getattr(x, 'shape', ()) == (3, 3, 1, 2)]
    assert not traces  # no momentum kept for the frozen kernel
    typo = _opt(frozen=('^conv9_',))
    tx = optim.make_optimizer(typo, optim.make_schedule(typo, steps_per_epoch=1, total_steps=10))
    with pytest.raises(ValueError, match="'\\^conv9_' matches no parameter.*conv1_1_layer/kernel"):
        tx.init(params)


def test_adam_equals_optax_adam_and_bad_betas_are_named():
    """optimizer.name='adam' (DCGAN sec. 4: lr 2e-4, beta1 0.5) is optax's Adam step for step."""
    import jax.numpy as jnp
    import optax

    from experiments import default

    opt = default.get_config().optimizer
    opt.update(dict(name='adam', b1=0.5, learning_rate=2e-4, momentum=0.0))
    optim.validate(opt)
    tx = optim.make_optimizer(opt, optim.make_schedule(opt, steps_per_epoch=10, total_steps=10))
    reference = optax.adam(2e-4, b1=0.5)
    params = {'w': jnp.arange(3.0)}
    ours, theirs = tx.init(params), reference.init(params)
    for g in ([0.1, -0.2, 0.3], [1.0, 0.5, -2.0], [0.0, 0.1, 0.1]):
        grads = {'w': jnp.asarray(g)}
        u1, ours = tx.update(grads, ours, params)
        u2, theirs = reference.update(grads, theirs, params)
        np.testing.assert_allclose(u1['w'], u2['w'], rtol=1e-6)
    opt.b1 = 1.0
    with pytest.raises(ValueError, match='b1'):
        optim.validate(opt)
