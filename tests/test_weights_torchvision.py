"""torchvision's ImageNet weights (convnets/weights/torchvision.py): parity of our logits with torchvision's on seeded
weights, the mapping's completeness for every network, export round trips and the mismatch errors.

The fixtures (tests/fixtures/weights/torchvision_<name>.json) are made by tools/weight_fixtures_torchvision.py with
torch; these tests need only numpy, safetensors and JAX.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models import googlenet
from convnets.weights import files, importer, mapping, seeded, sources
from convnets.weights.mapping import WeightMismatchError
from tests import weight_parity

NAMES = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152', 'vgg11', 'vgg13', 'vgg16', 'vgg19',
         'vgg11_bn', 'vgg13_bn', 'vgg16_bn', 'vgg19_bn', 'googlenet', 'alexnet')
FAST = ('resnet18',)  # the parity tests run without -m slow; the rest cost seconds to a minute each
BN_COUNTER = re.compile(r'.*num_batches_tracked')


def _param(name: str):
    return pytest.param(name, marks=() if name in FAST else pytest.mark.slow)


def test_every_torchvision_network_is_registered_with_its_release():
    assert sources.names('torchvision') == sorted(NAMES)
    for name in NAMES:
        source, fix = sources.get('torchvision', name), weight_parity.fixture(f'torchvision_{name}')
        # The release file, URL and acc@1 that the installed torchvision's *_Weights.IMAGENET1K_V1 declares.
        assert source.url == fix['weights_url'] == f'https://download.pytorch.org/models/{source.file_name}'
        assert source.top1 == pytest.approx(fix['weights_acc1'], abs=1e-9) and 'acc@1' in source.top1_reference
        assert source.layout == 'torch' and source.framework == 'torchvision'
        want = sources.TORCHVISION_GOOGLENET if name == 'googlenet' else sources.TORCHVISION
        assert source.preprocessing == want
        has_bn = any(BN_COUNTER.fullmatch(k) for k in fix['shapes'])
        assert source.ignore == ((r'.*num_batches_tracked',) if has_bn else ())
    assert sources.get('torchvision', 'resnet50').model == {'name': 'resnet50_v1_5'}  # torchvision's v1.5 strides


@pytest.mark.parametrize('name', NAMES)
def test_mapping_fits_every_tensor_and_variable(name):
    """Shape-only check of the whole mapping for every network (no weights, no compute): every tensor of
    torchvision's state dict is used once (or is a BN counter), every variable of our model filled once, and every
    shape agrees after the layout change."""
    source, fix = sources.get('torchvision', name), weight_parity.fixture(f'torchvision_{name}')
    entries = source.mapping()
    targets = importer.variable_shapes(importer.build_model(source), fix['input_shape'])
    used = [e.source for e in entries]
    assert len(used) == len(set(used))
    assert sorted(used) == sorted(k for k in fix['shapes'] if not BN_COUNTER.fullmatch(k))
    assert sorted(e.target for e in entries) == sorted(targets)
    for e in entries:
        out = jax.eval_shape(e.layout.forward, jax.ShapeDtypeStruct(tuple(fix['shapes'][e.source]), jnp.float32))
        assert out.shape == targets[e.target], (e.source, e.target)


@pytest.mark.parametrize('name', [_param(n) for n in NAMES])
def test_logits_match_torchvision(name, tmp_path):
    result = weight_parity.check(f'torchvision_{name}', str(tmp_path))
    assert result['relative'] <= weight_parity.RTOL, f'{name}: max |ours - torchvision| = {result["max_abs"]}'
    # googlenet: our model with aux heads vs torchvision's aux_logits=True (the released file's tensors).
    assert result['num_params'] == result['source_num_params']
    fix = weight_parity.fixture(f'torchvision_{name}')
    if 'aux_logits' in fix:  # googlenet's heads do not run in eval mode: compare them on their own
        _check_aux_heads(result, fix)


def _check_aux_heads(result: dict, fix: dict) -> None:
    """Each aux head of our googlenet, applied in eval mode to the block output it reads, vs torchvision's."""
    model, variables = importer.build_model(result['source']), result['variables']
    x = seeded.fixed_input(fix['input_shape'], fix['input_seed'])
    _, state = model.apply(variables, x, train=False, mutable=['intermediates'])
    for block, head in googlenet.AUX_AFTER.items():
        features = state['intermediates'][f'inception{block}'][0]
        layer = googlenet.param_name(head)
        head_vars = {'params': variables['params'][layer], 'batch_stats': variables['batch_stats'][layer]}
        ours = np.asarray(googlenet.AuxHead(1000, variant='torchvision').apply(head_vars, features, train=False))
        theirs = np.asarray(fix['aux_logits'][head], np.float32)
        assert np.max(np.abs(ours - theirs)) <= weight_parity.RTOL * np.max(np.abs(theirs)), head


@pytest.mark.parametrize('name', ['resnet18', pytest.param('googlenet', marks=pytest.mark.slow),
                                  pytest.param('alexnet', marks=pytest.mark.slow)])
def test_import_export_round_trip(name):
    """import -> export gives back the source tensors bit for bit, and re-importing gives the same variables."""
    source, fix = sources.get('torchvision', name), weight_parity.fixture(f'torchvision_{name}')
    tensors = seeded.seeded_tensors(fix['shapes'], 'torch', fix['weight_seed'], fix.get('roles'))
    model = importer.build_model(source)
    variables = importer.convert_tensors(source, tensors, model, fix['input_shape'])
    exported = importer.export_tensors(source, variables)
    assert sorted(exported) == sorted(tensors)
    for k, v in tensors.items():
        if not BN_COUNTER.fullmatch(k):
            assert exported[k].shape == v.shape and exported[k].dtype == v.dtype and np.array_equal(exported[k], v), k
    again = importer.convert_tensors(source, exported, model, fix['input_shape'])
    flat, flat_again = mapping.flatten(variables), mapping.flatten(again)
    assert sorted(flat) == sorted(flat_again)
    assert all(np.array_equal(flat[k], flat_again[k]) for k in flat)


def _damaged(tmp_path, change) -> str:
    fix = weight_parity.fixture('torchvision_resnet18')
    tensors = seeded.seeded_tensors(fix['shapes'], 'torch', fix['weight_seed'], fix.get('roles'))
    change(tensors)
    path = str(tmp_path / 'resnet18.safetensors')
    files.write(path, tensors)
    return path


@pytest.mark.parametrize('change, expected', [
    (lambda t: t.pop('layer2.0.downsample.0.weight'),
     ['missing from the file (1)', 'layer2.0.downsample.0.weight (for params/stage2_block1/proj_layer/kernel)']),
    (lambda t: t.update({'layer5.0.conv1.weight': np.zeros((8, 8, 3, 3), np.float32)}),
     ['in the file but not used (1)', 'layer5.0.conv1.weight']),
    (lambda t: t.update({'fc.weight': np.zeros((10, 512), np.float32)}),
     ['shape differs (1)', 'fc.weight (10, 512)', 'params/fc_layer/kernel (512, 1000)']),
], ids=['missing', 'extra', 'wrong_shape'])
def test_mismatched_file_is_refused_naming_each_tensor(tmp_path, change, expected):
    source = sources.get('torchvision', 'resnet18')
    with pytest.raises(WeightMismatchError) as err:
        importer.load_file(source, _damaged(tmp_path, change), input_shape=(1, 64, 64, 3))
    for text in expected:
        assert text in str(err.value)


def test_all_mismatches_are_listed_together(tmp_path):
    def change(t):
        del t['bn1.running_var'], t['layer4.1.conv2.weight']
        t['extra.weight'] = np.zeros(3, np.float32)
        t['conv1.weight'] = np.zeros((64, 3, 5, 5), np.float32)

    source = sources.get('torchvision', 'resnet18')
    with pytest.raises(WeightMismatchError) as err:
        importer.load_file(source, _damaged(tmp_path, change), input_shape=(1, 64, 64, 3))
    message = str(err.value)
    for name in ('bn1.running_var', 'layer4.1.conv2.weight', 'extra.weight', 'conv1.weight (64, 3, 5, 5)'):
        assert name in message
    assert 'num_batches_tracked' not in message  # BN counters are ignored, not reported
