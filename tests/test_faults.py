"""Fault injection: runs never lose work (issue 9). Damaged checkpoints, evaluation failures at save steps, config
changes on resume, concurrent runs, reruns of finished runs, impossible settings and divergence.

The damage tests run against the generic loop with two tasks: classification and the two-network toy task of
tests/test_tasks.py.
"""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import jax
import pytest

from convnets.train import checkpoint, evaluations, loop
from convnets.train.workdir_lock import WorkdirBusyError, WorkdirLock
from tests import test_tasks
from tests.helpers import assert_trees_equal, final_state, tiny_config

DEVICES = 2


def _classification(digits_dir):
    c = tiny_config(digits_dir)
    c.num_train_steps, c.checkpoint_every, c.evals.val.every = 6, '3', '3'
    return c


def _toy(digits_dir):
    c = test_tasks._tiny(digits_dir)
    c.num_train_steps, c.checkpoint_every, c.evals.val.every = 6, '3', '3'
    return c


TASKS = {'classification': _classification, 'toy': _toy}


def _train(config, workdir):
    return loop.train_and_evaluate(config, str(workdir), devices=jax.devices()[:DEVICES])


def _read(workdir, name='results.json'):
    with open(os.path.join(workdir, name)) as f:
        return json.load(f)


def _steps(workdir):
    return sorted(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())


def _largest_state_file(workdir, step):
    files = [os.path.join(root, f) for root, _, names in os.walk(os.path.join(workdir, 'checkpoints', str(step),
                                                                             'state')) for f in names]
    return max(files, key=os.path.getsize)


def _flip_byte(workdir, step):
    path = _largest_state_file(workdir, step)
    with open(path, 'r+b') as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


def _truncate(workdir, step):
    path = _largest_state_file(workdir, step)
    with open(path, 'r+b') as f:
        f.truncate(os.path.getsize(path) // 2)


def _empty_metadata(workdir, step):
    open(os.path.join(workdir, 'checkpoints', str(step), 'state', '_METADATA'), 'w').close()


def _remove_meta(workdir, step):
    import shutil

    shutil.rmtree(os.path.join(workdir, 'checkpoints', str(step), 'meta'))


def _edit_meta(workdir, step):
    """A flip that leaves valid JSON (seen in benchmarks/soak.py): one letter of the recorded state structure."""
    path = os.path.join(workdir, 'checkpoints', str(step), 'meta', 'metadata')
    with open(path) as f:
        text = f.read()
    assert 'opt_state' in text
    with open(path, 'w') as f:
        f.write(text.replace('opt_state', 'opT_state', 1))


DAMAGE = {'flipped_byte': _flip_byte, 'truncated_file': _truncate, 'empty_metadata': _empty_metadata,
          'missing_meta': _remove_meta, 'meta_still_json': _edit_meta}


@pytest.fixture(scope='module')
def straight(tmp_path_factory, digits_dir):
    """Uninterrupted 6-step runs of each task: what every recovered run must end with."""
    out = {}
    for name, make in TASKS.items():
        workdir = tmp_path_factory.mktemp(f'straight_{name}')
        _train(make(digits_dir), workdir)
        out[name] = str(workdir)
    return out


# Two kinds of damage in the quick loop (-m 'not slow'); every kind with -m slow and in CI.
QUICK_DAMAGE = ('flipped_byte', 'truncated_file')


@pytest.mark.parametrize('damage', [d if d in QUICK_DAMAGE else pytest.param(d, marks=pytest.mark.slow)
                                    for d in sorted(DAMAGE)])
@pytest.mark.parametrize('task', ['classification', pytest.param('toy', marks=pytest.mark.slow)])
def test_damaged_newest_checkpoint_is_detected_and_the_previous_one_restored(tmp_path, digits_dir, straight, task,
                                                                             damage, caplog):
    config = TASKS[task](digits_dir)
    config.num_train_steps = 5  # Checkpoints at 3 and 5; the run then continues to 6.
    _train(config, tmp_path)
    assert _steps(tmp_path) == [3, 5]
    DAMAGE[damage](str(tmp_path), 5)
    config.num_train_steps = 6
    results = _train(config, tmp_path)
    warnings = ' '.join(r.getMessage() for r in caplog.records)
    assert 'checkpoint step 5 is damaged' in warnings and 'Restoring step 3, the newest intact checkpoint' in warnings
    assert [d.split('-')[0] for d in os.listdir(tmp_path / checkpoint.DAMAGED_DIR)] == ['5']
    # Retrained from step 3: exactly the uninterrupted run.
    assert_trees_equal(final_state(str(tmp_path))['nets'], final_state(straight[task])['nets'])
    assert results['eval'] == _read(straight[task])['eval']


def test_no_intact_checkpoint_is_a_clear_error_and_eval_mode_skips_damage_read_only(tmp_path, digits_dir):
    config = _classification(digits_dir)
    _train(config, tmp_path)
    _flip_byte(str(tmp_path), 6)
    evaluated = loop.evaluate_checkpoint(config, str(tmp_path), devices=jax.devices()[:DEVICES])
    assert evaluated['step'] == 3 and _steps(tmp_path) == [3, 6]  # Read-only: nothing moved.
    _truncate(str(tmp_path), 3)
    with pytest.raises(checkpoint.DamagedCheckpointError, match=r'No intact checkpoint.*step 6 is damaged.*step 3 '
                                                                r'is damaged.*Delete'):
        _train(config, tmp_path)


@pytest.mark.slow  # two trained runs (~12 s): kept out of the quick loop
@pytest.mark.parametrize('fail_at', [3, 6], ids=['mid_run', 'last_step'])
def test_evaluation_failure_at_a_save_step_costs_no_training(tmp_path, digits_dir, straight, monkeypatch, fail_at):
    config = _classification(digits_dir)
    run = evaluations.Evaluations.run

    def failing(self, name, state):
        if int(jax.device_get(state.step)) == fail_at:
            raise OSError('truncated test tfrecord (injected)')
        return run(self, name, state)

    monkeypatch.setattr(evaluations.Evaluations, 'run', failing)
    with pytest.raises(OSError, match='injected'):
        _train(config, tmp_path)
    assert _steps(tmp_path)[-1] == fail_at  # Saved before the evaluation.
    monkeypatch.undo()
    results = _train(config, tmp_path)
    assert_trees_equal(final_state(str(tmp_path))['nets'], final_state(straight['classification'])['nets'])
    assert results['eval'] == _read(straight['classification'])['eval']


def test_keep_checkpoints_zero_keeps_every_checkpoint(tmp_path, digits_dir):
    config = _classification(digits_dir)
    config.checkpoint_every, config.keep_checkpoints = '1', 0
    _train(config, tmp_path)
    assert _steps(tmp_path) == [1, 2, 3, 4, 5, 6]
    config.keep_checkpoints = -1
    with pytest.raises(ValueError, match='keep_checkpoints=-1.*0 to keep all'):
        _train(config, tmp_path / 'other')


def test_resume_with_other_run_settings_is_refused_or_recorded(tmp_path, digits_dir):
    config = _classification(digits_dir)
    config.num_train_steps = 3
    _train(config, tmp_path)
    config.num_train_steps, config.batch_size = 6, 32  # A longer run may continue; another batch size may not.
    with pytest.raises(checkpoint.IncompatibleCheckpointError,
                       match=r'batch_size was 16, now 32.*new --workdir.*resume_with_changes=True'):
        _train(config, tmp_path)
    config.resume_with_changes = True
    results = _train(config, tmp_path)
    assert results['step'] == 6 and results['resumed_with_changes'] == {'batch_size': {'was': 16, 'now': 32}}
    assert _read(tmp_path)['resumed_with_changes'] == {'batch_size': {'was': 16, 'now': 32}}


def test_resume_with_a_state_changing_setting_names_it(tmp_path, digits_dir):
    config = _classification(digits_dir)
    config.num_train_steps = 3
    _train(config, tmp_path)
    config.num_train_steps, config.ema_decay = 6, 0.5
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r'ema_decay was 0.0, now 0.5'):
        _train(config, tmp_path)
    config.resume_with_changes = True  # The Polyak average is not in the checkpoint: not restorable at all.
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match=r"other arrays.*only in this config: "
                                                                     r"\.nets\['model'\]\.ema_params"):
        _train(config, tmp_path)
    assert _steps(tmp_path) == [3]  # The intact checkpoint was not set aside as damaged.


def test_a_second_run_on_a_busy_workdir_is_refused(tmp_path, digits_dir):
    config = _classification(digits_dir)
    with WorkdirLock(str(tmp_path)):
        with pytest.raises(WorkdirBusyError, match=rf'in use by another run \(pid {os.getpid()} on .*another '
                                                   r'--workdir'):
            _train(config, tmp_path)
    assert not os.path.exists(tmp_path / 'checkpoints')


def test_the_lock_of_a_killed_run_is_released(tmp_path, digits_dir):
    code = ('import sys, time; sys.path.insert(0, sys.argv[2]); from convnets.train.workdir_lock import '
            'WorkdirLock; WorkdirLock(sys.argv[1]).acquire(); print("locked", flush=True); time.sleep(60)')
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    holder = subprocess.Popen([sys.executable, '-c', code, str(tmp_path), root], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'locked'
    with pytest.raises(WorkdirBusyError, match=f'pid {holder.pid}'):
        WorkdirLock(str(tmp_path)).acquire()
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    time.sleep(0.1)
    config = _classification(digits_dir)
    config.num_train_steps = 1
    assert _train(config, tmp_path)['step'] == 1  # The dead holder's lock went with it.


def test_rerunning_a_finished_run_keeps_its_results(tmp_path, digits_dir, caplog):
    caplog.set_level(logging.INFO, logger='absl')
    config = _classification(digits_dir)
    first = _train(config, tmp_path)
    before = (tmp_path / 'results.json').read_bytes()
    again = _train(config, tmp_path)
    assert (tmp_path / 'results.json').read_bytes() == before
    assert again['train'] == first['train'] is not None and again['eval'] == first['eval']
    assert 'already finished at step 6' in ' '.join(r.getMessage() for r in caplog.records)


@pytest.mark.parametrize('field,value,message', [
    ('optimizer.learning_rate', -0.1, r'optimizer.learning_rate=-0.1 must be a finite rate > 0'),
    ('optimizer.momentum', 1.5, r'optimizer.momentum=1.5 must be in \[0, 1\)'),
    ('optimizer.weight_decay', -1e-4, r'optimizer.weight_decay=-0.0001 must be >= 0'),
    ('optimizer.decay_factor', 10.0, r'optimizer.decay_factor=10.0 must be in \(0, 1\]'),
    ('ema_decay', 1.0, r'ema_decay=1.0: .*0 <= decay < 1'),
])
def test_impossible_settings_are_refused_before_anything_runs(tmp_path, digits_dir, field, value, message):
    config = _classification(digits_dir)
    section, _, name = field.rpartition('.')
    (config[section] if section else config)[name] = value
    with pytest.raises(ValueError, match=message):
        _train(config, tmp_path)
    assert not os.path.exists(tmp_path / 'checkpoints')


def test_a_diverging_loss_stops_the_run_like_a_nan(tmp_path, digits_dir):
    """lr 1e6 (the issue's probe: loss ~3e8, exit 0) keeps every number finite, but the loss leaves its start
    (ln 10 = 2.3) by orders of magnitude: stopped at once, before anything bad is saved."""
    config = _classification(digits_dir)
    config.num_train_steps, config.checkpoint_every = 30, '2'
    config.optimizer.learning_rate = 1e6
    with pytest.raises(loop.NonFiniteLossError, match=r'Training diverged \(loss=.* > 2303.*at step 2 .*no checkpoint'):
        _train(config, tmp_path)


def test_eval_mode_on_a_mistyped_workdir_creates_nothing(tmp_path, digits_dir):
    missing = tmp_path / 'no_such_run'
    with pytest.raises(FileNotFoundError, match='No checkpoint in .*no_such_run/checkpoints: train first'):
        loop.evaluate_checkpoint(_classification(digits_dir), str(missing), devices=jax.devices()[:1])
    assert not missing.exists()
