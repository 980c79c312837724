"""The video quickstart (experiments/video_quickstart.py) as a parallel and restartable run (issue 13, "Done when":
1 vs 8 simulated devices agree; resume after SIGKILL exact), on tiny networks and the test split of
`moving_digits_dir` (16 clips per split).

The input stream of clips must survive a restart too: random temporal windows and crops are drawn per example
from keys folded from the step, as for images (tests/test_cli.py).
"""

import concurrent.futures
import json
import logging
import os
import re
import signal

import jax
import pytest

from convnets.train import loop
from experiments import video_quickstart
from tests import cli
from tests.helpers import assert_trees_close, assert_trees_equal, final_params, final_state

pytestmark = pytest.mark.slow  # trains networks; subprocess runs of the command line

DEVICES = 8  # the test process's device count: in-process and command-line runs compile the same programs
STEPS, EVERY = 12, 4  # the kill lands after step 4's checkpoint, 8 steps and an eval before the end
TINY = {'model.widths': (4, 4, 8, 8, 8), 'model.fc_features': 8, 'batch_size': 8, 'eval_batch_size': 8,
        'optimizer.warmup_steps': 0, 'num_train_steps': STEPS, 'checkpoint_every': str(EVERY),
        'log_every': str(EVERY), 'evals.val.every': ''}
CONFIG = 'experiments/video_quickstart.py'


def _tiny(moving_digits_dir: str, variant: str = '', **fields):
    c = video_quickstart.get_config(variant)
    c.data.data_dir = moving_digits_dir
    for key, value in {**TINY, **fields}.items():
        *path, leaf = key.split('.')
        section = c
        for p in path:
            section = section[p]
        section[leaf] = value
    return c


def _overrides(**fields) -> list[str]:
    return [f'--config.{k}={v}' for k, v in {**TINY, **fields}.items()]


def _results(workdir: str) -> dict:
    with open(os.path.join(workdir, 'results.json')) as f:
        return json.load(f)


def test_c3d_on_one_device_equals_eight_and_a_sigkilled_run_resumes_exactly(tmp_path, moving_digits_dir, caplog):
    """Both claims share the uninterrupted 8-device run: the run to kill starts first as a command-line subprocess;
    the uninterrupted run and the 1-device run train in this process meanwhile (2 cores: the subprocess's start-up
    overlaps these compiles). The killed run is then resumed from its last checkpoint by the same training loop."""
    killed, straight, one = (str(tmp_path / name) for name in ('killed', 'straight', 'one'))
    cmd = cli.main_command(killed, moving_digits_dir, *_overrides(), config=CONFIG)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        killing = pool.submit(cli.interrupt_when_checkpointed, cmd, killed, signal.SIGKILL, DEVICES)
        assert len(jax.devices()) == DEVICES
        loop.train_and_evaluate(_tiny(moving_digits_dir), straight)
        loop.train_and_evaluate(_tiny(moving_digits_dir), one, devices=jax.devices()[:1])
        returncode, err = killing.result()

    # 1 vs 8 devices: the same parameters (up to float summation order) and the same predictions.
    assert_trees_close(final_params(one), final_params(straight), rtol=1e-5, atol=1e-6)
    assert _results(one)['eval']['top1'] == _results(straight)['eval']['top1']

    # SIGKILL after the first checkpoint, then a restart: bitwise the uninterrupted run.
    assert returncode == -signal.SIGKILL, err[-3000:]
    assert not os.path.exists(os.path.join(killed, 'results.json'))
    with caplog.at_level(logging.INFO, logger='absl'):
        loop.train_and_evaluate(_tiny(moving_digits_dir), killed)
    restored = re.search(r'Restored checkpoint at step (\d+)', caplog.text)
    assert restored and 0 < int(restored.group(1)) < STEPS, caplog.text[-3000:]
    resumed, uninterrupted = final_state(killed), final_state(straight)
    assert int(resumed['step']) == int(uninterrupted['step']) == STEPS
    assert_trees_equal(resumed['nets'], uninterrupted['nets'])  # parameters and momentum
    assert _results(killed)['eval'] == _results(straight)['eval']


def test_slow_fusion_on_one_device_equals_eight(tmp_path, moving_digits_dir):
    runs = {}
    for n in (1, DEVICES):
        runs[n] = str(tmp_path / f'slow_{n}')
        c = _tiny(moving_digits_dir, 'slow_fusion', num_train_steps=3, checkpoint_every='')
        for ev in c.evals.values():  # parameters only
            ev.at_end = False
        loop.train_and_evaluate(c, runs[n], devices=jax.devices()[:n])
    assert_trees_close(final_params(runs[1]), final_params(runs[DEVICES]), rtol=1e-5, atol=1e-6)
