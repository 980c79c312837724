"""Name-and-shape mapping between another framework's weights and a Flax model's variables.

A mapping is a list of :class:`Entry`: one target variable (``'params/conv1_layer/kernel'``,
``'batch_stats/bn1_layer/mean'``), the source tensor it comes from, and the layout change between them
(:class:`Layout`, invertible, so that the same list exports). :func:`convert` applies a mapping and checks it
completely: every target variable filled exactly once, every source tensor used exactly once (or explicitly
ignored, e.g. PyTorch's ``num_batches_tracked`` counters), every shape equal after the layout change. Anything else
is a :class:`WeightMismatchError` that lists the missing, unexpected and mis-shaped entries by name.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

Transform = Callable[[np.ndarray], np.ndarray]
SHOWN = 12  # entries listed per category in an error


@dataclasses.dataclass(frozen=True)
class Layout:
    """How a tensor is laid out in the source framework relative to ours: ``forward`` source -> ours, ``back``
    ours -> source (its exact inverse)."""

    name: str
    forward: Transform
    back: Transform


IDENTITY = Layout('identity', lambda x: x, lambda x: x)
# PyTorch conv kernels are (out, in/groups, kh, kw); flax's are (kh, kw, in/groups, out).
TORCH_CONV = Layout('torch conv OIHW -> HWIO', lambda w: w.transpose(2, 3, 1, 0), lambda w: w.transpose(3, 2, 0, 1))
# PyTorch linear weights are (out, in); flax Dense kernels (in, out).
TORCH_DENSE = Layout('torch linear (out, in) -> (in, out)', lambda w: w.T, lambda w: w.T)


def torch_dense_after_flatten(channels: int, height: int, width: int) -> Layout:
    """A linear layer reading a flattened feature map: PyTorch flattens NCHW maps in (c, h, w) order, we flatten
    NHWC maps in (h, w, c) order, so the input rows of the weight are permuted (AlexNet fc6, VGG fc6, the
    GoogLeNet auxiliary heads' first fc)."""
    c, h, w = channels, height, width

    def forward(weight: np.ndarray) -> np.ndarray:
        out = weight.shape[0]
        return weight.reshape(out, c, h, w).transpose(2, 3, 1, 0).reshape(h * w * c, out)

    def back(kernel: np.ndarray) -> np.ndarray:
        out = kernel.shape[-1]
        return kernel.reshape(h, w, c, out).transpose(3, 2, 0, 1).reshape(out, c * h * w)

    return Layout(f'torch linear after a ({c}, {h}, {w}) flatten -> (h*w*c, out)', forward, back)


@dataclasses.dataclass(frozen=True)
class Entry:
    """Target variable ``target`` ('<collection>/<module>/.../<name>') <- source tensor ``source``."""

    target: str
    source: str
    layout: Layout = IDENTITY


class WeightMismatchError(ValueError):
    """The weights do not fit the model: the message lists every mismatch by name."""


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
    """``{'params': {'a': {'kernel': x}}}`` -> ``{'params/a/kernel': x}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        path = f'{prefix}/{key}' if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten(value, path))
        else:
            flat[path] = value
    return flat


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`flatten`."""
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split('/')
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


def _listing(title: str, items: Sequence[str]) -> str:
    shown = '\n'.join(f'    {x}' for x in items[:SHOWN])
    more = f'\n    ... and {len(items) - SHOWN} more' if len(items) > SHOWN else ''
    return f'  {title} ({len(items)}):\n{shown}{more}'


def convert(tensors: Mapping[str, np.ndarray], entries: Iterable[Entry], target_shapes: Mapping[str, tuple],
            *, ignore: Sequence[str] = (), what: str = 'the weights') -> dict[str, np.ndarray]:
    """The flat target variables ``{target path: float32 array}`` made from the source ``tensors``.

    ``target_shapes``: every variable the model has (flat paths, as :func:`flatten` names them) and its shape.
    ``ignore``: regular expressions of source names that carry no weights (matched in full).
    """
    entries = list(entries)
    ignored = [re.compile(p) for p in ignore]
    problems: list[str] = []
    by_target: dict[str, list[str]] = {}
    by_source: dict[str, list[str]] = {}
    for e in entries:
        by_target.setdefault(e.target, []).append(e.source)
        by_source.setdefault(e.source, []).append(e.target)
    twice = [f'{s} -> {", ".join(t)}' for s, t in by_source.items() if len(t) > 1]
    twice += [f'{", ".join(s)} -> {t}' for t, s in by_target.items() if len(s) > 1]
    if twice:  # a defect of the mapping itself, not of the file
        problems.append(_listing('mapped more than once', twice))
    missing = [f'{e.source} (for {e.target})' for e in entries if e.source not in tensors]
    unexpected = [k for k in tensors if k not in by_source and not any(p.fullmatch(k) for p in ignored)]
    unmapped = [t for t in target_shapes if t not in by_target]
    unknown = [t for t in by_target if t not in target_shapes]
    out: dict[str, np.ndarray] = {}
    misshaped = []
    for e in entries:
        if e.source not in tensors or e.target not in target_shapes:
            continue
        value = e.layout.forward(np.asarray(tensors[e.source]))
        want = tuple(target_shapes[e.target])
        if value.shape != want:
            misshaped.append(f'{e.source} {tuple(np.shape(tensors[e.source]))} ({e.layout.name}: {value.shape}) '
                             f'-> {e.target} {want}')
            continue
        out[e.target] = np.ascontiguousarray(value, dtype=np.float32)
    for title, items in (('missing from the file', missing), ('in the file but not used', unexpected),
                         ('shape differs', misshaped), ('model variables with no source', unmapped),
                         ('mapped to variables the model lacks', unknown)):
        if items:
            problems.append(_listing(title, items))
    if problems:
        raise WeightMismatchError(f'{what} do not fit the model:\n' + '\n'.join(problems))
    return out


def export(variables: Mapping[str, np.ndarray], entries: Iterable[Entry]) -> dict[str, np.ndarray]:
    """The source tensors made from flat target ``variables`` (the inverse of :func:`convert`)."""
    out = {}
    for e in entries:
        if e.target not in variables:
            raise WeightMismatchError(f'cannot export: the model has no variable {e.target} (for {e.source})')
        out[e.source] = np.ascontiguousarray(e.layout.back(np.asarray(variables[e.target], np.float32)))
    return out
