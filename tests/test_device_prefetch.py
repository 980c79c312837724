"""Device prefetch (data.device_prefetch): batches go onto the devices ahead of their step, in order, and neither
the result nor exact resume depends on it."""

import os

import jax
import numpy as np
import pytest

from convnets import parallel
from convnets.train import checkpoint, loop
from tests.helpers import assert_trees_equal, final_params, tiny_config


def test_the_queue_reads_depth_items_ahead_and_keeps_their_order():
    read = []

    def source():
        for i in range(5):
            read.append(i)
            yield i

    out = parallel.device_prefetch(source(), lambda i: ('on device', i), depth=2)
    assert next(out) == ('on device', 0)
    assert read == [0, 1, 2]  # Items 1 and 2 were put ahead of the step that takes item 0.
    assert list(out) == [('on device', i) for i in (1, 2, 3, 4)]  # The queue drains at the end of the input.
    assert list(parallel.device_prefetch(iter(range(3)), str, depth=0)) == ['0', '1', '2']


@pytest.mark.parametrize('kind', parallel.KINDS)
def test_put_batch_is_shard_batch_on_the_devices(kind):
    par = parallel.Parallel(parallel.make_mesh(jax.devices()[:4]), kind)
    local = {'image': np.arange(8 * 3, dtype=np.float32).reshape(8, 3), 'label': np.arange(8, dtype=np.int32)}
    put, shard = par.put_batch(local), par.shard_batch(local)
    for k in local:
        assert isinstance(put[k], jax.Array)
        assert len(put[k].sharding.device_set) == 4
        np.testing.assert_array_equal(np.asarray(put[k]), np.asarray(shard[k]))
    batches = list(par.device_batches([local, local], prefetch=2))
    assert len(batches) == 2 and all(isinstance(b['label'], jax.Array) for b in batches)
    with pytest.raises(ValueError, match=r'data.device_prefetch=-1: .* must be >= 0'):
        par.device_batches([local], prefetch=-1)


@pytest.mark.slow  # three short runs (~8 s)
def test_prefetched_run_preempted_and_resumed_equals_an_unprefetched_straight_run(tmp_path, digits_dir, monkeypatch):
    """The checkpoint records the step, not how far the prefetch had read: a run with 2 batches on the devices
    ahead of its step, stopped at step 5 (batches 6 and 7 already read) and resumed, ends bitwise equal to a run
    without prefetch; both compared on the final parameters and the evaluations."""
    config = tiny_config(digits_dir)
    config.num_train_steps = 8
    config.checkpoint_every = '3'
    config.evals.val.every = '4'
    devices = jax.devices()[:2]
    config.data.device_prefetch = 0
    straight = str(tmp_path / 'straight')
    a = loop.train_and_evaluate(config, straight, devices=devices)

    config.data.device_prefetch = 2
    resumed = str(tmp_path / 'resumed')
    monkeypatch.setattr(checkpoint.PreemptionWatcher, 'requested', lambda self, step: step == 5)
    assert loop.train_and_evaluate(config, resumed, devices=devices) is None
    assert sorted(os.listdir(os.path.join(resumed, 'checkpoints'))) == ['3', '5']
    monkeypatch.undo()
    b = loop.train_and_evaluate(config, resumed, devices=devices)
    assert a['step'] == b['step'] == 8
    assert a['eval'] == b['eval'] and a['train'] == b['train']
    assert_trees_equal(final_params(straight), final_params(resumed))
