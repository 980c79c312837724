"""benchmarks/accelerator.py and benchmarks/compare/: the arithmetic and option handling (fast), and tiny runs on the
CPU (slow): the accelerator benchmark prints images/s and MFU from a real FLOP count, the side-by-side benchmark
times our step against flax's example model (here a stand-in module loaded the way a flax checkout is) and says
which references it skipped."""

import importlib.util
import json
import os
import sys

import pytest

from tests import cli

BENCH = os.path.join(cli.ROOT, 'benchmarks')


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


accelerator = _load('bench_accelerator', os.path.join(BENCH, 'accelerator.py'))
side_by_side = _load('bench_side_by_side', os.path.join(BENCH, 'compare', 'side_by_side.py'))
xla_flags = _load('bench_xla_flags', os.path.join(BENCH, 'compare', 'xla_flags.py'))
contenders = side_by_side.contenders


# ---------------------------------------------------------------------------------------------- fast


@pytest.mark.parametrize('kind, peak', [
    ('NVIDIA H100 80GB HBM3', 989.0), ('NVIDIA H100 PCIe', 756.0), ('NVIDIA H200', 989.0),
    ('NVIDIA A100-SXM4-80GB', 312.0), ('TPU v4', 275.0), ('TPU v5 lite', 197.0), ('TPU v5', 459.0),
    ('TPU v5p', 459.0), ('TPU v6 lite', 918.0), ('cpu', None), ('Tesla V100-SXM2-16GB', None)])
def test_peak_by_device_kind(kind, peak):
    assert accelerator.peak_tflops(kind) == peak
    assert accelerator.peak_tflops(kind, 123.0) == 123.0


def test_flops_and_mfu_arithmetic():
    assert accelerator.cost_flops({'flops': 2e9, 'bytes accessed': 1.0}) == 2e9
    assert accelerator.cost_flops([{'flops': 3.0}]) == 3.0  # older jax: one dict per program
    assert accelerator.cost_flops(None) == accelerator.cost_flops([]) == accelerator.cost_flops({}) == 0.0

    class Stage:
        def __init__(self, flops=None, error=False):
            self.flops, self.error = flops, error

        def cost_analysis(self):
            if self.error:
                raise NotImplementedError
            return {'flops': self.flops}

    assert accelerator.step_flops(Stage(10.0), Stage(9.0)) == (9.0, 'compiled cost analysis')
    flops, source = accelerator.step_flops(Stage(10.0), Stage(error=True))  # compiled reports nothing
    assert flops == 10.0 and source.startswith('lowered')
    flops, source = accelerator.step_flops(Stage(10.0), Stage(1.0))  # a library call the backend did not count
    assert flops == 10.0 and '1' in source
    assert accelerator.step_flops(Stage(error=True), Stage(0.0))[0] == 0.0
    # 989 TFLOP/s of FLOPs per second on a 989 TFLOP/s device is 100%; no peak or no count: no MFU.
    assert accelerator.mfu(989e12 * 0.5, 0.5, 989.0) == pytest.approx(1.0)
    assert accelerator.mfu(4e12, 1.0, 400.0) == pytest.approx(0.01)
    assert accelerator.mfu(4e12, 1.0, None) is None and accelerator.mfu(0.0, 1.0, 400.0) is None


def test_accelerator_options():
    assert accelerator.parse_batches(['resnet50=64', 'fast_rcnn=1']) == {'resnet50': 64, 'fast_rcnn': 1}
    for bad in ('resnet=64', 'resnet50', 'vgg16=0', 'alexnet=x'):
        with pytest.raises(ValueError, match='MODEL=N'):
            accelerator.parse_batches([bad])
    args = accelerator.parse_args(['--tiny', '--models=vgg16,alexnet', '--batch_per_device=vgg16=4'])
    assert (args.model_list, args.batches, args.steps, args.warmup) == (['vgg16', 'alexnet'], {'vgg16': 4}, 2, 1)
    args = accelerator.parse_args([])
    assert args.model_list == list(accelerator.MODELS) and (args.steps, args.warmup) == (30, 5)
    for bad in (['--models=resnet51'], ['--steps=0'], ['--batch_per_device=vgg=2']):
        with pytest.raises(SystemExit):
            accelerator.parse_args(bad)


def test_compare_arithmetic_and_options(tmp_path):
    s = side_by_side.summarise([3.0, 1.0, 2.0, 10.0])
    assert s == {'median': 2.5, 'min': 1.0, 'max': 10.0}
    assert side_by_side.ratios({'convnets': 2.0, 'flax': 4.0, 'torch': 1.0}) == {'flax': 0.5, 'torch': 2.0}
    args = side_by_side.parse_args(['--tiny'])
    assert (args.model_list, args.rounds, args.steps) == (['resnet18'], 2, 1)
    for bad in (['--models=resnet19'], ['--contenders=jax'], ['--rounds=0'], [f'--flax_examples_dir={tmp_path}']):
        with pytest.raises(SystemExit):
            side_by_side.parse_args(bad)


def test_missing_references_are_skipped_with_how_to_get_them(tmp_path):
    with pytest.raises(contenders.Unavailable, match='git clone .*flax'):
        contenders.flax_example('resnet18', 2, 32, 10, tiny=True, flax_examples_dir='')
    with pytest.raises(contenders.Unavailable, match='no vgg11'):
        contenders.flax_example('vgg11', 2, 32, 10, flax_examples_dir=str(tmp_path))
    with pytest.raises(ValueError, match='examples/imagenet/models.py'):
        contenders.flax_models_path(str(tmp_path))
    models = tmp_path / 'examples' / 'imagenet' / 'models.py'
    models.parent.mkdir(parents=True)
    models.write_text('')
    for where in (tmp_path, tmp_path / 'examples', tmp_path / 'examples' / 'imagenet'):
        assert contenders.flax_models_path(str(where)) == str(models)
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(contenders.Unavailable, match='pip install torch torchvision'):
            contenders.torch_reference('resnet18', 2, 32, 10, tiny=True)


def test_side_by_side_says_which_references_it_skipped():
    args = side_by_side.parse_args(['--tiny', '--contenders=flax,torch'])
    runners, skipped = side_by_side.build('resnet18', 2, 32, 10, args)
    assert skipped[0].startswith("flax: skipped (no --flax_examples_dir: flax's examples are not in its pip wheel")
    try:
        import torch  # noqa: F401
    except ImportError:
        assert runners == [] and skipped[1].startswith('torch: skipped (PyTorch is not installed')


def test_benchmarked_configs():
    config = contenders.our_config('resnet50', 8, 224, 1000)
    assert (config.model.stride_on, config.batch_size, config.optimizer.schedule) == ('3x3', 8, 'constant')
    assert (config.optimizer.learning_rate, config.optimizer.momentum, config.optimizer.weight_decay) == (
        contenders.LEARNING_RATE, contenders.MOMENTUM, contenders.WEIGHT_DECAY)
    assert contenders.our_config('vgg11', 4, 64, 10).model.input_size == 64
    assert contenders.our_config('resnet18', 2, 32, 10, tiny=True).model.width == contenders.TINY['width']
    config, precision = accelerator.make_config('resnet50', dtype='bfloat16', tiny=True)
    assert config.model.stage_sizes == (1, 1, 1, 1) and config.optimizer.schedule == 'constant'
    assert precision == 'bfloat16' if 'dtype' in config else precision.startswith('float32')
    assert config.get('dtype', 'bfloat16') == 'bfloat16'


def test_xla_flag_variants():
    assert xla_flags.parse_variant('onednn') == ('onednn', {'XLA_FLAGS': '--xla_cpu_use_onednn=true'})
    assert xla_flags.parse_variant('fm=XLA_FLAGS=--xla_cpu_enable_fast_math=true;OMP_NUM_THREADS=2') == (
        'fm', {'XLA_FLAGS': '--xla_cpu_enable_fast_math=true', 'OMP_NUM_THREADS': '2'})
    for bad in ('nonsense', 'x=', 'x=FOO'):
        with pytest.raises(ValueError, match='NAME=ENV=VALUE'):
            xla_flags.parse_variant(bad)
    base = {'XLA_FLAGS': '--xla_force_host_platform_device_count=8 --xla_cpu_use_xnnpack=true',
            'JAX_COMPILATION_CACHE_DIR': '/tmp/cache', 'PATH': '/bin'}
    env = xla_flags.environment({'XLA_FLAGS': '--xla_cpu_enable_fast_math=true', 'JAX_X': '1'}, base)
    assert env['XLA_FLAGS'] == '--xla_cpu_use_xnnpack=true --xla_cpu_enable_fast_math=true'
    assert 'JAX_COMPILATION_CACHE_DIR' not in env and env['JAX_X'] == '1' and env['PATH'] == '/bin'
    assert env['PYTHONPATH'].split(os.pathsep)[0] == cli.ROOT


# ---------------------------------------------------------------------------------------------- slow


@pytest.mark.slow
def test_accelerator_tiny_run_prints_throughput_and_mfu(tmp_path):
    """The steps compile and run on 2 CPU devices; FLOPs come from XLA's cost analysis; --data_dir without
    ImageNet is reported, not an error."""
    out = tmp_path / 'figures.json'
    # Two of the four models (fp32: XLA:CPU compiles bf16 programs more slowly), to stay within the test budget:
    # a classifier and the detection step, each with its own synthetic batch.
    proc = cli.run([sys.executable, os.path.join(BENCH, 'accelerator.py'), '--tiny', '--models=resnet50,fast_rcnn',
                    '--dtype=float32', '--peak_tflops=0.5', f'--json_out={out}',
                    f'--data_dir={tmp_path / "no_imagenet"}'], num_devices=2)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [r['model'] for r in report['results']] == ['resnet50', 'fast_rcnn']
    for r in report['results']:
        assert r['devices'] == 2 and r['global_batch'] == 2 * r['batch_per_device'] == 4
        assert r['flops_per_step_per_device'] > 0 and r['images_per_s'] > 0
        assert r['mfu'] == pytest.approx(r['flops_per_step_per_device'] / r['step_s'] / 0.5e12)
    lines = proc.stdout.splitlines()
    assert sum(line.strip().startswith('MFU: ') and 'FLOPs/step/device' in line for line in lines) == 2
    assert sum('images/s:' in line for line in lines) == 2
    assert any('goal: >= 7,200 images/s' in line for line in lines)
    assert any('input pipeline: skipped' in line for line in lines)


@pytest.mark.slow
def test_side_by_side_tiny_run(tmp_path, capsys):
    """A flax-style model file loaded from a checkout directory, timed in rounds; torch skipped when absent."""
    models = tmp_path / 'flax' / 'examples' / 'imagenet' / 'models.py'
    models.parent.mkdir(parents=True)
    # A stand-in with the constructor API of flax's example (not its network): BatchNorm over the axis 'batch'.
    models.write_text(
        'import flax.linen as nn\n'
        'import jax.numpy as jnp\n'
        'class ResNetBlock: pass\n'
        'class ResNet(nn.Module):\n'
        '    stage_sizes: tuple\n'
        '    block_cls: object\n'
        '    num_classes: int\n'
        '    num_filters: int = 64\n'
        '    dtype: object = jnp.float32\n'
        '    @nn.compact\n'
        '    def __call__(self, x, train=True):\n'
        '        x = nn.Conv(self.num_filters, (3, 3), (2, 2))(x)\n'
        '        x = nn.BatchNorm(use_running_average=not train, axis_name="batch")(x)\n'
        '        return nn.Dense(self.num_classes)(jnp.mean(nn.relu(x), axis=(1, 2)))\n')
    out = tmp_path / 'compare.json'
    # Our step's build is accelerator.compile_step (timed in the test above); this one compiles only the stand-in.
    report = side_by_side.main(['--tiny', '--contenders=flax,torch', f'--flax_examples_dir={tmp_path / "flax"}',
                                f'--json_out={out}'])
    text = capsys.readouterr().out
    result = report['results'][0]
    assert json.loads(out.read_text())['results'][0]['stats'] == result['stats']
    rates = result['images_per_s']['flax examples/imagenet']
    assert len(rates) == 2 and min(rates) > 0 and result['cold_start_s']['flax examples/imagenet'] > 0
    assert 'flax examples/imagenet' in text and 'images/s (median;' in text
    assert 'torch: skipped (PyTorch is not installed' in text or len(result['stats']) == 2
