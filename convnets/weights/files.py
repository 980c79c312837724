"""Reading and writing the weight files of other frameworks, as flat ``{name: numpy array}`` dicts.

- ``.safetensors`` (torchvision state dicts converted by the user or taken from a hub), read with the
  ``safetensors`` package's numpy loader: no torch needed.
- ``.npz`` numpy archives (``np.savez`` of a state dict), read with ``allow_pickle=False``.
- ``.pth`` / ``.pt`` (torchvision's own release files): only through ``torch.load(weights_only=True)`` when torch
  happens to be installed. Never an unrestricted unpickle: a ``.pth`` file can run code when unpickled.
- ``.h5`` (Keras applications): read with h5py, both the legacy Keras 2 layout of the released files (root
  attribute ``layer_names``, each layer group listing its ``weight_names`` in order) and the Keras 3
  ``.weights.h5`` layout (``layers/<name>/vars/<i>``). Keras weights are named ``<layer>/<i>``, the i-th weight of
  the layer in Keras' order (conv and dense: kernel, bias; BatchNormalization: gamma, beta, moving mean, moving
  variance), since that order, not the names inside the file, is what Keras itself loads by.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping

import numpy as np

READABLE = ('.safetensors', '.npz', '.pth', '.pt', '.h5')
WRITABLE = ('.safetensors', '.npz')


class WeightFileError(ValueError):
    """A weight file that cannot be read (format, missing reader), with what to do about it."""


def _suffix(path: str) -> str:
    name = os.path.basename(path).lower()
    return '.weights.h5' if name.endswith('.weights.h5') else os.path.splitext(name)[1]


def read(path: str) -> dict[str, np.ndarray]:
    """The tensors of a weight file, by name (see the module docstring for the formats)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f'No weight file at {path}.')
    suffix = _suffix(path)
    if suffix == '.safetensors':
        from safetensors.numpy import load_file
        return dict(load_file(path))
    if suffix == '.npz':
        with np.load(path, allow_pickle=False) as archive:
            return {k: archive[k] for k in archive.files}
    if suffix in ('.pth', '.pt'):
        return _read_torch(path)
    if suffix in ('.h5', '.weights.h5'):
        return _read_keras_h5(path)
    raise WeightFileError(f'{path}: unknown weight file type {suffix!r}; readable: {", ".join(READABLE)}.')


def _read_torch(path: str) -> dict[str, np.ndarray]:
    if importlib.util.find_spec('torch') is None:
        raise WeightFileError(
            f'{path} is a PyTorch pickle, which convnets reads only through torch.load(weights_only=True), and torch '
            f'is not installed here. Either install torch, or convert the file where torch is installed:\n'
            f'  python -c "import torch, safetensors.torch as s; '
            f's.save_file(torch.load(\'{os.path.basename(path)}\', weights_only=True), \'OUT.safetensors\')"\n'
            f'and pass the .safetensors file instead.')
    import torch
    state = torch.load(path, map_location='cpu', weights_only=True)  # never an unrestricted unpickle
    if not isinstance(state, Mapping):
        raise WeightFileError(f'{path} holds a {type(state).__name__}, not a state dict of tensors.')
    return {k: v.detach().cpu().numpy() for k, v in state.items()}


def _read_keras_h5(path: str) -> dict[str, np.ndarray]:
    import h5py
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, 'r') as f:
        root = f['model_weights'] if 'model_weights' in f else f  # a whole saved model keeps weights there
        if 'layer_names' in root.attrs:  # Keras 2 / legacy layout: the released application weights
            for layer in root.attrs['layer_names']:
                layer = layer.decode() if isinstance(layer, bytes) else str(layer)
                group = root[layer]
                for i, name in enumerate(group.attrs.get('weight_names', [])):
                    name = name.decode() if isinstance(name, bytes) else str(name)
                    out[f'{layer}/{i}'] = np.asarray(group[name])
        elif 'layers' in root:  # Keras 3 .weights.h5: layers/<layer>/vars/<i>
            for layer, group in root['layers'].items():
                variables = group.get('vars', {})
                for i in sorted(variables, key=int):
                    out[f'{layer}/{i}'] = np.asarray(variables[i])
        else:
            raise WeightFileError(f'{path}: not a Keras weights file (no layer_names attribute, no layers group).')
    return out


def write(path: str, tensors: Mapping[str, np.ndarray]) -> None:
    """Writes ``tensors`` as ``.safetensors`` or ``.npz`` (chosen by the suffix), atomically."""
    suffix = _suffix(path)
    if suffix not in WRITABLE:
        raise WeightFileError(f'{path}: can write {", ".join(WRITABLE)} files, not {suffix!r}.')
    arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f'{path}.tmp{suffix}'
    if suffix == '.safetensors':
        from safetensors.numpy import save_file
        save_file(arrays, tmp)
    else:
        np.savez(tmp, **arrays)
    os.replace(tmp, path)


def write_keras_h5(path: str, layers: Mapping[str, list[np.ndarray]]) -> None:
    """Writes Keras weights in the legacy layout of the released application files (for tests and fixtures):
    ``layers`` maps each layer name to its weights in Keras' order."""
    import h5py
    with h5py.File(path, 'w') as f:
        f.attrs['layer_names'] = [name.encode() for name in layers]
        for layer, weights in layers.items():
            group = f.create_group(layer)
            names = [f'{layer}/w{i}:0'.encode() for i in range(len(weights))]
            group.attrs['weight_names'] = names
            for name, value in zip(names, weights, strict=True):
                group.create_dataset(name.decode(), data=value)
