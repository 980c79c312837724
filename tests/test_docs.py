"""Every command and `--config.X=Y` switch the docs show works (issue 17).

Collected automatically from README.md, WORKSPACE.md and the docstrings of experiments/*.py, so new docs are
covered as they are written:
- a switch documented in an experiment's docstring must apply to that experiment; one in a shared recipe module
  (imagenet.py, resnet.py, vgg.py, resnet_cifar10.py) to every experiment built on it; one in README/WORKSPACE to
  every experiment whose config has the field (and at least one must). "Applies" means: the locked config, loaded
  with the override exactly as the command line does, accepts it and holds the documented value; the task's
  validation passes; and, for switches that change a network (model.*, evals.*.model_overrides.*), the network
  builds at the experiment's input size (`jax.eval_shape`, no compute).
- every `python ...` command is either run (the ones a CPU finishes quickly: the quickstart and its
  visualisation, the train-step benchmark, `--help` of the slow scripts) or is a template (placeholders such as
  DIR, <experiment>, ...) whose switches are checked as above.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import sys

import jax
import jax.numpy as jnp
import pytest
from absl import flags
from ml_collections import ConfigDict, config_flags

from convnets import tasks
from tests import cli

ROOT = cli.ROOT
EXPERIMENTS_DIR = os.path.join(ROOT, 'experiments')
SHARED = ('default', 'imagenet', 'vgg', 'resnet', 'resnet_cifar10', 'detection', 'rcnn')
SWITCH = re.compile(r"--config\.(?P<path>[A-Za-z_][\w.]*)(?:=(?P<value>'[^']*'|\"[^\"]*\"|\([^)]*\)|[^\s`]+))?")
COMMAND = re.compile(r'python (?:-m convnets\.main|-m convnets\.weights\.\w+|-m convnets\.data\.make_proposals'
                     r'|-m launch\.\w+|benchmarks/\S+\.py|launch/\S+\.py)[^\n`]*')
PLACEHOLDER = re.compile(r'\.\.\.|<\w+>|\bDIR\b|\bFILE\b|=NAME\b|\bVALUE\b|\bFIELD\b|\bHOST\b|:PORT\b|=N\b|=I\b')


def _experiments() -> list[str]:
    return sorted(f[:-3] for f in os.listdir(EXPERIMENTS_DIR)
                  if f.endswith('.py') and f[:-3] not in SHARED and f != '__init__.py')


def _source(name: str) -> str:
    with open(os.path.join(EXPERIMENTS_DIR, f'{name}.py')) as f:
        return f.read()


@functools.cache
def _bases(name: str) -> frozenset[str]:
    """The shared recipe modules an experiment is built on, transitively."""
    direct = set(re.findall(r'^from experiments import (.+)$', _source(name), re.MULTILINE))
    names = {n.strip() for line in direct for n in line.split(',')} & set(SHARED)
    return frozenset(names.union(*(_bases(n) for n in names)))


def _docs() -> dict[str, str]:
    """Document name -> text: README.md, WORKSPACE.md and every experiments/*.py docstring."""
    docs = {}
    for name in ('README.md', 'WORKSPACE.md'):
        with open(os.path.join(ROOT, name)) as f:
            docs[name] = f.read()
    for name in _experiments() + list(SHARED):
        docs[f'experiments/{name}.py'] = ast.get_docstring(ast.parse(_source(name))) or ''
    return docs


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    if value[:1] in '\'"' and value[-1:] == value[:1]:
        return value[1:-1]
    return value if value.startswith('(') else value.rstrip('.,;')


def _switches() -> list[tuple[str, str, str | None, tuple[str, ...]]]:
    """(document, path, value, experiments it is documented for) for every switch in the docs."""
    out = []
    for doc, text in _docs().items():
        if doc.startswith('experiments/'):
            module = doc.removeprefix('experiments/').removesuffix('.py')
            targets = tuple(e for e in _experiments() if e == module or module in _bases(e))
        else:
            targets = ()  # README / WORKSPACE: every experiment whose config has the field.
        for m in SWITCH.finditer(text):
            path, value = m['path'], _clean(m['value'])
            if path.isupper():
                continue  # The syntax itself: --config.FIELD=VALUE.
            if value is not None and PLACEHOLDER.fullmatch(value):
                value = None  # A template: the field must exist; its value is the reader's.
            out.append((doc, path, value, targets))
    return sorted(set(out), key=lambda t: (t[0], t[1], t[2] or '', t[3]))  # value None: a template


def _load(experiment: str, overrides: list[str]) -> ConfigDict:
    """The experiment's locked config with `--config.` overrides applied exactly as on the command line."""
    argv = ['prog', f'--config={os.path.join(EXPERIMENTS_DIR, experiment + ".py")}',
            *[f'--config.{o}' for o in overrides]]
    fv = flags.FlagValues()
    # The override flags are registered from the argv, as for sys.argv on the command line.
    config_flags.DEFINE_config_file('config', None, 'config', flag_values=fv, lock_config=True, sys_argv=argv)
    fv(argv)
    return fv.config


def _has(config: ConfigDict, path: str) -> bool:
    node = config
    for part in path.split('.'):
        if not isinstance(node, ConfigDict) or part not in node:
            return False
        node = node[part]
    return True


def _get(config: ConfigDict, path: str):
    node = config
    for part in path.split('.'):
        node = node[part]
    return node


def _same(got, documented: str) -> bool:
    if isinstance(got, str):
        return got == documented
    try:
        want = ast.literal_eval(documented)
    except (ValueError, SyntaxError):
        return str(got) == documented
    if isinstance(want, tuple | list):
        return list(got) == list(want)
    return got == want


def _input_shape(config: ConfigDict) -> tuple[int, ...]:
    from convnets.models import video_fusion

    if config.model.name.startswith('c3d') and config.data.name != 'convnets_moving_digits':
        return (16, 112, 112, 3)  # C3D's clips (Tran et al. sec. 3.1)
    fusion = {name: f for f, name in video_fusion.NAMES.items()}.get(config.model.name)
    if fusion and config.data.name != 'convnets_moving_digits':
        frames, size = video_fusion.PAPER_INPUT[fusion]
        return (frames, size, size, 3)
    if config.data.name in ('imagenet2012', 'imagenette'):
        size = config.model.get('input_size', 224)
        return (size, size, 3)
    return (32, 32, 3) if config.data.name == 'cifar10' else (32, 32, 1)


def _builds(config: ConfigDict) -> None:
    """The task's networks (and every evaluator's overridden network) build at the experiment's input size."""
    task = tasks.get(config.task)
    nets = task.build_nets(config)
    x = jnp.zeros((1, *_input_shape(config)), jnp.float32)
    models = list(nets.values()) + [nets[ev.net].clone(**ev.model_overrides.to_dict())
                                    for ev in config.evals.values() if ev.model_overrides.to_dict()]
    for model in models:
        variables = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), x, train=False))
        out = jax.eval_shape(lambda v, m=model: m.apply(v, x, train=False), variables)
        assert out.shape[0] == 1


SWITCHES = _switches()


def test_the_docs_name_switches_and_commands():
    """The collectors find what the docs hold (a broken regex must not pass every test vacuously)."""
    paths = {path for _, path, _, _ in SWITCHES}
    assert {'model.stride_on', 'model.towers', 'evals.test.model_overrides.dense', 'optimizer.learning_rate',
            'evals.val.every', 'num_train_steps', 'data.manual_dir'} <= paths
    assert len(_commands()) >= 30


@pytest.mark.parametrize('doc,path,value,targets', SWITCHES, ids=[f'{d}:{p}={v}' for d, p, v, _ in SWITCHES])
def test_documented_switch_applies(doc, path, value, targets):
    experiments = targets or tuple(e for e in _experiments() if _has(_load(e, []), path))
    assert experiments, f'{doc}: --config.{path} is not a field of any experiment config'
    for experiment in experiments:
        config = _load(experiment, [f'{path}={value}'] if value is not None else [])
        assert _has(config, path), f'{doc}: --config.{path} is not a field of experiments/{experiment}.py'
        if value is None:
            continue
        assert _same(_get(config, path), value), (experiment, path, _get(config, path), value)
        tasks.get(config.task).validate(config)


NETWORK_SWITCHES = sorted({(p, v, t) for _, p, v, t in SWITCHES
                           if v is not None and (p.startswith('model.') or '.model_overrides.' in p)})


@pytest.mark.slow
@pytest.mark.parametrize('path,value,targets', NETWORK_SWITCHES, ids=[f'{p}={v}' for p, v, _ in NETWORK_SWITCHES])
def test_documented_network_switch_builds(path, value, targets):
    """With the switch, every network it is documented for still builds (at full size, abstractly)."""
    experiments = targets or tuple(e for e in _experiments() if _has(_load(e, []), path))
    # Classifiers only: a detector built on an ImageNet recipe (R-CNN imports experiments/imagenet.py for its mean)
    # takes images and regions; tests/test_rcnn.py and test_detection_task.py build those networks.
    configs = [c for c in (_load(e, [f'{path}={value}']) for e in experiments) if c.task == 'classification']
    detectors = [c for c in (_load(e, [f'{path}={value}']) for e in experiments) if c.task == 'faster_rcnn']
    assert configs or detectors, (path, experiments)
    for config in configs:
        _builds(config)
    for config in detectors:  # Faster R-CNN anchor switches (Table 8): the RPN's 2k / 4k outputs follow k
        model = tasks.get(config.task).build_nets(config)['model']
        images, rois = jnp.zeros((1, 600, 1000, 3)), jnp.zeros((1, 1, 4))
        variables = jax.eval_shape(lambda m=model, x=images, r=rois: m.init(jax.random.key(0), x, r, method='init_all'))
        k = len(config.model.anchor_sizes) * len(config.model.anchor_ratios)
        assert variables['params']['rpn_bbox_pred_layer']['kernel'].shape[-1] == 4 * k


def test_the_stride_on_switch_gives_torchvision_v1_5():
    """README / ResNet docstrings: --config.model.stride_on=3x3 moves a downsampling bottleneck's stride from its
    first 1x1 conv (the paper's v1) to its 3x3 conv (torchvision's v1.5)."""
    from convnets.models.resnet import ResidualBlock

    v1, v15 = _load('resnet50', []), _load('resnet50', ['model.stride_on=3x3'])
    x = jnp.zeros((1, 8, 8, 32))
    sizes = {}
    for config in (v1, v15):
        block = ResidualBlock(features=8, bottleneck=True, strides=2, stride_on=config.model.stride_on)
        variables = jax.eval_shape(lambda b=block: b.init(jax.random.key(0), x))
        _, sown = jax.eval_shape(lambda v, b=block: b.apply(v, x, mutable=['intermediates']), variables)
        sizes[config.model.stride_on] = [sown['intermediates'][f'conv{i}'][0].shape[1] for i in (1, 2, 3)]
    assert sizes == {'1x1': [4, 4, 4], '3x3': [8, 4, 4]}
    _builds(v15)


# ---------------------------------------------------------------------------------------------------- commands


def _commands() -> list[tuple[str, str]]:
    return sorted({(doc, m.group(0).strip().rstrip('`').strip()) for doc, text in _docs().items()
                   for m in COMMAND.finditer(text)})


def _runnable(command: str) -> list[str] | None:
    """The argv a test runs for `command` (cheap variants where the documented one is long), or None for a
    template or a run that needs data this machine cannot download."""
    if PLACEHOLDER.search(command):
        return None
    argv = shlex.split(command)
    if argv[1:3] == ['-m', 'convnets.main']:
        config = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
        return argv if config == 'experiments/quickstart.py' else None  # None: prose, or data we cannot get.
    if argv[1] == 'benchmarks/train_step.py':
        return [*argv, '--steps=2']
    if argv[1] == '-m':  # The weight import / export: they need released files; their interface at least.
        return [*argv[:3], '--help']
    return [argv[0], argv[1], '--help']  # Long scripts (soak, launchers): their interface at least.


def test_documented_sweeps_exist():
    """Every `python -m launch.sweep` command names a sweep its experiment file declares, and the switches it
    gives every run (after `--`) exist."""
    from convnets import sweeps

    documented = [(doc, c) for doc, c in _commands()
                  if shlex.split(c)[1:3] == ['-m', 'launch.sweep'] and '--sweep=' in c and not PLACEHOLDER.search(c)]
    assert len(documented) >= 10
    for doc, command in documented:
        argv = shlex.split(command)
        options = dict(a[2:].split('=', 1) for a in argv if a.startswith('--') and '=' in a and '.' not in a[:9])
        assert options['sweep'] in sweeps.get_sweeps(options['config']), (doc, command)
        switches = [m['path'] for m in SWITCH.finditer(command) if not m['path'].isupper()]
        assert all(any(p == s[1] for s in SWITCHES) for p in switches), (doc, command)


def test_every_command_is_run_or_a_checked_template():
    for doc, command in _commands():
        argv = _runnable(command)
        if argv is None:
            switches = [m['path'] for m in SWITCH.finditer(command) if not m['path'].isupper()]
            assert all(any(p == s[1] for s in SWITCHES) for p in switches), (doc, command)
            config = re.search(r'--config=experiments/(\w+)\.py', command)
            assert config is None or config[1] in _experiments() + list(SHARED), (doc, command)


@pytest.mark.slow
def test_runnable_commands_run(tmp_path, digits_dir):
    """The quickstart, its visualisation, the benchmark and --help of the other scripts, as documented (with the
    test's data_dir and a fresh workdir)."""
    runnable = [(doc, c, _runnable(c)) for doc, c in _commands() if _runnable(c) is not None]
    assert any('--mode=visualize' in c for _, c, _ in runnable)
    # Training commands first: the visualisation reads their checkpoint.
    helps: dict[tuple[str, ...], object] = {}  # one --help run per script, however often it is documented
    for doc, command, argv in sorted(runnable, key=lambda r: '--mode=' in r[1]):
        argv = [sys.executable if a == 'python' else a for a in argv]
        argv = [f'--workdir={tmp_path / "run"}' if a.startswith('--workdir=') else a for a in argv]
        if 'convnets.main' in argv or 'benchmarks/train_step.py' in argv:
            argv.append(f'--config.data.data_dir={digits_dir}')
        if argv[-1] == '--help' and tuple(argv) in helps:
            proc = helps[tuple(argv)]
        else:
            proc = cli.run(argv, num_devices=1, timeout=600)
            if argv[-1] == '--help':
                helps[tuple(argv)] = proc
        if argv[1] == '-m' and argv[-1] == '--help':  # absl prints the flags and exits with status 1
            documented = {f for f in re.findall(r'\s--(\w+)', command) if f != 'config'}  # each must exist
            argparse_help = argv[2].startswith('launch.')  # the sweep runner and report: argparse, status 0
            status = 0 if argparse_help else 1
            assert proc.returncode == status and all(f'--{f}' in proc.stdout for f in documented), (
                doc, command, documented, proc.stderr[-2000:])
            continue
        assert proc.returncode == 0, (doc, command, proc.stderr[-2000:])
        if '--mode=visualize' in command:
            assert json.loads(proc.stdout.strip().splitlines()[-1])['files'] > 10
        elif 'convnets.main' in argv:
            assert json.loads(proc.stdout.strip().splitlines()[-1])['eval']['top1'] > 0.9
