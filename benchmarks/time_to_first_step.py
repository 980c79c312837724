"""Time to the first train step, cold (empty compilation cache) and warm (the same cache again), per model.

  python benchmarks/time_to_first_step.py [--models=quickstart,resnet50,vgg16] [--batch_size=8] [--devices=1]
  python benchmarks/time_to_first_step.py --count_programs [--devices=2]

Each measurement is a fresh Python process (like a restart), started twice on one new cache directory: 'cold'
(empty: everything is compiled and written) and 'warm' (every program read back). The time to the first step is
split into what the process spends on:
  imports      interpreter start and imports (jax, flax, tensorflow, convnets), from the parent's Popen;
  setup        config, networks, optimisers, mesh; and for the quickstart its real input pipeline up to the first
               batch (ResNet-50 and VGG-16 use synthetic batches at the paper's 224x224x3 shapes);
  trace        Python tracing to jaxprs (init and train step), `jit(...).trace()`;
  lower        jaxpr -> StableHLO, `.lower()`;
  compile      XLA compilation, or reading the executable back from the cache, `.compile()`;
  first_run    the first execution of the init program and of the train step (until its results are ready);
then `to_first_step` (their sum, from the parent's Popen to the first step's results) and `step`, the second
step's time, so that `first_run - step` is the first execution's own overhead. `programs` is the number of XLA
programs compiled or read back, `hits` of them read back from the cache.

--count_programs instead runs the real quickstart for 30 steps (evaluations and checkpoints at steps 10, 20 and 30)
through `convnets.train.loop` with the cache off, and prints every program it compiles, by name (jax.monitoring's
backend-compile events; a cache would not change the count). --devices=N simulates N CPU devices.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

T_START = time.time()
FLAGS_HELP = __doc__
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # This checkout's convnets and experiments, whatever else is installed.

# jax.monitoring events (jax._src.dispatch): one per traced function, lowered module and compiled (or read back)
# program; the cache's hits and misses.
TRACE = '/jax/core/compile/jaxpr_trace_duration'
LOWER = '/jax/core/compile/jaxpr_to_mlir_module_duration'
COMPILE = '/jax/core/compile/backend_compile_duration'
HIT, MISS = '/jax/compilation_cache/cache_hits', '/jax/compilation_cache/cache_misses'
MODELS = {'quickstart': 'experiments/quickstart.py', 'resnet50': 'experiments/resnet50.py',
          'vgg16': 'experiments/vgg16.py'}
PHASES = ('imports', 'setup', 'trace', 'lower', 'compile', 'first_run', 'to_first_step', 'step')


class Events:
    """Counts and times jax.monitoring events (per event name; compiled program names too)."""

    def __init__(self):
        import jax

        self.counts: dict[str, int] = {}
        self.programs: list[tuple[str, float]] = []
        jax.monitoring.register_event_listener(self._event)
        jax.monitoring.register_event_duration_secs_listener(self._duration)

    def _event(self, event: str, **kwargs) -> None:
        self.counts[event] = self.counts.get(event, 0) + 1

    def _duration(self, event: str, duration: float, **kwargs) -> None:
        if event == COMPILE:
            self.programs.append((str(kwargs.get('fun_name', '?')), duration))


def _config(model: str, batch_size: int):
    """The experiment's own config; ImageNet models keep their recipe but take synthetic batches."""
    import importlib

    module = importlib.import_module(MODELS[model].removesuffix('.py').replace('/', '.'))
    config = module.get_config()
    if model != 'quickstart':
        config.batch_size = batch_size
    return config


def _child(model: str, batch_size: int, cache_dir: str) -> dict:
    """One cold or warm start of `model` in this process; the phase times in seconds."""
    sys.modules.setdefault('keras', None)  # As convnets.main: TensorFlow then skips importing Keras (~2 s).
    import jax
    import numpy as np

    from convnets import parallel, tasks
    from convnets.data import pipeline
    if sys.modules['keras'] is None:
        del sys.modules['keras']
    t = {'imports': time.time() - T_START}
    parallel.enable_compilation_cache(cache_dir)
    events = Events()

    t0 = time.perf_counter()
    config = _config(model, batch_size)
    task = tasks.get(config.task)
    task.validate(config)
    mesh = parallel.make_mesh(jax.local_devices())
    par = parallel.Parallel(mesh, config.parallel)
    nets = task.build_nets(config)
    optimizers = task.make_optimizers(config, steps_per_epoch=1000, total_steps=100_000)
    if model == 'quickstart':  # The real input pipeline (the embedded digits, prepared on first use).
        local = next(pipeline.train_batches(config.data, global_batch_size=config.batch_size, seed=config.seed))
    else:
        rng = np.random.default_rng(0)
        local = {'image': rng.normal(size=(config.batch_size, 224, 224, 3)).astype(np.float32),
                 'label': rng.integers(0, config.model.num_classes, config.batch_size).astype(np.int32)}
    spec = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in local.items()}
    batch = par.put_batch(local)
    t['setup'] = time.perf_counter() - t0

    def staged(fn, *args):
        """trace -> lower -> compile -> first run of a jitted fn, each phase added to `t`."""
        t0 = time.perf_counter()
        traced = fn.trace(*args)
        t1 = time.perf_counter()
        lowered = traced.lower()
        t2 = time.perf_counter()
        compiled = lowered.compile()
        t3 = time.perf_counter()
        out = jax.block_until_ready(compiled(*args))
        t4 = time.perf_counter()
        for k, dt in (('trace', t1 - t0), ('lower', t2 - t1), ('compile', t3 - t2), ('first_run', t4 - t3)):
            t[k] = t.get(k, 0.0) + dt
        return compiled, out

    init = jax.jit(lambda: task.init_state(config, nets, optimizers, spec), out_shardings=parallel.replicated(mesh))
    _, state = staged(init)
    step_fn = par.compile(task.make_train_step(config, nets, optimizers, axis_name=parallel.AXIS,
                                               loss_is_global=par.loss_is_global))
    step, (state, _) = staged(step_fn, state, batch)
    t['to_first_step'] = time.time() - T_START
    t0 = time.perf_counter()
    jax.block_until_ready(step(state, batch))
    t['step'] = time.perf_counter() - t0
    t |= {'programs': len(events.programs), 'compile_s': {name: round(s, 3) for name, s in events.programs},
          'hits': events.counts.get(HIT, 0),
          'misses': events.counts.get(MISS, 0), 'batch': config.batch_size}
    return t


def _count_programs(workdir: str) -> dict:
    """The real quickstart for 30 steps through the training loop; every program it compiles."""
    import jax

    from convnets import parallel
    from convnets.train import loop
    parallel.enable_compilation_cache('')
    events = Events()
    config = _config('quickstart', 0)
    config.num_train_steps = 30
    config.evals.val.every = config.checkpoint_every = config.log_every = '10'
    loop.train_and_evaluate(config, workdir, devices=jax.local_devices())
    names: dict[str, list[float]] = {}
    for name, secs in events.programs:
        names.setdefault(name, []).append(secs)
    return {'programs': len(events.programs), 'compile_s': sum(s for _, s in events.programs),
            'by_name': {k: [len(v), round(sum(v), 3)] for k, v in sorted(names.items(), key=lambda kv: -sum(kv[1]))}}


def _run_child(args: list[str], env: dict[str, str]) -> dict:
    env = dict(env, BENCH_T0=repr(time.time()), PYTHONPATH=ROOT + os.pathsep + env.get('PYTHONPATH', ''))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], env=env, capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith('{')]
    if out.returncode or not lines:
        sys.exit(f'child {args} failed (status {out.returncode}):\n{out.stderr[-3000:]}')
    return json.loads(lines[-1])


def main(argv: list[str]) -> None:
    import argparse

    p = argparse.ArgumentParser(description=FLAGS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', default='quickstart,resnet50,vgg16', help=f'comma-separated, of {", ".join(MODELS)}')
    p.add_argument('--batch_size', type=int, default=8, help='global batch of the ImageNet models (CPU-sized)')
    p.add_argument('--count_programs', action='store_true', help='count the programs of a short quickstart run')
    p.add_argument('--devices', type=int, default=1, help='simulated CPU devices of each process (data parallel)')
    p.add_argument('--child', help=argparse.SUPPRESS)
    p.add_argument('--cache_dir', help=argparse.SUPPRESS)
    p.add_argument('--workdir', help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    env = {k: v for k, v in os.environ.items() if not k.startswith('JAX_PERSISTENT_CACHE')}
    env.pop('JAX_COMPILATION_CACHE_DIR', None)
    if a.devices > 1:
        env['XLA_FLAGS'] = f'{env.get("XLA_FLAGS", "")} --xla_force_host_platform_device_count={a.devices}'.strip()
    if a.child == 'count':
        print(json.dumps(_count_programs(a.workdir)), flush=True)
        return
    if a.child:
        print(json.dumps(_child(a.child, a.batch_size, a.cache_dir)), flush=True)
        return
    if a.count_programs:
        with tempfile.TemporaryDirectory() as workdir:
            found = _run_child(['--child=count', f'--workdir={workdir}'], env)
        print(f'quickstart on {a.devices} device(s), 30 steps, evaluations and checkpoints at steps 10, 20, 30: '
              f'{found["programs"]} programs compiled '
              f'({found["compile_s"]:.2f} s of XLA compilation)')
        for name, (n, secs) in found['by_name'].items():
            print(f'  {n:3d} x {name}  {secs:.3f} s')
        print(json.dumps(found))
        return
    print(f'{"model":10s} {"run":5s} ' + ' '.join(f'{k:>13s}' for k in PHASES) + '  programs  hits  (seconds)')
    results = {}
    for model in a.models.split(','):
        if model not in MODELS:
            sys.exit(f'--models: unknown {model!r}; valid: {", ".join(MODELS)}')
        with tempfile.TemporaryDirectory() as cache_dir:
            for run in ('cold', 'warm'):
                r = results[f'{model}/{run}'] = _run_child(
                    [f'--child={model}', f'--batch_size={a.batch_size}', f'--cache_dir={cache_dir}'], env)
                r['cache_entries'] = len(os.listdir(cache_dir))
                print(f'{model:10s} {run:5s} ' + ' '.join(f'{r[k]:13.2f}' for k in PHASES) +
                      f'  {r["programs"]:8d}  {r["hits"]:4d}', flush=True)
    print(json.dumps(results))


if __name__ == '__main__':
    if 'BENCH_T0' in os.environ:
        T_START = float(os.environ['BENCH_T0'])  # The parent's Popen: interpreter start counts.
    main(sys.argv[1:])
