"""Multi-host: 2 processes x 4 CPU devices (jax.distributed over localhost, gloo) == 1 process x 8 devices."""

import sys

import pytest

from tests import cli
from tests.helpers import assert_trees_close, final_params

pytestmark = pytest.mark.slow  # Subprocess runs of the command line.

RUN = ('--config.num_train_steps=3', '--config.batch_size=16', '--config.log_every=1',
       '--config.model.name=lenet5')


def test_two_processes_train_like_one(tmp_path, digits_dir):
    single = str(tmp_path / 'single')
    proc = cli.run(cli.main_command(single, digits_dir, *RUN), num_devices=8)
    assert proc.returncode == 0, proc.stderr[-3000:]

    # Through the project's local launcher (launch/local.py), as a user would.
    multi = str(tmp_path / 'multi')
    main_args = cli.main_command(multi, digits_dir, *RUN)[3:]  # Drop 'python -m convnets.main'.
    launcher = [sys.executable, 'launch/local.py', '--num_processes=2', '--devices_per_process=4', '--', *main_args]
    proc = cli.run(launcher, num_devices=1)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert '[p1]' in proc.stdout and 'process 1 of 2, 4 local / 8 global devices' in proc.stdout
    assert_trees_close(final_params(single), final_params(multi), rtol=1e-5)


def test_launcher_rejects_missing_arguments():
    proc = cli.run([sys.executable, 'launch/local.py', '--num_processes=2'], num_devices=1)
    assert proc.returncode != 0 and '--config=... and --workdir=...' in proc.stderr
