"""The training loop end to end: learning, determinism, resume after stop / preemption / kill, guards, outputs."""

import json
import os

import jax
import numpy as np
import pytest

from convnets.train import checkpoint, loop
from tests.helpers import assert_trees_equal, final_params, tiny_config


def _read(workdir, name='results.json'):
    with open(os.path.join(workdir, name)) as f:
        return json.load(f)


def _tensorboard_scalars(logdir) -> dict[str, dict[int, float]]:
    import tensorflow as tf

    scalars: dict[str, dict[int, float]] = {}
    for name in os.listdir(logdir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = float(tf.make_ndarray(value.tensor))
    return scalars


@pytest.mark.slow
def test_quickstart_shortened_learns(tmp_path, digits_dir):
    """LeNet-5 on the embedded digits: 7 epochs lower the loss substantially and beat chance by far."""
    config = tiny_config(digits_dir)
    config.batch_size = 32
    config.num_train_steps = 300  # 7 epochs of 44 steps.
    config.log_every = '5 steps'
    results = loop.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices()[:2])
    scalars = _tensorboard_scalars(tmp_path / 'run' / 'tensorboard')
    assert sorted(scalars['train/loss']) == list(range(5, 301, 5))
    assert scalars['train/loss'][300] < 0.3 * scalars['train/loss'][5]
    assert scalars['eval/top1'][300] == pytest.approx(results['eval']['top1'])
    assert scalars['train/lr'][5] == pytest.approx(0.05)
    # The untrained LeNet-5 predicts uniformly: loss ln(10) = 2.30 (tests/test_models.py checks the start).
    assert results['train']['loss'] < 0.3 * np.log(10)
    assert results['eval']['loss'] < 0.3 * np.log(10)
    assert results['eval']['top1'] > 0.85
    assert results['eval']['num_examples'] == 360
    assert results['eval']['top5'] >= results['eval']['top1']
    written = _read(tmp_path / 'run')
    assert written["step"] == 300
    assert written['eval'] == pytest.approx(results['eval'])
    assert written['train_examples_per_s'] > 0
    assert written['config']['model']['name'] == 'lenet5'


@pytest.mark.slow  # two whole runs: in CI, out of the 3-minute loop
def test_two_runs_same_seed_are_bitwise_identical(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    a, b = str(tmp_path / 'a'), str(tmp_path / 'b')
    loop.train_and_evaluate(config, a, devices=jax.devices()[:4])
    loop.train_and_evaluate(config, b, devices=jax.devices()[:4])
    assert_trees_equal(final_params(a), final_params(b))
    config.seed = 1
    c = str(tmp_path / 'c')
    loop.train_and_evaluate(config, c, devices=jax.devices()[:4])
    assert not np.array_equal(jax.tree.leaves(final_params(a))[0], jax.tree.leaves(final_params(c))[0])


@pytest.mark.slow  # three whole runs: in CI, out of the 3-minute loop
def test_preempted_run_resumes_to_the_same_result(tmp_path, digits_dir, monkeypatch):
    """A SIGTERM-style stop after step 4 saves; the rerun resumes (state, RNG, data position) and matches."""
    config = tiny_config(digits_dir)
    config.num_train_steps = 8
    config.checkpoint_every = '3'
    config.evals.val.every = '4'
    devices = jax.devices()[:2]
    straight = str(tmp_path / 'straight')
    loop.train_and_evaluate(config, straight, devices=devices)

    resumed = str(tmp_path / 'resumed')
    monkeypatch.setattr(checkpoint.PreemptionWatcher, 'requested', lambda self, step: step == 5)
    assert loop.train_and_evaluate(config, resumed, devices=devices) is None
    assert not os.path.exists(os.path.join(resumed, 'results.json'))
    assert sorted(os.listdir(os.path.join(resumed, 'checkpoints'))) == ['3', '5']
    monkeypatch.undo()
    loop.train_and_evaluate(config, resumed, devices=devices)
    assert_trees_equal(final_params(straight), final_params(resumed))
    a, b = _read(straight), _read(resumed)
    assert a['step'] == b['step'] == 8
    assert a['eval'] == b['eval']


def test_interrupted_save_is_ignored(tmp_path, digits_dir):
    """Leftovers of a save killed midway (orbax's temporary directory) do not break the next start."""
    config = tiny_config(digits_dir)
    config.num_train_steps = 3
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    ckpt_dir = os.path.join(workdir, 'checkpoints')
    partial = os.path.join(ckpt_dir, '6.orbax-checkpoint-tmp-1234567890')
    os.makedirs(os.path.join(partial, 'state'))
    with open(os.path.join(partial, 'state', 'garbage'), 'w') as f:
        f.write('half a file')
    config.num_train_steps = 6
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    assert _read(workdir)['step'] == 6
    assert not os.path.exists(partial)


def test_checkpoint_retention(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    config.num_train_steps = 10
    config.checkpoint_every = '2'
    config.keep_checkpoints = 2
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints')), key=int) == ['8', '10']


def test_eval_mode_reads_latest_checkpoint(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    workdir = str(tmp_path / 'run')
    trained = loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    evaluated = loop.evaluate_checkpoint(config, workdir, devices=jax.devices()[:1])
    assert evaluated['step'] == 3
    assert evaluated['eval'] == pytest.approx(trained['eval'])
    assert _read(workdir, 'eval_results.json')['eval'] == pytest.approx(trained['eval'])
    with pytest.raises(FileNotFoundError, match='No checkpoint'):
        loop.evaluate_checkpoint(config, str(tmp_path / 'empty'), devices=jax.devices()[:1])


# ---------------------------------------------------------------------------------------------------- guards


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    config.num_train_steps = 4
    config.checkpoint_every = '2'
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    good = final_params(workdir)
    config.num_train_steps = 20
    config.optimizer.learning_rate = 1e38  # The first update overflows (inf itself is refused up front).
    config.resume_with_changes = True
    with pytest.raises(loop.NonFiniteLossError, match=r'param_norm=inf\) at step 5 .*last good checkpoint \(step 4\)'):
        loop.train_and_evaluate(config, workdir, devices=jax.devices()[:1])
    assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['2', '4']
    assert_trees_equal(final_params(workdir), good)


def test_batch_not_divisible_by_devices(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    config.batch_size = 12
    with pytest.raises(ValueError, match=r'batch_size=12 .* multiple of the number of devices \(8\).*=8 or 16'):
        loop.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices())


def test_unknown_model(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    config.model.name = 'lenet'
    with pytest.raises(ValueError, match=r"lenet.*lenet5"):
        loop.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices()[:1])


def test_unknown_dataset(tmp_path, digits_dir):
    config = tiny_config(digits_dir)
    config.data.name = 'cifar_10'
    with pytest.raises(ValueError, match=r"cifar_10.*cifar10"):
        loop.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices()[:1])


def test_workdir_of_a_different_model(tmp_path, digits_dir):
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(tiny_config(digits_dir), workdir, devices=jax.devices()[:1])
    other = tiny_config(digits_dir, name='convnet', num_classes=10)
    expected = r"another architecture: model.name was 'lenet5', now 'convnet'.*new --workdir"
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match=expected):
        loop.train_and_evaluate(other, workdir, devices=jax.devices()[:1])


@pytest.mark.slow  # a trained run (~6 s): kept out of the quick loop
def test_plateau_schedule_is_driven_by_evaluations(tmp_path, digits_dir):
    """With a rate too small to change the error, every evaluation after the first is 'no improvement': with
    patience 2 the rate drops 10x after evaluations 3 and 5, and the steps after them train at the lower rate."""
    config = tiny_config(digits_dir)
    config.num_train_steps = 6
    config.evals.val.every = '1'
    config.optimizer.schedule = 'plateau'
    config.optimizer.plateau_patience = 2
    config.optimizer.learning_rate = 1e-9
    workdir = tmp_path / 'run'
    loop.train_and_evaluate(config, str(workdir), devices=jax.devices()[:1])
    lr = _tensorboard_scalars(workdir / 'tensorboard')['train/lr']
    assert [lr[s] / 1e-9 for s in range(1, 7)] == pytest.approx([1, 1, 1, 0.1, 0.1, 0.01])
