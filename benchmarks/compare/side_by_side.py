"""Side-by-side train-step benchmark: this project against flax's examples/imagenet and PyTorch + torchvision.

  python benchmarks/compare/side_by_side.py [--models=resnet18,resnet50,vgg11] [--rounds=7] [--steps=3]
      [--batch=N --image_size=N] [--flax_examples_dir=/tmp/flax] [--json_out=FILE]
  python benchmarks/compare/side_by_side.py --tiny     # smoke run: a narrow ResNet, 2 rounds of 1 step

Same batch, same image size, fp32, SGD momentum 0.9 with weight decay 1e-4, one device, one fixed synthetic batch
(see contenders.py). Rounds are interleaved (ours, flax, torch, ours, ...), so that a change in the machine's load
hits every contender alike; printed per model: each contender's median images/s over the rounds (and the range),
its cold start (build + compile + first step) and the ratio of our median to each reference's. Defaults are the
issue-16 table: ResNet-18 at batch 16, 112x112; ResNet-50 (v1.5 strides, as the references) at 8, 224x224;
VGG-11 at 4, 224x224 (flax's example has no VGG).

flax's examples are not in its pip wheel: pass a checkout with --flax_examples_dir (README.md here says how);
without one, or without torch, that contender is skipped with a message.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import contenders  # noqa: E402

# model -> (batch, image size) of the CPU table
DEFAULTS = {'resnet18': (16, 112), 'resnet50': (8, 224), 'vgg11': (4, 224)}
TINY = ('resnet18', 2, 32)  # model, batch, image size of --tiny


def summarise(images_per_s: Sequence[float]) -> dict[str, float]:
    """Median, min and max of one contender's per-round images/s."""
    return {'median': statistics.median(images_per_s), 'min': min(images_per_s), 'max': max(images_per_s)}


def ratios(medians: dict[str, float], ours: str = 'convnets') -> dict[str, float]:
    """Our median images/s over each reference's (> 1: we are faster)."""
    return {name: medians[ours] / m for name, m in medians.items() if name != ours and m > 0}


def build(model: str, batch: int, size: int, num_classes: int, args: argparse.Namespace
          ) -> tuple[list[contenders.Runner], list[str]]:
    """The contenders that can run here, and a line for each one skipped."""
    makers: list[tuple[str, Callable[[], contenders.Runner]]] = [
        ('convnets', lambda: contenders.ours(model, batch, size, num_classes, args.tiny)),
        ('flax', lambda: contenders.flax_example(model, batch, size, num_classes, args.tiny, args.flax_examples_dir)),
        ('torch', lambda: contenders.torch_reference(model, batch, size, num_classes, args.tiny)),
    ]
    runners, skipped = [], []
    for name, make in makers:
        if name not in args.contenders:
            continue
        try:
            runners.append(make())
        except contenders.Unavailable as e:
            skipped.append(f'{name}: skipped ({e})')
    return runners, skipped


def compare(model: str, batch: int, size: int, args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of every available contender on one model; prints and returns the figures."""
    num_classes = 10 if args.tiny else 1000
    runners, skipped = build(model, batch, size, num_classes, args)
    per_round: dict[str, list[float]] = {r.name: [] for r in runners}
    for _ in range(args.rounds):
        for r in runners:
            t = time.perf_counter()
            r.run(args.steps)
            per_round[r.name].append(args.steps * batch / (time.perf_counter() - t))
    stats = {name: summarise(v) for name, v in per_round.items()}
    rel = ratios({n: s['median'] for n, s in stats.items()}) if 'convnets' in stats else {}
    print(f'{model}: batch {batch}, {size}x{size}, fp32, SGD momentum, {args.rounds} interleaved rounds x '
          f'{args.steps} steps, one device')
    for r in runners:
        s = stats[r.name]
        line = (f'  {r.name:<45} {s["median"]:8.2f} images/s (median; {s["min"]:.2f}-{s["max"]:.2f})   '
                f'cold start {r.first_step_s:.1f} s')
        if r.name in rel:
            line += f'   convnets / this = {rel[r.name]:.2f}'
        print(line)
    for line in skipped:
        print(f'  {line}')
    return {'model': model, 'batch': batch, 'image_size': size, 'rounds': args.rounds, 'steps': args.steps,
            'images_per_s': per_round, 'stats': stats, 'ratio_ours_over': rel,
            'cold_start_s': {r.name: r.first_step_s for r in runners}, 'skipped': skipped}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--models', default=','.join(DEFAULTS), help=f'comma-separated subset of {", ".join(DEFAULTS)}')
    p.add_argument('--contenders', default='convnets,flax,torch', help='which of convnets, flax, torch to run')
    p.add_argument('--rounds', type=int, default=7, help='interleaved rounds (medians are over these)')
    p.add_argument('--steps', type=int, default=3, help='timed steps per contender and round')
    p.add_argument('--batch', type=int, default=0, help='batch size for every model (0: the model\'s default)')
    p.add_argument('--image_size', type=int, default=0, help='image side for every model (0: the model\'s default)')
    p.add_argument('--flax_examples_dir', default='', help='a flax checkout (git clone https://github.com/google/flax)')
    p.add_argument('--json_out', default='', help='write every figure to this JSON file')
    p.add_argument('--tiny', action='store_true', help='smoke run: narrow ResNet-18 at 32x32, batch 2, 2 rounds of 1')
    args = p.parse_args(argv)
    if args.tiny:
        args.models = TINY[0]
        args.rounds, args.steps = min(args.rounds, 2), 1
    args.model_list = [m.strip() for m in args.models.split(',') if m.strip()]
    unknown = [m for m in args.model_list if m not in DEFAULTS]
    if unknown or not args.model_list:
        p.error(f'--models={args.models}: unknown {unknown}; use a subset of {", ".join(DEFAULTS)}')
    args.contenders = {c.strip() for c in args.contenders.split(',') if c.strip()}
    if not args.contenders or args.contenders - {'convnets', 'flax', 'torch'}:
        p.error(f'--contenders: a subset of convnets, flax, torch, got {sorted(args.contenders)}')
    if args.rounds < 1 or args.steps < 1 or args.batch < 0 or args.image_size < 0:
        p.error('--rounds and --steps must be >= 1, --batch and --image_size >= 0')
    if args.flax_examples_dir:
        try:
            contenders.flax_models_path(args.flax_examples_dir)
        except ValueError as e:
            p.error(str(e))
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if 'torch' in args.contenders:
        contenders.preload_torch()  # Before convnets imports TensorFlow.
    import jax

    print(f'device: {jax.devices()[0].device_kind} ({jax.default_backend()}), jax {jax.__version__}, '
          f'{os.cpu_count()} CPU cores')
    results = []
    for model in args.model_list:
        batch, size = (TINY[1], TINY[2]) if args.tiny else DEFAULTS[model]
        results.append(compare(model, args.batch or batch, args.image_size or size, args))
    report = {'device_kind': jax.devices()[0].device_kind, 'jax': jax.__version__, 'results': results}
    contenders._accelerator_benchmark().write_json(args.json_out, report)
    return report


if __name__ == '__main__':
    main()
