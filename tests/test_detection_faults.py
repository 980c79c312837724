"""A detection run killed with SIGKILL resumes to exactly the run that was never interrupted (issue 11: "resume after
SIGKILL exact"), as tests/test_cli.py shows for a classifier.

Fast R-CNN adds state to what a resume must reproduce: the RoIs sampled in each step (keys folded from the step and
each image's global index) and the input stream of detection records. The kill lands at any moment after the first
checkpoint (mid-step, mid-save: orbax's temporary directory is then left behind and removed by the next start).
"""

import concurrent.futures
import os
import re
import signal

import jax
import pytest

from convnets.train import loop
from tests import cli
from tests.helpers import assert_trees_equal, final_state
from tests.helpers import tiny_fast_rcnn as _tiny

pytestmark = pytest.mark.slow  # subprocess runs of the command line

DEVICES = 8  # the test process's device count: in-process and command-line runs compile the same programs
STEPS, EVERY = 12, 4
# The tiny Fast R-CNN of tests/test_detection_task.py as command-line overrides of the quickstart.
RUN = ('--config.model.stage_widths=(8, 16)', '--config.model.fc_features=32', '--config.detection.grid_stride=16',
       '--config.batch_size=8', '--config.eval_batch_size=8', '--config.data.cache=False',
       '--config.optimizer.warmup_steps=0', f'--config.num_train_steps={STEPS}', f'--config.checkpoint_every={EVERY}',
       f'--config.log_every={EVERY}', '--config.evals.val.at_end=False')


def test_a_detection_run_killed_with_sigkill_resumes_to_the_uninterrupted_run(tmp_path, scenes_dir):
    workdir = str(tmp_path / 'killed')
    cmd = cli.main_command(workdir, scenes_dir, *RUN, config='experiments/fast_rcnn_quickstart.py')
    # The run to kill starts first; the uninterrupted one trains in this process meanwhile (2 cores: the
    # subprocess's start-up and this compile overlap).
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        killing = pool.submit(cli.interrupt_when_checkpointed, cmd, workdir, signal.SIGKILL, DEVICES)
        straight = str(tmp_path / 'straight')
        c = _tiny(scenes_dir, num_train_steps=STEPS, checkpoint_every=str(EVERY), log_every=str(EVERY))
        c.evals.val.at_end = False
        assert len(jax.devices()) == DEVICES
        loop.train_and_evaluate(c, straight)
        returncode, err = killing.result()
    assert returncode == -signal.SIGKILL, err[-3000:]
    assert not os.path.exists(os.path.join(workdir, 'results.json'))
    proc = cli.run(cmd, num_devices=DEVICES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    restored = re.search(r'Restored checkpoint at step (\d+)', proc.stderr)
    assert restored and 0 < int(restored.group(1)) < STEPS, proc.stderr[-3000:]
    killed, uninterrupted = final_state(workdir), final_state(straight)
    assert int(killed['step']) == int(uninterrupted['step']) == STEPS
    assert_trees_equal(killed['nets'], uninterrupted['nets'])  # parameters, momentum, batch statistics
