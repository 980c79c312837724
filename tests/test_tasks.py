"""A new task needs no change to the loop: a toy task written only here trains through `convnets.train.loop`.

The toy task has TWO networks with TWO optimisers (SGD for 'fast', Adam for 'slow') that regress the digit's class
index from its pixels, its own metric names and its own evaluator type ('mse'). It runs on 8 simulated devices,
writes results.json and TensorBoard like any task, and resumes after SIGKILL to bitwise-identical parameters.
This module is also the task module (`config.task = 'tests.test_tasks'`) and a config file
(`--config=tests/test_tasks.py`) for the command-line runs.
"""

import json
import os
import signal
from collections.abc import Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from ml_collections import ConfigDict

from convnets import parallel, tasks
from convnets.data import pipeline
from convnets.tasks.base import EvalContext, Optimizer
from convnets.train import loop
from convnets.train.state import NetState, TrainState
from experiments import default, quickstart
from tests import cli
from tests.helpers import assert_trees_close, assert_trees_equal, final_state

NETS = ('fast', 'slow')


class Regressor(nn.Module):
    """A linear map from the pixels to one number."""

    @nn.compact
    def __call__(self, x, train=False):
        del train
        return nn.Dense(1, kernel_init=nn.initializers.zeros)(x.reshape((x.shape[0], -1)))[:, 0]


def _target(batch):
    return batch['label'].astype(jnp.float32)


def make_mse_evaluator(ctx: EvalContext, ev: ConfigDict):
    """Mean squared error of every network over the eval split (sums on the devices, means on the host)."""
    nets = ctx.nets

    def sums(state, batch):
        out = {f'{n}_mse': jnp.sum(jnp.square(nets[n].apply(state.nets[n].params, batch['image']) - _target(batch))
                                   * batch['mask']) for n in NETS}
        return lax.psum(out | {'count': jnp.sum(batch['mask'])}, parallel.AXIS)

    par = parallel.Parallel(ctx.mesh)
    step = par.compile(sums, donate=False)

    def evaluate(state):
        totals = None
        for local in pipeline.eval_batches(ctx.config.data, global_batch_size=ctx.config.batch_size,
                                           process_index=jax.process_index(), process_count=jax.process_count()):
            s = jax.device_get(step(state, par.shard_batch(local)))
            totals = s if totals is None else {k: totals[k] + s[k] for k in s}
        return {k: float(v) / float(totals['count']) for k, v in totals.items() if k != 'count'}

    return evaluate


class ToyTask(tasks.Task):
    evaluators = {'mse': make_mse_evaluator}

    def architecture(self, config):
        return {'nets': list(NETS)}

    def build_nets(self, config):
        return {n: Regressor() for n in NETS}

    def make_optimizers(self, config, *, steps_per_epoch, total_steps):
        lr = config.optimizer.learning_rate
        return {'fast': Optimizer(optax.sgd(lr, momentum=0.9), optax.constant_schedule(lr)),
                'slow': Optimizer(optax.adam(lr / 10), optax.constant_schedule(lr / 10))}

    def init_state(self, config, nets, optimizers, batch_spec):
        rng = jax.random.PRNGKey(config.seed)
        image = jnp.zeros((1, *batch_spec['image'].shape), jnp.float32)
        states = {}
        for n in NETS:
            params = nets[n].init(jax.random.fold_in(rng, len(states)), image)
            states[n] = NetState(params=params, batch_stats={}, opt_state=optimizers[n].tx.init(params))
        return TrainState(step=jnp.zeros((), jnp.int32), rng=rng, nets=states)

    def make_train_step(self, config, nets: Mapping[str, nn.Module], optimizers, *, axis_name, loss_is_global):
        def step(state, batch):
            new_nets, metrics = dict(state.nets), {}
            for n in NETS:  # Two networks, two optimisers, updated one after the other in the same step.
                net = state.nets[n]

                def loss_fn(params, n=n):
                    loss = jnp.mean(jnp.square(nets[n].apply(params, batch['image']) - _target(batch)))
                    return lax.pmean(loss, axis_name) if loss_is_global else loss

                loss, grads = jax.value_and_grad(loss_fn)(net.params)
                if not loss_is_global:
                    grads, loss = lax.pmean(grads, axis_name), lax.pmean(loss, axis_name)
                updates, opt_state = optimizers[n].tx.update(grads, net.opt_state, net.params)
                new_nets[n] = net.replace(params=optax.apply_updates(net.params, updates), opt_state=opt_state)
                metrics[f'{n}_mse'] = loss
            return state.replace(step=state.step + 1, nets=new_nets), metrics

        return step


TASK = ToyTask()


def get_config() -> ConfigDict:
    """The toy task on the embedded digits (also the config file of the command-line runs below)."""
    c = default.get_config()
    c.task = 'tests.test_tasks'
    c.data = quickstart.get_config().data
    c.data.train_preprocess = c.data.eval_preprocess = 'decode|resize(8)|value_range(0, 0.1)'
    c.batch_size = 16
    c.num_train_steps = 600
    c.optimizer.learning_rate = 0.02
    c.optimizer.plateau_metric = 'val/fast_mse'
    c.evals = ConfigDict({'val': {'type': 'mse', 'every': '200', 'at_end': True, 'results_key': 'eval'}})
    c.log_every = '50'
    c.checkpoint_every = '100'
    return c


def _tiny(data_dir: str) -> ConfigDict:
    c = get_config()
    c.data.data_dir = data_dir
    c.num_train_steps = 60
    c.evals.val.every = '20'
    c.checkpoint_every = '30'
    return c


def test_toy_task_trains_through_the_loop_on_8_devices(tmp_path, digits_dir):
    workdir = str(tmp_path / 'run')
    results = loop.train_and_evaluate(_tiny(digits_dir), workdir, devices=jax.devices())
    assert results['num_devices'] == 8 and results['step'] == 60
    # The label variance of the digits is ~8.25: both regressors, started at zero output (mse ~28.5 = E[y^2]),
    # learn the mean at least.
    assert set(results['eval']) == {'fast_mse', 'slow_mse'}
    assert results['eval']['fast_mse'] < 10 and results['eval']['slow_mse'] < 28
    assert set(results['train']) == {'fast_mse', 'slow_mse'}
    assert results['best']['metric'] == 'val/fast_mse' and results['best']['step'] in (20, 40, 60)
    state = final_state(workdir)
    assert set(state['nets']) == {'fast', 'slow'}
    # Each network kept its own optimiser state: SGD momentum (one trace per parameter), Adam (count, mu, nu).
    assert len(jax.tree.leaves(state['nets']['fast']['opt_state'])) == 2
    assert len(jax.tree.leaves(state['nets']['slow']['opt_state'])) == 5
    # One device gives the same networks (rtol: float reduction order).
    one = str(tmp_path / 'one')
    loop.train_and_evaluate(_tiny(digits_dir), one, devices=jax.devices()[:1])
    assert_trees_close(final_state(one)['nets'], state['nets'], rtol=1e-4, atol=1e-5)


def test_toy_task_nan_guard_names_its_metrics(tmp_path, digits_dir):
    config = _tiny(digits_dir)
    config.optimizer.learning_rate = 1e30
    with pytest.raises(loop.NonFiniteLossError, match=r'fast_mse='):
        loop.train_and_evaluate(config, str(tmp_path / 'run'), devices=jax.devices()[:2])


@pytest.mark.slow
def test_toy_task_resumes_after_sigkill_on_8_devices(tmp_path, digits_dir):
    """The command line as users run it, with --config=tests/test_tasks.py: killed after its first checkpoint,
    rerun, it ends with the parameters and evaluation of an uninterrupted run."""
    def command(workdir):
        return cli.main_command(workdir, digits_dir, config='tests/test_tasks.py')

    straight = str(tmp_path / 'straight')
    proc = cli.run(command(straight), num_devices=8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'fast_mse' in proc.stderr and 'evals.val at step 600' in proc.stderr

    killed = str(tmp_path / 'killed')
    returncode, err = cli.interrupt_when_checkpointed(command(killed), killed, signal.SIGKILL, num_devices=8)
    assert returncode == -signal.SIGKILL, err[-3000:]
    assert not os.path.exists(os.path.join(killed, 'results.json'))
    proc = cli.run(command(killed), num_devices=8)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'Restored checkpoint at step' in proc.stderr
    assert_trees_equal(final_state(killed)['nets'], final_state(straight)['nets'])
    with open(os.path.join(killed, 'results.json')) as a, open(os.path.join(straight, 'results.json')) as b:
        resumed, uninterrupted = json.load(a), json.load(b)
    assert resumed['eval'] == uninterrupted['eval'] and resumed['best'] == uninterrupted['best']
    assert np.isfinite(resumed['eval']['fast_mse'])


def test_the_loop_names_no_task():
    """The loop reads no classification names: tasks bring their metrics, batches and evaluators."""
    import re

    from convnets.train import evaluations

    for module in (loop, evaluations):
        with open(module.__file__) as f:
            source = f.read()
        found = re.findall(r'top1|top5|label|logits|image|classif|cross_entropy|crops', source, flags=re.IGNORECASE)
        assert not found, (module.__name__, found)
