"""Every sweep an experiment file declares (issue 15) expands to valid configs: each row parses exactly as
`python -m convnets.main` would parse it, reads results that its config writes, and its task's networks build
(`jax.eval_shape` of `Task.init_state`, nothing allocated) at the paper's input size. Per paper table, the rows
are checked for what they must differ in: VGG's configurations in Table 3's order, ResNet's plain nets having
exactly the parameters of their option-A counterparts, GoogLeNet's 1 / 10 / 144 test crops, ...

The parse-only checks are cheap (not slow); building every distinct network (~30 of them, ResNet-1202's 600
blocks the longest) is marked slow.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from convnets import sweeps
from convnets.train import stages

FILES = sweeps.files_with_sweeps()
DETECTORS = ('detection', 'faster_rcnn', 'rcnn')
DETECTION_INPUT = (600, 1000, 3)  # Fast / Faster R-CNN's scale (shorter side 600, longer at most 1000).


def _runs(file: str) -> list[tuple[str, sweeps.Sweep, sweeps.Run]]:
    return [(name, sweep, run) for name, sweep in sweeps.get_sweeps(file).items() for run in sweep.runs]


def _get(config, path: str):
    for part in path.split('.'):
        config = config[part]
    return config


def test_the_papers_declare_their_sweeps():
    """The classification papers, C3D, the detectors and the GANs declare sweeps (a regex broken by an edit must not
    make every other test here pass over nothing)."""
    names = {f.rsplit('/', 1)[-1] for f in FILES}
    assert {'alexnet.py', 'vgg16.py', 'googlenet.py', 'resnet34.py', 'resnet20_cifar10.py', 'c3d_ucf101.py'} <= names
    expected = {'alexnet.py': {'ablations'}, 'vgg16.py': {'table3', 'table4', 'table5'},
                'googlenet.py': {'table3', 'aux'}, 'resnet34.py': {'table2', 'table3'},
                'resnet20_cifar10.py': {'table6'}}
    for file in FILES:
        name = file.rsplit('/', 1)[-1]
        if name in expected:
            assert set(sweeps.get_sweeps(file)) == expected[name], file


def _writes(config, key: str) -> bool:
    """Whether results.json of a run of `config` will hold the section of column key `key`: an evaluator's
    results_key, or 'stages.<stage>.<results_key>' of a staged run (convnets.train.stages)."""
    section, *rest = key.split('.')
    if section == 'stages':
        if not stages.is_staged(config) or len(rest) < 2:
            return False
        per_stage = stages.configs(config, '/sweep-test')
        return rest[0] in per_stage and rest[1] in {ev.results_key for ev in per_stage[rest[0]].evals.values()}
    return section in {ev.results_key for ev in config.evals.values()}


@pytest.mark.parametrize('file', FILES)
def test_every_row_parses_and_reads_what_its_config_writes(file):
    readable: dict[tuple[str, str], bool] = {}
    for name, sweep, run in _runs(file):
        where = f'{file} sweep {name!r} row {run.label!r}'
        config = sweeps.run_config(file, run)  # Raises for an unknown field or a value of the wrong type.
        for key, value in run.overrides.items():
            got = _get(config, key)
            assert (tuple(got) if isinstance(value, tuple | list) else got) == (
                tuple(value) if isinstance(value, tuple | list) else value), (where, key)
        # A column the paper gives a number for must be written by this row; every column by some row.
        for column in sweep.columns:
            ok = _writes(config, column.key)
            readable[name, column.name] = readable.get((name, column.name), False) or ok
            assert ok or column.name not in run.paper, (where, column.key)
        if sweep.figure:
            labels = {r.label for r in sweep.runs}
            for title, rows in sweep.figure.panels:
                assert set(rows) <= labels, (file, name, title, sorted(set(rows) - labels))
            written = {ev.results_key for ev in config.evals.values()} | {'train'}
            for tag, _ in sweep.figure.tags:
                assert tag.split('/')[0] in written, (where, tag)
    assert all(readable.values()), (file, [k for k, ok in readable.items() if not ok])


# ---- What each paper table's rows must be ---------------------------------------------------------------------

def _configs(file: str, sweep: str) -> dict:
    return {run.label: sweeps.run_config(file, run) for run in sweeps.get_sweeps(file)[sweep].runs}


def test_alexnet_ablations_change_one_component_each_and_state_the_papers_differences():
    sweep = sweeps.get_sweeps('experiments/alexnet.py')['ablations']
    configs = _configs('experiments/alexnet.py', 'ablations')
    full = configs[sweep.baseline].model
    assert (full.towers, full.lrn, full.overlapping_pool) == (2, True, True)
    changed = {label: {k for k in ('towers', 'lrn', 'overlapping_pool') if c.model[k] != full[k]}
               for label, c in configs.items() if label != sweep.baseline}
    assert sorted(changed.values(), key=sorted) == [{'lrn'}, {'overlapping_pool'}, {'towers'}]
    paper = {r.label: (r.paper['top-1 err.'], r.paper['top-5 err.']) for r in sweep.runs}
    base = paper[sweep.baseline]
    diffs = sorted((round(p[0] - base[0], 1), round(p[1] - base[1], 1)) for p in paper.values())
    assert base == (40.7, 18.2) and diffs == [(0.0, 0.0), (0.4, 0.3), (1.4, 1.2), (1.7, 1.2)]
    assert 'differences' in sweep.notes


def test_vgg_tables_name_the_configurations_scales_and_crops():
    file = 'experiments/vgg16.py'
    t3 = _configs(file, 'table3')
    assert [c.model.name for c in t3.values()] == ['vgg11', 'vgg11_lrn', 'vgg13'] + [
        m for m in ('vgg16_c', 'vgg16', 'vgg19') for _ in range(3)]
    # Single scale: one Q (and its flip) per row; Q = 384 for the jittered S in [256, 512].
    for label, c in t3.items():
        assert len(c.evals.test.views) == 2 and c.evals.test.model_overrides.dense, label
        jittered = 'random_resize_short(256, 512)' in c.data.train_preprocess
        q = 384 if jittered else (384 if 'S=384' in label else 256)
        assert f'resize_short({q})' in c.evals.test.views[0], label
    # Multi-scale (sec. 4.2): Q = {S-32, S, S+32} for a fixed S, {256, 384, 512} for S in [256, 512].
    for label, c in _configs(file, 'table4').items():
        qs = [int(v.split('resize_short(')[1].split(')')[0]) for v in c.evals.test.views[::2]]
        s = 384 if 'S=384' in label else 256
        assert qs == ([256, 384, 512] if 'S=[256;512]' in label else [s - 32, s, s + 32]), label
    t5 = _configs(file, 'table5')
    keys = {label: tuple(c.evals.test.batch_keys) for label, c in t5.items()}
    assert keys['D, dense'] == () and keys['D, multi-crop'] == keys['E, multi-crop & dense'] == ('crops', 'label')
    assert all('random_resize_short(256, 512)' in c.data.train_preprocess for c in t5.values())


def test_googlenet_table3_rows_differ_only_in_their_test_crops():
    configs = _configs('experiments/googlenet.py', 'table3')
    assert list(configs) == ['1 crop', '10 crops', '144 crops']
    assert [len(c.evals.test.views) for c in configs.values()] == [1, 1, 4]
    assert [c.evals.test.batch_keys[0] for c in configs.values()] == ['image', 'crops', 'crops']
    models = {json.dumps(c.model.to_dict(), sort_keys=True) for c in configs.values()}
    assert len(models) == 1
    aux = _configs('experiments/googlenet.py', 'aux')
    assert [(c.model.aux_heads, c.aux_loss_weight) for c in aux.values()] == [(True, 0.3), (False, 0.0)]


def test_resnet_rows_use_the_papers_shortcuts_and_warm_up():
    t2 = _configs('experiments/resnet34.py', 'table2')
    assert {label: (c.model.name, c.model.shortcut) for label, c in t2.items() if 'ResNet' in label} == {
        'ResNet-18': ('resnet18', 'A'), 'ResNet-34': ('resnet34', 'A')}  # Sec. 4.1: option A in Table 2
    assert [tuple(c.model.stage_sizes) for c in t2.values()] == [(2, 2, 2, 2), (3, 4, 6, 3)] * 2
    t3 = _configs('experiments/resnet34.py', 'table3')
    assert [c.model.shortcut for label, c in t3.items() if label != 'plain-34'] == list('ABCBBB')
    t6 = _configs('experiments/resnet20_cifar10.py', 'table6')
    warm = {c.model.depth for c in t6.values() if c.optimizer.warmup_steps}
    assert warm == {110, 1202}
    assert all(c.optimizer.warmup_steps == 400 and c.optimizer.warmup_factor == 0.1
               and c.optimizer.warmup_kind == 'constant' for c in t6.values() if c.model.depth in warm)


# ---- Every distinct network builds (slow) ---------------------------------------------------------------------

_SPECS: dict[str, dict] = {}
_BUILT: dict[str, dict] = {}


def _batch_spec(config) -> dict:
    """Per-example shapes of the training batches: traced from the preprocessing (as `python -m launch.sweep`
    checks them), except for the detectors, which see Fast R-CNN's 600 x 1000 images."""
    import jax

    from launch import sweep_checks

    if config.task in DETECTORS:
        return {'image': jax.ShapeDtypeStruct(DETECTION_INPUT, np.float32)}
    key = json.dumps([config.data.name, config.data.train_preprocess, list(config.data.batch_keys)])
    if key not in _SPECS:
        _SPECS[key] = sweep_checks.traced_batch_spec(config.data)
    return _SPECS[key]


def _build(config) -> dict[str, int]:
    """Parameters per network of the config's task state (abstract); the evaluators' changed networks (VGG's
    dense evaluation) build too. Cached by task, architecture and input shapes."""
    import jax

    from convnets import tasks

    task = tasks.get(config.task)
    task.validate(config)
    spec = _batch_spec(config)
    overrides = {n: ev.model_overrides.to_dict() for n, ev in config.evals.items() if ev.get('model_overrides')}
    key = json.dumps([config.task, task.architecture(config), {k: v.shape for k, v in spec.items()}, overrides],
                     sort_keys=True, default=str)
    if key not in _BUILT:
        nets = task.build_nets(config)
        optimizers = task.make_optimizers(config, steps_per_epoch=1, total_steps=1)
        state = jax.eval_shape(lambda: task.init_state(config, nets, optimizers, spec))
        for name, changed in overrides.items():
            if changed and 'image' in spec:
                model = nets[config.evals[name].net].clone(**changed)
                x = jax.ShapeDtypeStruct((1, *spec['image'].shape), np.float32)
                logits, _ = jax.eval_shape(lambda x, m=model: m.init_with_output(jax.random.key(0), x, train=False), x)
                assert logits.shape == (1, config.model.num_classes), (name, changed, logits.shape)
        _BUILT[key] = {name: sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(net.params))
                       for name, net in state.nets.items()}
    return _BUILT[key]


def _alexnet_sizes(params: dict) -> None:
    # One tower adds exactly the weights grouping removes; LRN and the pooling change none.
    assert sorted(params['ablations'].values()) == [60_965_224] * 3 + [62_378_344]


def _vgg_sizes(params: dict) -> None:
    # A ... E: the sizes of the paper's Table 2 (133, 133, 133, 134, 138, 144 M; torchvision's exact counts).
    t3 = params['table3']
    assert [t3[f'{c} (S=256, Q=256)'] for c in ('A', 'A-LRN', 'B', 'C', 'D', 'E')] == [
        132_863_336, 132_863_336, 133_047_848, 133_638_952, 138_357_544, 143_667_240]


def _resnet_sizes(params: dict) -> None:
    # Table 2: option A adds no parameter to the plain nets; Table 3: B and C add projections.
    t2, t3 = params['table2'], params['table3']
    assert t2['plain-18'] == t2['ResNet-18'] and t2['plain-34'] == t2['ResNet-34']
    assert t3['plain-34'] == t3['ResNet-34 A'] < t3['ResNet-34 B'] < t3['ResNet-34 C']
    assert [t3[k] for k in ('ResNet-34 B', 'ResNet-50', 'ResNet-101', 'ResNet-152')] == [
        21_797_672, 25_557_032, 44_549_160, 60_192_808]


def _cifar_sizes(params: dict) -> None:
    # Table 6's parameter counts (0.27M ... 19.4M, in the row labels); plain nets as many as the ResNets (option A).
    t6 = params['table6']
    for label, count in t6.items():
        if label.startswith('ResNet'):
            stated = label.split('(')[1].rstrip('M)')
            assert f'{count / 1e6:.{len(stated.split(".")[1])}f}' == stated, (label, count)
    for depth in (20, 32, 44, 56):
        assert t6[f'plain-{depth}'] == next(n for k, n in t6.items() if k.startswith(f'ResNet-{depth} '))


def _googlenet_sizes(params: dict) -> None:
    # The auxiliary classifiers add 3,188,840 + 3,190,888 parameters (used in training only).
    assert list(params['aux'].values()) == [6_998_552 + 3_188_840 + 3_190_888, 6_998_552]
    assert len(set(params['table3'].values())) == 1  # Table 3's rows differ only in testing


PAPER_SIZES = {'experiments/alexnet.py': _alexnet_sizes, 'experiments/vgg16.py': _vgg_sizes,
               'experiments/resnet34.py': _resnet_sizes, 'experiments/resnet20_cifar10.py': _cifar_sizes,
               'experiments/googlenet.py': _googlenet_sizes}


@pytest.mark.slow
@pytest.mark.parametrize('file', FILES)
def test_every_rows_networks_build(file):
    """Every row (every stage of a staged row) builds; the paper tables' networks have the paper's sizes."""
    params: dict[str, dict[str, int]] = {}
    for name, _, run in _runs(file):
        config = sweeps.run_config(file, run)
        per_stage = list(stages.configs(config, '/sweep-test').values()) if stages.is_staged(config) else [config]
        for c in per_stage:
            counts = _build(c)
            assert counts and all(n > 0 for n in counts.values()), (file, name, run.label, counts)
        params.setdefault(name, {})[run.label] = next(iter(_build(per_stage[0]).values()))
    if file in PAPER_SIZES:
        PAPER_SIZES[file](params)


@pytest.mark.slow
def test_the_test_views_give_the_papers_crops_per_image():
    """Runs each row's test views on one 300x400 JPEG: GoogLeNet 1 / 10 / 144 crops, VGG 3 x 50 multi-crop."""
    import tensorflow as tf

    from convnets.data import ops

    jpeg = tf.io.encode_jpeg(tf.constant(np.random.default_rng(0).integers(0, 256, (300, 400, 3), np.uint8)))
    seed = tf.constant([1, 2], tf.int64)

    def crops(config) -> int:
        total = 0
        for view in config.evals.test.views:
            out = ops.parse(view)({'image': jpeg, 'label': tf.constant(0)}, seed)
            total += int(out['crops'].shape[0]) if 'crops' in out else 1
        return total

    google = _configs('experiments/googlenet.py', 'table3')
    assert [crops(c) for c in google.values()] == [1, 10, 144]
    vgg = _configs('experiments/vgg16.py', 'table5')
    assert [crops(vgg[f'D, {m}']) for m in ('dense', 'multi-crop', 'multi-crop & dense')] == [6, 150, 156]


def test_every_recipe_batch_divides_its_cluster_devices():
    """config.resources is what `launch.sweep --backend=slurm` asks for: every runnable recipe's global batches (and
    each stage's) divide nodes x accelerators_per_node, or its sweep would be refused before submission."""
    import importlib
    import os

    checked = 0
    for name in sorted(os.listdir('experiments')):
        if not name.endswith('.py') or name.startswith('_'):
            continue
        get_config = getattr(importlib.import_module(f'experiments.{name[:-3]}'), 'get_config', None)
        try:
            config = get_config()
        except TypeError:  # a shared module (get_config needs arguments)
            continue
        devices = config.resources.nodes * config.resources.accelerators_per_node
        per_stage = stages.configs(config, '/resources-test').values() if stages.is_staged(config) else [config]
        for c in per_stage:
            for batch in (c.batch_size, c.eval_batch_size or c.batch_size):
                assert batch % devices == 0, (name, batch, devices)
        checked += 1
    assert checked >= 50
