"""The command line as users run it: progress output, results.json, override errors, SIGTERM and SIGKILL."""

import json
import os
import signal

import pytest

from tests import cli
from tests.helpers import assert_trees_equal, final_params

pytestmark = pytest.mark.slow  # Subprocess runs of the command line.

# 40 steps of LeNet-5 with a checkpoint every 10: long enough to interrupt, short enough for CI.
RUN = ('--config.num_train_steps=40', '--config.checkpoint_every=10', '--config.evals.val.every=20',
       '--config.log_every=10', '--config.batch_size=16')


@pytest.fixture(scope='module')
def straight_run(tmp_path_factory, digits_dir):
    workdir = str(tmp_path_factory.mktemp('straight'))
    proc = cli.run(cli.main_command(workdir, digits_dir, *RUN), num_devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir, proc


def _results(workdir):
    with open(os.path.join(workdir, 'results.json')) as f:
        return json.load(f)


def test_cli_trains_and_reports(straight_run):
    workdir, proc = straight_run
    log = proc.stderr
    assert 'step 10/40' in log and 'ex/s' in log and 'eta' in log and 'lr 0.05' in log
    assert 'evals.val at step 40: top1' in log
    results = _results(workdir)
    assert results['step'] == 40
    assert set(results['eval']) >= {'top1', 'top5', 'loss'}
    assert results['train_examples_per_s'] > 0
    assert results['config']['batch_size'] == 16
    assert json.loads(proc.stdout.strip().splitlines()[-1])['step'] == 40


@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGTERM], ids=['sigkill', 'sigterm'])
def test_interrupted_run_resumes_to_the_same_result(tmp_path, digits_dir, straight_run, sig):
    workdir = str(tmp_path / 'run')
    returncode, err = cli.interrupt_when_checkpointed(cli.main_command(workdir, digits_dir, *RUN), workdir, sig)
    if sig == signal.SIGTERM:
        assert returncode == 0, err[-3000:]  # Clean exit after saving.
        assert 'Preempted: checkpoint saved at step' in err
    else:
        assert returncode == -signal.SIGKILL
    assert not os.path.exists(os.path.join(workdir, 'results.json'))
    proc = cli.run(cli.main_command(workdir, digits_dir, *RUN), num_devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Restored checkpoint at step' in proc.stderr
    assert_trees_equal(final_params(workdir), final_params(straight_run[0]))
    assert _results(workdir)['eval'] == _results(straight_run[0])['eval']


def test_wrong_override_type_is_a_clear_error(tmp_path, digits_dir):
    proc = cli.run(cli.main_command(str(tmp_path), digits_dir, '--config.batch_size=sixteen'))
    assert proc.returncode != 0
    assert 'batch_size' in proc.stderr and 'sixteen' in proc.stderr


def test_unknown_override_field_is_an_error(tmp_path, digits_dir):
    proc = cli.run(cli.main_command(str(tmp_path), digits_dir, '--config.optimizer.learning_rat=0.1'))
    assert proc.returncode != 0
    assert 'learning_rat' in proc.stderr


def test_visualize_mode_after_training(straight_run, digits_dir):
    """The README's extra command after the quickstart: pictures of what LeNet-5 learned, and an index page."""
    import re

    workdir, _ = straight_run
    proc = cli.run(cli.main_command(workdir, digits_dir, *RUN, '--mode=visualize',
                                    '--config.visualize.num_images=32', '--config.visualize.occlusion_images=1'))
    assert proc.returncode == 0, proc.stderr[-3000:]
    index = os.path.join(workdir, 'visualize', 'index.html')
    with open(index) as f:
        sources = re.findall(r'<img[^>]+src="([^"]+)"', f.read())
    assert 'filters.png' in sources and any(s.startswith('occlusion_0_') for s in sources)
    for src in sources:
        path = os.path.join(workdir, 'visualize', src)
        assert os.path.getsize(path) > 0, src
