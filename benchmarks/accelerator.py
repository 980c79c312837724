"""Accelerator benchmark: training throughput and model FLOP utilisation (MFU) of the papers' big networks.

  python benchmarks/accelerator.py [--models=resnet50,vgg16,alexnet,fast_rcnn] [--dtype=bfloat16]
      [--batch_per_device=resnet50=256,vgg16=128] [--steps=30 --warmup=5] [--data_dir=DIR] [--peak_tflops=989]
      [--json_out=FILE]
  python benchmarks/accelerator.py --tiny        # CPU smoke run: narrow nets, small images, 2 steps

Run as is on one GPU / TPU host: every local device trains one data-parallel replica (the training loop's own
path: `convnets.tasks.<task>.make_train_step` under `convnets.parallel.Parallel`, state donated), on synthetic
batches of `--batch_per_device` examples per device, so the figures are the step's alone:

- resnet50   experiments/resnet50.py (He et al., v1 strides), 224x224 crops
- vgg16      experiments/vgg16.py (configuration D), 224x224 crops
- alexnet    experiments/alexnet.py (two towers, LRN), its input_size
- fast_rcnn  experiments/fast_rcnn_vgg16_voc07.py, 600x1000 canvas, 2000 proposals and 64 sampled RoIs per image
             (the synthetic batch of benchmarks/detection.py)

With --data_dir holding a prepared TFDS `imagenet2012`, ResNet-50 is also timed on the real input pipeline (its
training preprocessing: scale augmentation, crops, flips, colour augmentation; batches placed on the devices two
steps ahead), which shows whether the host keeps up with the step.

Printed per model: compile time, step time, images/s (global and per device) and MFU = FLOPs per step and device
(XLA's cost analysis of the compiled program, `jax.jit(...).lower(...).compile().cost_analysis()`) / step time /
the device's peak. Peaks (dense bf16 TFLOP/s per device, from the vendors' spec sheets) are chosen from
`jax.devices()[0].device_kind`; --peak_tflops overrides (e.g. for an fp32 run, or a device not in PEAKS). The
goal for ResNet-50 is printed beside its figure: >= 7,200 images/s on one H100 (MLPerf Training v4.0's per-GPU
rate, reached there with MXNet + DALI).

XLA counts a multiply-add as 2 FLOPs: ResNet-50 (v1, 224x224) trains at about 22.6 GFLOPs per image (3x its 3.8
G multiply-adds forward), so 7,200 images/s on an H100 is about 163 TFLOP/s, 16% MFU.

Mixed precision: --dtype sets `config.dtype` (the compute dtype; parameters and optimiser state stay float32)
when the config schema has that field; otherwise the run is float32 and says so.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)  # this checkout's convnets and experiments, whatever is installed

import jax  # noqa: E402
import numpy as np  # noqa: E402
from ml_collections import ConfigDict  # noqa: E402

RESNET50_GOAL = 7200.0  # images/s on one H100: MLPerf Training v4.0, ResNet-50, per GPU

# (substring of jax.devices()[0].device_kind, lower case; dense bf16 TFLOP/s per JAX device). First match wins.
# NVIDIA spec sheets (dense, i.e. half the "with sparsity" figures): H100 SXM 989.4, H100 PCIe 756, H200 = H100 SXM
# (same GH100 compute, more HBM), A100 312. Cloud TPU docs, peak bf16 per chip (one JAX device per chip on these):
# v4 275, v5e ('TPU v5 lite') 197, v5p ('TPU v5') 459, v6e ('TPU v6 lite') 918.
PEAKS: tuple[tuple[str, float], ...] = (
    ('h100 pcie', 756.0), ('h100', 989.0), ('h200', 989.0), ('a100', 312.0),
    ('tpu v4', 275.0), ('tpu v5 lite', 197.0), ('tpu v5e', 197.0), ('tpu v5p', 459.0), ('tpu v5', 459.0),
    ('tpu v6 lite', 918.0), ('tpu v6e', 918.0),
)


@dataclasses.dataclass(frozen=True)
class Model:
    """A benchmarked network: its experiment module, default per-device batch and how to make it tiny."""

    experiment: str  # module of experiments/
    batch_per_device: int
    tiny: Mapping[str, Any]  # model fields for --tiny
    detection: bool = False


MODELS: dict[str, Model] = {
    'resnet50': Model('resnet50', 256, {'stage_sizes': (1, 1, 1, 1), 'width': 8, 'num_classes': 10}),
    'vgg16': Model('vgg16', 128, {'stage_widths': (8, 8, 16, 16, 16), 'fc_features': 32, 'num_classes': 10,
                                  'input_size': 32}),
    'alexnet': Model('alexnet', 512, {'widths': (8, 16, 16, 16, 16), 'num_classes': 10}),
    'fast_rcnn': Model('fast_rcnn_vgg16_voc07', 2, {'stage_widths': (8, 16), 'num_pools': 1, 'fc_features': 32,
                                                    'roi_size': 2}, detection=True),
}
TINY_IMAGE = 32
TINY_CANVAS = (48, 64)
TINY_PROPOSALS = 32


# ---------------------------------------------------------------------------------------------- pure helpers


def peak_tflops(device_kind: str, override: float | None = None) -> float | None:
    """Dense bf16 TFLOP/s of one device of this kind (PEAKS), or `override`; None when unknown (CPU)."""
    if override:
        return float(override)
    kind = device_kind.lower()
    return next((peak for key, peak in PEAKS if key in kind), None)


def cost_flops(analysis: Any) -> float:
    """The 'flops' entry of a cost analysis: a dict (jax >= 0.4.3x), a one-element list of dicts (older), or None."""
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0] if analysis else None
    if not analysis:
        return 0.0
    return max(float(analysis.get('flops', 0.0) or 0.0), 0.0)


def step_flops(lowered: Any, compiled: Any) -> tuple[float, str]:
    """(FLOPs of one step on one device, where the figure comes from).

    The compiled program's analysis is preferred (what runs, after XLA's rewrites); where a backend reports none or
    clearly too few (a library call whose FLOPs it does not count), the lowered program's analysis is used."""

    def of(stage: Any) -> float:
        try:
            return cost_flops(stage.cost_analysis())
        except Exception:  # noqa: BLE001 - some backends do not implement it; the other stage may
            return 0.0

    compiled_flops = of(compiled)
    lowered_flops = of(lowered)
    if compiled_flops > 0 and compiled_flops >= 0.5 * lowered_flops:
        return compiled_flops, 'compiled cost analysis'
    if lowered_flops > 0:
        return lowered_flops, f'lowered cost analysis (compiled program reports {compiled_flops:.3g})'
    return 0.0, 'no cost analysis on this backend'


def mfu(flops_per_device_step: float, step_s: float, peak: float | None) -> float | None:
    """Model FLOP utilisation: achieved FLOP/s of one device over its peak (None without a peak or FLOP count)."""
    if not peak or flops_per_device_step <= 0 or step_s <= 0:
        return None
    return flops_per_device_step / step_s / (peak * 1e12)


def parse_batches(spec: Sequence[str]) -> dict[str, int]:
    """'resnet50=256,vgg16=64' (already split at commas) -> {'resnet50': 256, 'vgg16': 64}; ValueError on typos."""
    out = {}
    for item in spec:
        name, sep, value = item.partition('=')
        if not sep or name not in MODELS or not value.isdigit() or int(value) < 1:
            raise ValueError(f'--batch_per_device item {item!r}: use MODEL=N with N >= 1 and MODEL one of '
                             f'{", ".join(MODELS)}, e.g. --batch_per_device=resnet50=256,vgg16=128')
        out[name] = int(value)
    return out


# ---------------------------------------------------------------------------------------------- configs


def make_config(name: str, *, dtype: str, tiny: bool) -> tuple[ConfigDict, str]:
    """The experiment's config for benchmarking `name`, and a note on the precision actually used."""
    spec = MODELS[name]
    config = importlib.import_module(f'experiments.{spec.experiment}').get_config()
    config.unlock()
    config.parallel = 'shard_map'
    config.init_from = ''
    if config.optimizer.schedule == 'plateau':
        config.optimizer.schedule = 'constant'  # the same step; no evaluation drives the rate here
    if tiny:
        for key, value in spec.tiny.items():
            config.model[key] = value
    if 'dtype' in config:
        config.dtype = dtype
        note = dtype
    else:
        note = 'float32 (this checkout has no config.dtype: mixed precision is not available yet)'
    return config, note


def synthetic_batch(name: str, config: ConfigDict, global_batch: int, *, tiny: bool,
                    rng: np.random.Generator) -> dict[str, np.ndarray]:
    """A random batch of `global_batch` examples with every key the model's train step reads."""
    if MODELS[name].detection:
        detection = _detection_benchmark()
        height, width = TINY_CANVAS if tiny else (600, 1000)
        config.batch_size = global_batch
        return detection.synthetic_batch(config, rng, height, width,
                                         proposals=TINY_PROPOSALS if tiny else 2000, gt_boxes=4)
    size = TINY_IMAGE if tiny and name != 'alexnet' else config.model.get('input_size', 224)
    return {'image': rng.normal(size=(global_batch, size, size, 3)).astype(np.float32),
            'label': rng.integers(0, config.model.num_classes, global_batch).astype(np.int32)}


def _detection_benchmark():
    """benchmarks/detection.py as a module (its synthetic Fast R-CNN batch)."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module('detection')


# ---------------------------------------------------------------------------------------------- timing


@dataclasses.dataclass
class Compiled:
    """A train step compiled for one batch shape, with its state and FLOP count."""

    step: Callable
    state: Any
    compile_s: float
    flops: float
    flops_source: str


def compile_step(config: ConfigDict, local_batch: Mapping[str, np.ndarray], mesh: jax.sharding.Mesh) -> tuple[
        Compiled, Callable[[Mapping[str, np.ndarray]], Any]]:
    """The task's train step for `config`, compiled ahead of time for `local_batch`'s shapes on `mesh`; also the
    function that places a process-local batch on the mesh."""
    from convnets import parallel, tasks

    task = tasks.get(config.task)
    task.validate(config)
    par = parallel.Parallel(mesh, config.parallel)
    parallel.check_batch_size(config.batch_size, mesh)
    nets = task.build_nets(config)
    optimizers = task.make_optimizers(config, steps_per_epoch=1000, total_steps=10**6)
    spec = {k: jax.ShapeDtypeStruct(v.shape[1:], v.dtype) for k, v in local_batch.items()}
    state = jax.jit(lambda: task.init_state(config, nets, optimizers, spec),
                    out_shardings=parallel.replicated(mesh))()
    step = par.compile(task.make_train_step(config, nets, optimizers, axis_name=parallel.AXIS,
                                            loss_is_global=par.loss_is_global))
    batch = par.shard_batch(local_batch)
    t = time.perf_counter()
    lowered = step.lower(state, batch)
    compiled = lowered.compile()
    compile_s = time.perf_counter() - t
    flops, source = step_flops(lowered, compiled)
    return Compiled(compiled, state, compile_s, flops, source), par.shard_batch


def time_steps(c: Compiled, batches: Iterator[Any], *, warmup: int, steps: int) -> tuple[float, float]:
    """(first step incl. its transfer, mean step time after `warmup` steps) in seconds; advances c.state."""
    t = time.perf_counter()
    c.state, metrics = c.step(c.state, next(batches))
    jax.block_until_ready(metrics)
    first = time.perf_counter() - t
    for _ in range(warmup):
        c.state, metrics = c.step(c.state, next(batches))
    jax.block_until_ready(metrics)
    t = time.perf_counter()
    for _ in range(steps):
        c.state, metrics = c.step(c.state, next(batches))
    jax.block_until_ready(metrics)
    loss = float(np.asarray(jax.device_get(metrics['loss'])))
    if not np.isfinite(loss):
        raise FloatingPointError(f'the benchmarked step produced a non-finite loss ({loss})')
    return first, (time.perf_counter() - t) / steps


def device_prefetch(batches: Iterator[Mapping[str, np.ndarray]], place: Callable, depth: int = 2) -> Iterator[Any]:
    """Places each host batch on the devices `depth` steps before the step needs it (the copy overlaps the step)."""
    queue: collections.deque = collections.deque()
    for batch in batches:
        queue.append(place(batch))
        if len(queue) > depth:
            yield queue.popleft()
    yield from queue


def repeat(batch: Any) -> Iterator[Any]:
    while True:
        yield batch


# ---------------------------------------------------------------------------------------------- one model


def bench_model(name: str, args: argparse.Namespace, mesh: jax.sharding.Mesh, peak: float | None,
                batches: Mapping[str, int]) -> list[dict[str, Any]]:
    """Benchmarks `name` on synthetic batches (and ResNet-50 on the real pipeline with --data_dir); prints a
    report and returns one record per measurement."""
    config, precision = make_config(name, dtype=args.dtype, tiny=args.tiny)
    n = mesh.devices.size
    per_device = batches.get(name, 2 if args.tiny else MODELS[name].batch_per_device)
    config.batch_size = per_device * n
    rng = np.random.default_rng(0)
    local = synthetic_batch(name, config, config.batch_size, tiny=args.tiny, rng=rng)
    compiled, place = compile_step(config, local, mesh)
    records = [_measure(name, 'synthetic', compiled, repeat(place(local)), config, local, precision, peak, args)]
    if name == 'resnet50' and args.data_dir:
        real = _real_pipeline(config, args, place)
        if real is not None:
            records.append(_measure(name, 'input pipeline', compiled, real, config, local, precision, peak, args))
    return records


def _real_pipeline(config: ConfigDict, args: argparse.Namespace, place: Callable) -> Iterator[Any] | None:
    """ImageNet training batches placed on the devices ahead of the step, or None (and a note) when --data_dir
    holds no prepared `args.data_name`."""
    from convnets.data import pipeline

    config.data.name = args.data_name
    config.data.data_dir = args.data_dir
    config.data.download = False  # never start an hours-long preparation from a benchmark
    if args.tiny:  # the same chain of ops at the tiny model's image size
        config.data.train_preprocess = (f'decode(3)|random_resize_short({TINY_IMAGE + 4}, {TINY_IMAGE + 16})|'
                                        f'random_crop({TINY_IMAGE})|flip_lr|value_range(0, 1)')
    try:
        pipeline.get_builder(config.data)
    except (FileNotFoundError, ValueError) as e:
        print(f'  input pipeline: skipped, {args.data_name} is not prepared in {args.data_dir} ({e})')
        return None
    host = pipeline.train_batches(config.data, global_batch_size=config.batch_size, seed=0)
    from convnets import parallel

    prefetch = getattr(parallel, 'device_prefetch', None)  # the training loop's own, where this checkout has it
    return prefetch(host, place, 2) if prefetch else device_prefetch(host, place)


def _measure(name: str, data: str, c: Compiled, batches: Iterator[Any], config: ConfigDict,
             local: Mapping[str, np.ndarray], precision: str, peak: float | None,
             args: argparse.Namespace) -> dict[str, Any]:
    n = len(jax.local_devices())
    first_s, step_s = time_steps(c, batches, warmup=args.warmup, steps=args.steps)
    images_s = config.batch_size / step_s
    util = mfu(c.flops, step_s, peak)
    shape = 'x'.join(map(str, local['image'].shape[1:]))
    record = {
        'model': name, 'experiment': f'experiments/{MODELS[name].experiment}.py', 'data': data,
        'precision': precision, 'devices': n, 'global_batch': config.batch_size,
        'batch_per_device': config.batch_size // n, 'image': shape, 'compile_s': c.compile_s,
        'first_step_s': first_s, 'step_s': step_s, 'images_per_s': images_s, 'images_per_s_per_device': images_s / n,
        'flops_per_step_per_device': c.flops, 'flops_source': c.flops_source,
        'tflops_per_s_per_device': c.flops / step_s / 1e12, 'peak_tflops': peak, 'mfu': util,
    }
    print(f'{name} ({data}, {precision}): {config.batch_size} images of {shape} '
          f'({config.batch_size // n} per device x {n})')
    print(f'  compile (s): {c.compile_s:.1f}   first step (s): {first_s:.2f}')
    print(f'  step time (ms): {1000 * step_s:.1f}   images/s: {images_s:.1f}   per device: {images_s / n:.1f}')
    flops_line = (f'FLOPs/step/device {c.flops:.4g} ({c.flops_source}; {c.flops / (config.batch_size / n):.4g} '
                  f'per image), achieved {record["tflops_per_s_per_device"]:.4g} TFLOP/s/device')
    if util is None:
        print(f'  MFU: n/a (no peak for this device; pass --peak_tflops)   {flops_line}')
    else:
        print(f'  MFU: {100 * util:.1f}% of {peak:g} TFLOP/s   {flops_line}')
    if name == 'resnet50':
        record['goal_images_per_s_per_device'] = RESNET50_GOAL
        print(f'  goal: >= {RESNET50_GOAL:,.0f} images/s on one H100 (MLPerf v4.0 per-GPU rate); here '
              f'{images_s / n:,.1f} per device = {100 * images_s / n / RESNET50_GOAL:.1f}% of it')
    return record


# ---------------------------------------------------------------------------------------------- CLI


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', default=','.join(MODELS), help=f'comma-separated subset of {", ".join(MODELS)}')
    p.add_argument('--dtype', default='bfloat16', choices=('bfloat16', 'float16', 'float32'),
                   help='compute dtype (config.dtype) where the schema has it')
    p.add_argument('--batch_per_device', default='', help='MODEL=N,... per-device batch sizes (defaults: '
                   + ', '.join(f'{k} {m.batch_per_device}' for k, m in MODELS.items()) + '; --tiny: 2)')
    p.add_argument('--steps', type=int, default=None, help='timed steps (default 30; --tiny: 2)')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps after the first (default 5; --tiny: 1)')
    p.add_argument('--data_dir', default='', help='a TFDS data_dir holding a prepared imagenet2012: also time '
                   'ResNet-50 on the real input pipeline')
    p.add_argument('--data_name', default='imagenet2012', help='the TFDS dataset of --data_dir')
    p.add_argument('--peak_tflops', type=float, default=None, help='peak TFLOP/s of one device (default: PEAKS by '
                   'device kind)')
    p.add_argument('--json_out', default='', help='write every figure to this JSON file')
    p.add_argument('--tiny', action='store_true', help='CPU smoke run: narrow nets, 32x32 images, 2 steps')
    args = p.parse_args(argv)
    args.steps = args.steps if args.steps is not None else (2 if args.tiny else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.tiny else 5)
    if args.steps < 1 or args.warmup < 0:
        p.error(f'--steps={args.steps} must be >= 1 and --warmup={args.warmup} >= 0')
    args.model_list = [m.strip() for m in args.models.split(',') if m.strip()]
    unknown = [m for m in args.model_list if m not in MODELS]
    if unknown or not args.model_list:
        p.error(f'--models={args.models}: unknown {unknown}; use a subset of {", ".join(MODELS)}')
    try:
        args.batches = parse_batches([b for b in args.batch_per_device.split(',') if b])
    except ValueError as e:
        p.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from convnets import parallel

    mesh = parallel.make_mesh(jax.local_devices())
    kind = jax.devices()[0].device_kind
    peak = peak_tflops(kind, args.peak_tflops)
    source = '--peak_tflops' if args.peak_tflops else 'dense bf16, PEAKS'
    print(f'devices: {len(jax.local_devices())} x {kind} ({jax.default_backend()}), jax {jax.__version__}; peak '
          + (f'{peak:g} TFLOP/s per device ({source})' if peak else 'unknown (MFU not computed; --peak_tflops=N '
             'sets it)'))
    if args.dtype != 'bfloat16' and peak and not args.peak_tflops:
        print(f'  note: the peak is the bf16 figure; for --dtype={args.dtype} pass that precision\'s --peak_tflops')
    records = []
    for name in args.model_list:
        records.extend(bench_model(name, args, mesh, peak, args.batches))
    report = {'device_kind': kind, 'platform': jax.default_backend(), 'devices': len(jax.local_devices()),
              'jax': jax.__version__, 'tiny': args.tiny, 'steps': args.steps, 'warmup': args.warmup,
              'results': records}
    write_json(args.json_out, report)
    return report


def write_json(path: str, report: dict) -> None:
    """Writes a benchmark's figures to `path` (nothing when it is ''), for benchmarks/records."""
    if path:
        with open(path, 'w') as f:
            json.dump(report, f, indent=1)
        print(f'wrote {path}')


if __name__ == '__main__':
    main()
