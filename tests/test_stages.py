"""Multi-stage experiments (convnets.train.stages; issue 12: "each step a stage of one experiment that resumes like
any run", "resume after SIGKILL mid-stage and between stages").

Two tiny LeNet-5 stages on the embedded digits: A trains from scratch (3 steps); B starts from A's final weights
(`init_from='stage:A'`) with C1 frozen, trains 4 steps with a checkpoint each step, and adds an evaluator. The config
tests are pure (no network is compiled); the runs are marked slow.
"""

import json
import os
import shutil
import signal
import sys

import jax
import numpy as np
import pytest
from ml_collections import ConfigDict

from convnets.train import checkpoint, loop, stages
from experiments import default, fast_rcnn_vgg16_voc07
from tests import cli
from tests.helpers import assert_trees_equal, final_params, final_state, tiny_config

DEVICES = 8  # the test process's device count: in-process and command-line runs compile the same programs
B_LR = 0.02  # stage B's rate as the command line sets it (the config file says 0.01)


def staged_config(data_dir: str | None) -> ConfigDict:
    """Stages A (3 steps from scratch) and B (init_from A, C1 frozen, 4 steps, a checkpoint each, one more
    evaluator). Also the config file of the command-line test (tmp_path/staged.py imports it)."""
    c = tiny_config(data_dir)
    c.checkpoint_every = ''
    c.stages = ('A', 'B')
    b = c.stage_configs.B = ConfigDict()
    b.init_from = 'stage:A'
    b.num_train_steps = 4
    b.checkpoint_every = '1'
    b.optimizer = ConfigDict({'frozen': ('^C1_layer/',), 'learning_rate': 0.01})
    b.evals = ConfigDict({'extra': default.classification_eval(results_key='eval_extra')})
    return c


def _read(path):
    with open(path) as f:
        return json.load(f)


_STRAIGHT = {}


def _straight(tmp_path_factory, digits_dir):
    """The uninterrupted staged run (in-process, all devices), computed once per test process."""
    if 'run' not in _STRAIGHT:
        c = staged_config(digits_dir)
        c.stage_configs.B.optimizer.learning_rate = B_LR
        workdir = str(tmp_path_factory.mktemp('straight'))
        assert len(jax.devices()) == DEVICES
        _STRAIGHT['run'] = workdir, stages.run(c, workdir)
    return _STRAIGHT['run']


# ---- Config resolution (pure) ----------------------------------------------------------------------------------

def test_stage_overrides_merge_into_the_base_config_and_reference_earlier_stages(tmp_path):
    c = staged_config('/data')
    c.stage_configs.B.init_from_skip = ('stage:A/not_a_path_but_resolved',)
    c.lock()
    a, b = stages.stage_config(c, 'A', str(tmp_path)), stages.stage_config(c, 'B', str(tmp_path))
    assert a.init_from == '' and a.num_train_steps == 3 and a.optimizer.learning_rate == c.optimizer.learning_rate
    assert b.init_from == str(tmp_path / 'A') and b.num_train_steps == 4 and b.checkpoint_every == '1'
    assert b.init_from_skip == (str(tmp_path / 'A' / 'not_a_path_but_resolved'),)
    # Merged recursively: B's two optimizer fields replace the base's, the rest of the section stays.
    assert b.optimizer.learning_rate == 0.01 and b.optimizer.frozen == ('^C1_layer/',)
    assert b.optimizer.momentum == c.optimizer.momentum and b.optimizer.schedule == c.optimizer.schedule
    assert sorted(b.evals) == ['extra', 'val'] and b.evals.extra.results_key == 'eval_extra'
    assert sorted(a.evals) == ['val']
    # Each stage is an ordinary locked run config; the staged config is unchanged.
    for s in (a, b):
        assert s.stages == () and not s.stage_configs and s.is_locked
        with pytest.raises(AttributeError, match='Did you mean "learning_rate"'):
            s.optimizer.learning_rat = 0.1
    assert c.init_from == '' and c.stage_configs.B.init_from == 'stage:A' and c.stages == ('A', 'B')
    # A relative workdir resolves to the same absolute path from here.
    assert stages.stage_config(c, 'B', os.path.relpath(tmp_path)).init_from == str(tmp_path / 'A')
    assert stages.stage_workdir('/w', 'B') == '/w/B'


def test_a_stage_reference_reaches_strings_built_lazily_from_the_field():
    """experiments/detection.py writes both specs' load_proposals op from data.proposals_dir by reference: a
    stage's proposals_dir (here set as `--config.stage_configs.frcn.data.proposals_dir=...` would) reaches them."""
    c = fast_rcnn_vgg16_voc07.get_config()
    c.stages = ('rpn', 'frcn')
    c.stage_configs.frcn = ConfigDict({'data': {'proposals_dir': ''}})
    c.lock()
    c.stage_configs.frcn.data.proposals_dir = 'stage:rpn/proposals'
    frcn = stages.stage_config(c, 'frcn', '/w')
    for spec in (frcn.data.train_preprocess, frcn.data.eval_preprocess):
        assert "load_proposals('/w/rpn/proposals', 'voc/2007', " in spec
    assert "load_proposals('', " in stages.stage_config(c, 'rpn', '/w').data.train_preprocess
    # The reference still works inside the stage's config, and the base config is untouched.
    with frcn.unlocked():
        frcn.data.proposals_dir = '/elsewhere'
    assert "load_proposals('/elsewhere', " in frcn.data.eval_preprocess
    assert "load_proposals('', " in c.data.train_preprocess
    # A lazy value in the base config that is a reference itself: resolved at its source.
    c2 = staged_config(None)
    c2.stage_configs.B.data = ConfigDict({'eval_split': 'test'})
    c2.data.train_split = c2.data.get_ref('eval_split')
    c2.stage_configs.B.data.eval_split = 'stage:A/split'
    b = stages.stage_config(c2, 'B', '/w')
    assert b.data.eval_split == b.data.train_split == '/w/A/split'


@pytest.mark.parametrize('setting,message', [
    (dict(stages=('A', 'B', 'A')), r'names A more than once'),
    (dict(stages=('A', '../B')), r"'\.\./B' is not a valid stage name; use letters, digits"),
    (dict(stages=('A',)), r'stage_configs has entries for B, which config.stages \(A\) does not list'),
    (dict(init_from='stage:B'), r"init_from='stage:B' in stage 'A' names a later stage; .*none: it is the first"),
    (dict(B={'init_from': 'stage:B'}), r"init_from='stage:B' in stage 'B' names the stage itself; .*\('A'\)"),
    (dict(B={'init_from': 'stage:rpn1'}), r"names no stage \(the stages are A, B\)"),
    (dict(B={'optimizer': {'learning_rat': 0.1}}), r'stage_configs.B.optimizer.learning_rat: the base config has '
                                                   r'no field optimizer.learning_rat; did you mean optimizer.lea'),
    (dict(B={'modle': {'name': 'lenet5'}}), r'no field modle; did you mean model\? \(the top level has: '),
    (dict(B={'stages': ('C',)}), r'stage_configs.B.stages: a stage cannot set the stages'),
    (dict(B={'num_train_steps': 'four'}), r'stage_configs.B.num_train_steps: .*four'),
])
def test_bad_stage_settings_are_clear_errors(setting, message):
    c = staged_config(None)
    for key, value in setting.items():
        if key == 'B':
            c.stage_configs.B = ConfigDict(value)
        else:
            c[key] = value
    with pytest.raises(ValueError, match=message):
        stages.configs(c, '/w')


def test_every_stage_is_validated_before_anything_trains(tmp_path):
    c = staged_config(None)
    c.stage_configs.B.optimizer.momentum = 1.5
    with pytest.raises(ValueError, match=r"stage 'B': optimizer.momentum=1.5 must be in \[0, 1\)"):
        stages.run(c, str(tmp_path / 'run'))
    assert not os.path.exists(tmp_path / 'run')


def test_reading_a_staged_run_picks_the_last_stage_or_the_named_one():
    c = staged_config(None)
    config, workdir = stages.select(c, '/w')
    assert workdir == '/w/B' and config.init_from == '/w/A' and config.stages == ()
    config, workdir = stages.select(c, '/w', 'A')
    assert workdir == '/w/A' and config.num_train_steps == 3
    with pytest.raises(ValueError, match=r'--stage=C: no such stage; the stages of this config are A, B'):
        stages.select(c, '/w', 'C')
    plain = tiny_config(None)
    assert stages.select(plain, '/w') == (plain, '/w')
    with pytest.raises(ValueError, match=r'--stage=A: this config has no stages'):
        stages.select(plain, '/w', 'A')


# ---- Runs --------------------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_stages_run_in_order_each_from_the_previous_ones_weights(tmp_path_factory, digits_dir):
    workdir, results = _straight(tmp_path_factory, digits_dir)
    a, b = _read(os.path.join(workdir, 'A', 'results.json')), _read(os.path.join(workdir, 'B', 'results.json'))
    assert a['step'] == 3 and b['step'] == 4 and 'eval_extra' not in a and 'eval_extra' in b
    # B started from A's final weights: recorded, and its frozen layer is still exactly A's.
    assert b['init_from'] == {'workdir': os.path.join(workdir, 'A'), 'step': 3}
    assert b['config']['init_from'] == os.path.join(workdir, 'A') and b['config']['stages'] == []
    pa, pb = final_params(os.path.join(workdir, 'A')), final_params(os.path.join(workdir, 'B'))
    assert_trees_equal(pa['C1_layer'], pb['C1_layer'])
    for layer in ('C3_layer', 'C5_layer'):
        assert not np.array_equal(pa[layer]['kernel'], pb[layer]['kernel'])
    # The top-level results.json reads like B's, plus every stage.
    top = _read(os.path.join(workdir, 'results.json'))
    assert top == json.loads(json.dumps(results))
    assert top['step'] == 4 and top['eval'] == b['eval'] and top['eval_extra'] == b['eval_extra']
    assert top['stage_order'] == ['A', 'B'] and top['stages'] == {'A': a, 'B': b}
    assert top['staged_config']['stages'] == ['A', 'B']
    assert np.isfinite(top['eval']['loss']) and top['train']['loss'] < a['train']['loss'] * 2


@pytest.mark.slow
def test_a_rerun_between_stages_keeps_the_finished_stage_and_finishes_the_next(tmp_path, tmp_path_factory,
                                                                               digits_dir, monkeypatch, caplog):
    straight, _ = _straight(tmp_path_factory, digits_dir)
    config = staged_config(digits_dir)
    config.stage_configs.B.optimizer.learning_rate = B_LR
    workdir = str(tmp_path / 'run')
    # A preemption request in stage B: the runner stops after B's checkpoint and returns None.
    train = loop.train_and_evaluate

    def preempt_b(c, stage_dir, devices=None):
        if os.path.basename(stage_dir) != 'B':
            return train(c, stage_dir, devices=devices)
        with monkeypatch.context() as m:
            m.setattr(checkpoint.PreemptionWatcher, 'requested', lambda self, step: step == 2)
            return train(c, stage_dir, devices=devices)

    monkeypatch.setattr(loop, 'train_and_evaluate', preempt_b)
    assert stages.run(config, workdir) is None
    assert sorted(os.listdir(os.path.join(workdir, 'B', 'checkpoints'))) == ['1', '2']
    assert not os.path.exists(os.path.join(workdir, 'B', 'results.json'))
    assert not os.path.exists(os.path.join(workdir, 'results.json'))
    monkeypatch.undo()
    # Between stages: A finished, B not started.
    shutil.rmtree(os.path.join(workdir, 'B'))
    a_dir = os.path.join(workdir, 'A')
    a_results = open(os.path.join(a_dir, 'results.json'), 'rb').read()
    a_files = {root: (sorted(names), os.stat(root).st_mtime_ns) for root, _, names in os.walk(a_dir)}
    caplog.set_level('INFO', logger='absl')
    results = stages.run(config, workdir)
    assert 'This run already finished at step 3' in caplog.text
    assert open(os.path.join(a_dir, 'results.json'), 'rb').read() == a_results
    assert {root: (sorted(names), os.stat(root).st_mtime_ns) for root, _, names in os.walk(a_dir)} == a_files
    assert results['step'] == 4 and results['stages']['A'] == json.loads(a_results)
    killed, uninterrupted = final_state(os.path.join(workdir, 'B')), final_state(os.path.join(straight, 'B'))
    assert int(killed['step']) == 4
    assert_trees_equal(killed['nets'], uninterrupted['nets'])  # parameters, momentum
    assert results['eval_extra'] == _read(os.path.join(straight, 'results.json'))['eval_extra']


# Runs convnets.main, SIGKILLed by itself once stage B's checkpoint of step 2 (of 4) is durable: mid-stage, at a
# deterministic point (a kill from outside races the few milliseconds a tiny step takes).
_KILL_IN_B = '''
import os, runpy, signal, sys
from convnets.train import checkpoint
save = checkpoint.Checkpointer.save
def save_then_die(self, step, state, **kw):
    saved = save(self, step, state, **kw)
    if self.workdir.name == 'B' and step == 2:
        self.wait()
        os.kill(os.getpid(), signal.SIGKILL)
    return saved
checkpoint.Checkpointer.save = save_then_die
sys.argv[0] = 'convnets.main'
runpy.run_module('convnets.main', run_name='__main__', alter_sys=True)
'''


@pytest.mark.slow
def test_a_staged_command_line_run_killed_mid_stage_resumes_and_eval_reads_the_last_stage(
        tmp_path, tmp_path_factory, digits_dir):
    config_file = tmp_path / 'staged.py'
    config_file.write_text('from tests import test_stages\n\n\ndef get_config():\n'
                           '    return test_stages.staged_config(None)\n')
    workdir = str(tmp_path / 'run')
    cmd = cli.main_command(workdir, digits_dir, f'--config.stage_configs.B.optimizer.learning_rate={B_LR}',
                           config=str(config_file))
    killed = cli.run([sys.executable, '-c', _KILL_IN_B, *cmd[3:]], num_devices=DEVICES)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert os.path.exists(os.path.join(workdir, 'A', 'results.json'))
    assert not os.path.exists(os.path.join(workdir, 'B', 'results.json'))
    straight, _ = _straight(tmp_path_factory, digits_dir)

    proc = cli.run(cmd, num_devices=DEVICES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'already finished at step 3' in proc.stderr and 'Restored checkpoint at step 2' in proc.stderr
    resumed, uninterrupted = final_state(os.path.join(workdir, 'B')), final_state(os.path.join(straight, 'B'))
    assert int(resumed['step']) == int(uninterrupted['step']) == 4
    assert_trees_equal(resumed['nets'], uninterrupted['nets'])
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    top = _read(os.path.join(straight, 'results.json'))
    assert line == {'step': 4, 'eval': top['eval'], 'eval_extra': top['eval_extra']}

    evaluated = cli.run([*cmd, '--mode=eval'], num_devices=DEVICES)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    line = json.loads(evaluated.stdout.strip().splitlines()[-1])
    assert line['step'] == 4 and set(line) == {'step', 'eval', 'eval_extra'}
    assert line['eval']['top1'] == top['eval']['top1']
    assert _read(os.path.join(workdir, 'B', 'eval_results.json'))['step'] == 4
    assert not os.path.exists(os.path.join(workdir, 'A', 'eval_results.json'))
