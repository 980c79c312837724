"""Makes the torchvision parity fixtures, tests/fixtures/weights/torchvision_<name>.json.

Run where torch and torchvision are installed (JAX and convnets are not needed):

    /work/torchenv/bin/python tools/weight_fixtures_torchvision.py            # every network
    /work/torchenv/bin/python tools/weight_fixtures_torchvision.py resnet18 alexnet

For each network it builds torchvision's model with ``weights=None`` (1000 classes; googlenet with
``aux_logits=True, transform_input=False, init_weights=False``: the aux heads' tensors are part of the released
file, and the input transform is preprocessing on our side), fills its state dict with the seeded stand-in weights
of convnets/weights/seeded.py (seed 0, torch layout, ResNets with the ``roles`` of :func:`seeded_roles`;
loaded with ``strict=True``), runs it in eval mode on
``seeded.fixed_input(input_shape, seed=1)`` (NHWC, transposed to NCHW for torch) and writes the logits, the
ordered name -> shape manifest of the state dict, the parameter count, the release's URL and acc@1 and the
versions. tests/test_weights_torchvision.py regenerates the same tensors, imports them through
convnets.weights.importer and compares our logits (tests/weight_parity.py).

Input sizes: VGG and AlexNet at 224 (their fc6 reads the 7x7 / 6x6 map of a 224 image), ResNet at 64 (stages
16, 8, 4, 2) and GoogLeNet at 96 (maps 48, 24, 12, 6, 3: each ceil-mode 3x3/2 pool rounds up, 48 -> 24 where floor
rounding gives 23, and the aux heads' adaptive 4x4 pool on the 6x6 map has overlapping windows), batch 2
everywhere. GoogLeNet's aux heads do not run in eval mode, so its fixture also holds ``aux_logits``: each head
(aux1, aux2) applied in eval mode to the output of the Inception block it reads (4a, 4d), captured by a hook.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import numpy as np
import torch
import torchvision
from torchvision import models

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'tests', 'fixtures', 'weights')
WEIGHT_SEED, INPUT_SEED, BATCH = 0, 1, 2
RESNETS = ('resnet18', 'resnet34', 'resnet50', 'resnet101', 'resnet152')
VGGS = tuple(f'vgg{d}{bn}' for bn in ('', '_bn') for d in (11, 13, 16, 19))
NAMES = RESNETS + VGGS + ('googlenet', 'alexnet')


def _load_seeded():
    """convnets/weights/seeded.py by file path: the package's __init__ chain needs JAX, which is not here."""
    spec = importlib.util.spec_from_file_location('seeded', os.path.join(ROOT, 'convnets', 'weights', 'seeded.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


seeded = _load_seeded()


def input_size(name: str) -> int:
    if name.startswith('resnet'):
        return 64
    if name == 'googlenet':
        return 96
    return 224  # vgg*, alexnet


def build(name: str) -> torch.nn.Module:
    if name == 'googlenet':
        return models.googlenet(weights=None, num_classes=1000, aux_logits=True, transform_input=False,
                                init_weights=False)
    return models.get_model(name, weights=None, num_classes=1000)


def seeded_roles(model: torch.nn.Module) -> dict[str, str]:
    """Per-tensor overrides of seeded.py's roles. ResNets: the BN scale ending each residual branch (``bn2`` of a
    BasicBlock, ``bn3`` of a Bottleneck) is drawn like a shift, N(0, 0.1), so that each branch adds a small
    correction to its shortcut (as in a trained net) instead of doubling it: with U(0.5, 1.5) scales there, the
    logits grow with depth to ~1e8 (resnet101) and ~1e12 (resnet152), where a relative bound says less."""
    roles = {}
    for path, module in model.named_modules():
        if isinstance(module, (models.resnet.BasicBlock, models.resnet.Bottleneck)):
            last = 'bn3' if isinstance(module, models.resnet.Bottleneck) else 'bn2'
            roles[f'{path}.{last}.weight'] = 'shift'
    return roles


def fixture(name: str) -> dict:
    model = build(name)
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    roles = seeded_roles(model)
    tensors = seeded.seeded_tensors(shapes, 'torch', seed=WEIGHT_SEED, roles=roles)
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, strict=True)
    model.eval()
    size = input_size(name)
    shape = [BATCH, size, size, 3]
    x = torch.from_numpy(seeded.fixed_input(shape, seed=INPUT_SEED).transpose(0, 3, 1, 2).copy())
    features: dict[str, torch.Tensor] = {}
    if name == 'googlenet':  # keep the inputs of the aux heads (the outputs of inception4a and 4d)
        for block in ('inception4a', 'inception4d'):
            getattr(model, block).register_forward_hook(lambda m, i, out, block=block: features.__setitem__(block, out))
    with torch.no_grad():
        logits = model(x).numpy().astype(np.float32)
        aux = {head: getattr(model, head)(features[block]).numpy().astype(np.float32).tolist()
               for head, block in (('aux1', 'inception4a'), ('aux2', 'inception4d')) if block in features}
    weights = models.get_model_weights(name).IMAGENET1K_V1
    return {
        'framework': 'torchvision', 'name': name, 'layout': 'torch', 'shapes': shapes,
        'weight_seed': WEIGHT_SEED, 'input_seed': INPUT_SEED, 'input_shape': shape,
        **({'roles': roles} if roles else {}),
        'logits': [[float(v) for v in row] for row in logits],
        'num_params': int(sum(p.numel() for p in model.parameters())),
        'weights_url': weights.url, 'weights_acc1': weights.meta['_metrics']['ImageNet-1K']['acc@1'],
        'versions': {'torch': torch.__version__, 'torchvision': torchvision.__version__, 'numpy': np.__version__},
        'made_by': f'python tools/weight_fixtures_torchvision.py {name}',
    } | ({'aux_logits': aux} if aux else {})


def main(argv: list[str]) -> int:
    names = argv or list(NAMES)
    unknown = [n for n in names if n not in NAMES]
    if unknown:
        print(f'unknown network(s) {unknown}; choose from {", ".join(NAMES)}', file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    os.makedirs(OUT, exist_ok=True)
    for name in names:
        fix = fixture(name)
        path = os.path.join(OUT, f'torchvision_{name}.json')
        with open(path, 'w') as f:
            json.dump(fix, f, indent=1)
            f.write('\n')
        print(f'{path}: {len(fix["shapes"])} tensors, {fix["num_params"]:,} parameters, input {fix["input_shape"]}')
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
