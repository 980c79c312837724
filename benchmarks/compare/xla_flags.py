"""CPU speed of our train step under XLA flag and JAX setting variants, interleaved rounds of fresh processes.

  python benchmarks/compare/xla_flags.py [--variants=baseline,ynn_conv,onednn] [--rounds=3]
      [--config=experiments/resnet18.py --batch=16 --image_size=112] [--steps=5]

XLA reads XLA_FLAGS once per process, so each variant runs benchmarks/train_step.py in its own subprocess (synthetic
batches, one CPU device, no compilation cache), round after round in turn (baseline, variant 1, variant 2, baseline,
...), so that load changes on the machine hit every variant alike (each round starts one variant later, so
that no variant always runs first). Prints each variant's median train images/s,
its range, and the ratio to the baseline's median. VARIANTS lists what the pinned jaxlib accepts; any other
'name=ENV=VALUE[;ENV=VALUE]' item is taken as given, e.g. 'mine=XLA_FLAGS=--xla_cpu_enable_fast_math=true'.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from collections.abc import Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_STEP = os.path.join(ROOT, 'benchmarks', 'train_step.py')

# name -> environment of the subprocess (XLA_FLAGS values are appended to the baseline's).
VARIANTS: dict[str, dict[str, str]] = {
    'baseline': {},
    # YNNPACK for convolutions (off by default in jaxlib 0.10; YNNPACK's dots are on).
    'ynn_conv': {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type=+individual_convolution'},
    'ynn_off': {'XLA_FLAGS': '--xla_cpu_experimental_ynn_fusion_type='},
    'onednn': {'XLA_FLAGS': '--xla_cpu_use_onednn=true'},
    'onednn_custom_call': {'XLA_FLAGS': '--xla_cpu_experimental_onednn_custom_call=true'},
    'xnn_graph': {'XLA_FLAGS': '--xla_cpu_experimental_xnn_graph_fusion_mode=XNN_GRAPH_FUSION_MODE_GREEDY'},
    'fast_math': {'XLA_FLAGS': '--xla_cpu_enable_fast_math=true'},
    'vector_512': {'XLA_FLAGS': '--xla_cpu_prefer_vector_width=512'},
    'eigen_one_thread': {'XLA_FLAGS': '--xla_cpu_multi_thread_eigen=false'},
    'sync_dispatch': {'JAX_CPU_ENABLE_ASYNC_DISPATCH': 'false'},
}
RATE = re.compile(r'train examples/s: ([\d.]+)')


def parse_variant(item: str) -> tuple[str, dict[str, str]]:
    """'ynn_conv' (a known variant) or 'name=ENV=VALUE[;ENV=VALUE]' -> (name, environment)."""
    if item in VARIANTS:
        return item, VARIANTS[item]
    name, sep, rest = item.partition('=')
    pairs = [p.partition('=') for p in rest.split(';') if p]
    if not sep or not name or not pairs or any(not k or not s for k, s, _ in pairs):
        raise ValueError(f'variant {item!r}: use one of {", ".join(VARIANTS)} or NAME=ENV=VALUE[;ENV=VALUE], e.g. '
                         f'fm=XLA_FLAGS=--xla_cpu_enable_fast_math=true')
    return name, {k: v for k, _, v in pairs}


def environment(extra: dict[str, str], base: dict[str, str] | None = None) -> dict[str, str]:
    """The subprocess environment: this checkout first on the path, no compilation cache, one CPU device, the
    variant's settings (its XLA_FLAGS appended)."""
    env = dict(os.environ if base is None else base)
    env.pop('JAX_COMPILATION_CACHE_DIR', None)  # a cached executable would hide the flags' effect on compiling
    env['PYTHONPATH'] = ROOT + os.pathsep + env.get('PYTHONPATH', '')
    env['TF_CPP_MIN_LOG_LEVEL'] = '2'
    flags = [f for f in env.get('XLA_FLAGS', '').split() if not f.startswith('--xla_force_host_platform')]
    for key, value in extra.items():
        if key == 'XLA_FLAGS':
            flags.append(value)
        else:
            env[key] = value
    env['XLA_FLAGS'] = ' '.join(flags)
    return env


def run_once(env: dict[str, str], args: argparse.Namespace) -> float:
    cmd = [sys.executable, TRAIN_STEP, f'--config={args.config}', f'--config.batch_size={args.batch}',
           f'--image_shape={args.image_size},{args.image_size},3', f'--steps={args.steps}']
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=args.timeout)
    match = RATE.search(proc.stdout)
    if proc.returncode or not match:
        raise RuntimeError(f'{" ".join(cmd)} failed (status {proc.returncode}):\n{proc.stderr[-2000:]}')
    return float(match.group(1))


def main(argv: Sequence[str] | None = None) -> dict[str, list[float]]:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--variants', default='baseline,ynn_conv,onednn,fast_math',
                   help=f'comma-separated: {", ".join(VARIANTS)} or NAME=ENV=VALUE[;ENV=VALUE]')
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--config', default='experiments/resnet18.py')
    p.add_argument('--batch', type=int, default=16)
    p.add_argument('--image_size', type=int, default=112)
    p.add_argument('--steps', type=int, default=5, help='timed steps per process (after compile and a warm-up)')
    p.add_argument('--timeout', type=float, default=900, help='seconds per process')
    args = p.parse_args(argv)
    try:
        variants = dict(parse_variant(v.strip()) for v in args.variants.split(',') if v.strip())
    except ValueError as e:
        p.error(str(e))
    variants = {'baseline': {}, **variants}
    rates: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # each round starts one variant later
            rates[name].append(run_once(environment(variants[name]), args))
            print(f'round {r + 1}: {name} {rates[name][-1]:.2f} images/s', flush=True)
    base = statistics.median(rates['baseline'])
    print(f'{args.config}: batch {args.batch}, {args.image_size}x{args.image_size}, {args.rounds} rounds x '
          f'{args.steps} steps, 1 CPU device, {os.cpu_count()} cores')
    for name, values in rates.items():
        median = statistics.median(values)
        print(f'  {name:<20} {median:8.2f} images/s (median; {min(values):.2f}-{max(values):.2f})   '
              f'x{median / base:.2f} of baseline   {variants[name] or ""}')
    return rates


if __name__ == '__main__':
    main()
