"""Multi-host: 2 processes x 4 CPU devices (jax.distributed over localhost, gloo) == 1 process x 8 devices."""

import subprocess

from tests import cli
from tests.helpers import assert_trees_close, final_params

RUN = ('--config.num_train_steps=3', '--config.batch_size=16', '--config.log_every_steps=1',
       '--config.model.name=lenet5')


def test_two_processes_train_like_one(tmp_path, digits_dir):
    single = str(tmp_path / 'single')
    proc = cli.run(cli.main_command(single, digits_dir, *RUN), num_devices=8)
    assert proc.returncode == 0, proc.stderr[-3000:]

    multi = str(tmp_path / 'multi')
    port = cli.free_port()
    procs = [subprocess.Popen(
        cli.main_command(multi, digits_dir, *RUN, f'--coordinator_address=127.0.0.1:{port}', '--num_processes=2',
                         f'--process_id={i}'),
        cwd=cli.ROOT, env=cli.env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err[-3000:]
    assert 'process 1 of 2, 4 local / 8 global devices' in outputs[1][1]
    assert_trees_close(final_params(single), final_params(multi), rtol=1e-5)
