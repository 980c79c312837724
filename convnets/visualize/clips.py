"""`--mode=visualize` for clip models (inputs ``[B, T, H, W, C]``): C3D (Tran et al. 2015) and the fusion nets of
Karpathy et al. 2014. `convnets.visualize.report.visualize` hands 5-D inputs to :func:`draw`.

Writes under ``<workdir>/visualize/`` (and to TensorBoard / index.html through the report's writer):
  clip_<i>.png             the frames of eval clip i left to right (`frame_strip`), captioned with the label, the
                           predicted class and its probability (class names from the dataset's ``label``
                           ClassLabel when it has them, e.g. left/right/up/down for ``convnets_moving_digits``)
  conv1_filters.png        the first 3D convolution's filters (`filter_strips`): one strip per filter, its temporal
                           slices left to right, each filter scaled on its own. Tran et al. Fig. 4 / Karpathy et
                           al. Fig. 5 show first-layer filters this way: a filter whose slices differ over time
                           responds to a pattern that moves; one whose slices are alike responds to appearance.
  featuremaps_<layer>.png  every sown conv layer's first maps on clip 0 (`maps_over_time`): one row per map, its
                           time steps left to right, each map scaled on its own over all its time steps
and the per-layer activation summary (`filters.activation_summary`) of the first clips. Occlusion and top-k
panels (Zeiler and Fergus) are image-only and not drawn for clips.

Display of frames: the whole clip is scaled to uint8 at once (its min -> 0, max -> 255), so brightness is
comparable across frames; 1-channel clips are grey, 3-channel RGB, any other channel count the channel mean.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from convnets.visualize import filters
from convnets.visualize import images as im

MIN_DISPLAY = 128  # Frames are upsampled to at least this many pixels (32x32 moving digits: 4x).
MIN_SLICE = 32  # Filter slices are upsampled to at least this many pixels (C3D's 3x3: 11x; 11x11: 3x).
STRIPS_PER_COLUMN = 16  # conv1_filters.png: filters stacked 16 high, then a new column of strips.
MAX_MAPS = 8  # featuremaps_<layer>.png: the first 8 maps of each layer.
NUM_CLIPS = 4  # clip_<i>.png for the first 4 eval clips.
SUMMARY_CLIPS = 32  # Clips whose activations the summary table is computed on.
FRAME_PAD = 2  # White pixels between and around the frames / slices of a strip.
STRIP_GAP = 4  # White pixels between and around the strips of conv1_filters.png.


def _scale(size: int, target: int) -> int:
    return max(1, -(-target // max(size, 1)))


def frame_strip(clip: np.ndarray, scale: int = 1) -> np.ndarray:
    """A clip ``[T, H, W, C]`` as one uint8 row of its frames, each upsampled ``scale`` times.

    Shape ``(H * scale + 2 * FRAME_PAD, T * (W * scale + FRAME_PAD) + FRAME_PAD, 1 or 3)``; white between frames.
    """
    clip = np.asarray(clip)
    if clip.ndim != 4:
        raise ValueError(f'frame_strip expects a clip [T, H, W, C], got shape {clip.shape}')
    shown = im.as_display(clip)  # one scale for the whole clip; C not in (1, 3) -> the channel mean
    return im.tile([im.upsample(f, scale) for f in shown], cols=len(shown), pad=FRAME_PAD)


def filter_slices(kernel: np.ndarray, k: int) -> np.ndarray:
    """Filter ``k`` of a 3D conv kernel ``[kt, kh, kw, cin, cout]`` as uint8 slices ``[kt, kh, kw, 1 or 3]``.

    Scaled over all its slices together (its min -> 0, max -> 255), so that a slice that is weaker than the others
    looks weaker; ``cin`` 3 gives RGB, 1 grey, any other count the mean over input channels (as
    `filters.filter_grid` does for 2D kernels).
    """
    f = np.asarray(kernel, np.float64)[..., k]
    if f.shape[-1] not in (1, 3):
        f = f.mean(axis=-1, keepdims=True)
    return im.to_uint8(f)


def filter_strips(kernel: np.ndarray, scale: int = 1) -> np.ndarray:
    """The filters of a 3D conv kernel ``[kt, kh, kw, cin, cout]`` as uint8 strips (Tran et al. Fig. 4 style).

    Filter k is one strip: its ``kt`` slices (`filter_slices`, each upsampled ``scale`` times) left to right,
    FRAME_PAD white pixels apart (`frame_strip`'s layout). Strips are stacked top to bottom, STRIPS_PER_COLUMN to a
    column, columns left to right, STRIP_GAP white pixels apart and from the border (`images.tile`): strip k sits in
    row ``k % STRIPS_PER_COLUMN``, column ``k // STRIPS_PER_COLUMN``.
    """
    kernel = np.asarray(kernel)
    if kernel.ndim != 5:
        raise ValueError(f'filter_strips expects a 3D conv kernel [kt, kh, kw, cin, cout], got shape {kernel.shape}')
    kt, cout = kernel.shape[0], kernel.shape[-1]
    strips = [im.tile([im.upsample(s, scale) for s in filter_slices(kernel, k)], cols=kt, pad=FRAME_PAD)
              for k in range(cout)]
    rows = min(cout, STRIPS_PER_COLUMN)
    # images.tile fills row by row: order the strips so that they run down each column.
    cols = math.ceil(cout / rows)
    order = [strips[q * rows + r] if q * rows + r < cout else np.full_like(strips[0], 255)
             for r in range(rows) for q in range(cols)]
    return im.tile(order, cols=cols, pad=STRIP_GAP)


def temporal_variation(kernel: np.ndarray) -> np.ndarray:
    """Per filter of ``[kt, kh, kw, cin, cout]``: how much its slices differ over time, in [0, 1].

    ``|| w - mean_t w || / || w ||``: 0 for a filter whose slices are identical (appearance only: it responds to a
    static pattern the same in every frame), larger the more of its weight changes from slice to slice (it
    responds to a pattern that moves or changes); 0 for kt == 1.
    """
    w = np.asarray(kernel, np.float64)
    dev = w - w.mean(axis=0, keepdims=True)
    norm = np.sqrt(np.sum(w ** 2, axis=(0, 1, 2, 3)))
    return np.sqrt(np.sum(dev ** 2, axis=(0, 1, 2, 3))) / np.maximum(norm, 1e-12)


def _flatten(tree: Any, prefix: str = '') -> dict[str, Any]:
    out = {}
    for name, value in tree.items():
        key = f'{prefix}{name}'
        if isinstance(value, dict) or hasattr(value, 'items'):
            out.update(_flatten(value, key + '/'))
        else:
            out[key] = value[0] if isinstance(value, tuple) else value
    return out


def intermediates(model: nn.Module, variables: Any, x: np.ndarray, batch: int = SUMMARY_CLIPS
                  ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(logits of every clip, {layer: activation of the first ``batch`` clips}), layers in the order they were
    sown; submodules' layers as ``'<submodule>/<layer>'`` (the fusion nets sow their convs inside ``tower`` /
    ``fovea`` / ``context``).

    One jitted program for batches of ``min(len(x), batch)`` clips (the last one padded by repeating its last clip):
    eager op-by-op application compiles every primitive anew for each batch shape.
    """
    size = min(len(x), batch)
    names: list[str] = []

    def apply(v: Any, xb: jax.Array) -> tuple[jax.Array, list[jax.Array]]:
        logits, state = model.apply(v, xb, train=False, mutable=['intermediates'])
        flat = _flatten(state.get('intermediates', {}))
        names[:] = list(flat)  # at trace time: jit's outputs would come back with dict keys sorted
        return logits, list(flat.values())

    fn = jax.jit(apply)
    logits, acts = [], None
    for s in range(0, len(x), size):
        xb = x[s:s + size]
        k = len(xb)
        if k < size:
            xb = np.concatenate([xb, np.repeat(xb[-1:], size - k, axis=0)])
        lg, values = fn(variables, xb)
        logits.append(np.asarray(lg)[:k])
        if acts is None:
            acts = dict(zip(names, (np.asarray(a) for a in values), strict=True))
    return np.concatenate(logits), acts or {}


def first_conv3d_kernel(variables: Any, layer_order: list[str]) -> tuple[str, np.ndarray]:
    """(layer, kernel ``[kt, kh, kw, cin, cout]``) of the first 3D convolution.

    The first sown layer (``layer_order``, e.g. ``'conv1a'`` or ``'tower/conv1'``) whose ``<layer>_layer``
    parameters hold a 5-D kernel; otherwise the first 5-D ``kernel`` in the parameter tree.
    """
    params = variables['params']
    for name in layer_order:
        *path, leaf = name.split('/')
        sub = params
        for p in path + [f'{leaf}_layer']:
            sub = sub.get(p) if hasattr(sub, 'get') else None
        if sub is not None and 'kernel' in sub and np.ndim(sub['kernel']) == 5:
            return name, np.asarray(sub['kernel'])
    for path, value in jax.tree_util.tree_leaves_with_path(params):
        if getattr(path[-1], 'key', None) == 'kernel' and np.ndim(value) == 5:
            keys = [str(getattr(p, 'key', p)) for p in path[:-1]]
            return '/'.join(keys[:-1] + [keys[-1].removesuffix('_layer')]), np.asarray(value)
    raise ValueError('the clip model has no 3D convolution kernel [kt, kh, kw, cin, cout] in its parameters')


def maps_over_time(act: np.ndarray, max_maps: int = MAX_MAPS, scale: int = 1) -> np.ndarray:
    """One clip's maps of a layer ``[T', h, w, c]`` as a grid: row j = map j at each time step, left to right.

    Each map is scaled on its own over all its time steps (so change over time shows as change of brightness).
    """
    act = np.asarray(act)
    t = act.shape[0]
    tiles = []
    for j in range(min(act.shape[-1], max_maps)):
        m = im.to_uint8(act[..., j])
        tiles += [im.upsample(m[i][..., None], scale) for i in range(t)]
    return im.tile(tiles, cols=t, pad=FRAME_PAD)


def class_names(data: ConfigDict) -> list[str] | None:
    """The dataset's ``label`` ClassLabel names, or None when it has none (the report then shows class ids)."""
    from convnets.data import pipeline
    try:
        names = list(pipeline.get_builder(data).info.features['label'].names)
    except Exception as e:  # noqa: BLE001 - names are a nicety: ids still make a readable caption.
        logging.info('visualize: no class names for %s (%r); showing class ids', data.name, e)
        return None
    return names or None


def _name(names: list[str] | None, c: int) -> str:
    return f'{names[c]} ({c})' if names and 0 <= c < len(names) else str(c)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _filters_caption(name: str, kernel: np.ndarray, scale: int) -> str:
    kt, kh, kw, cin, cout = kernel.shape
    var = temporal_variation(kernel)
    head = (f'{name}: its {cout} filters of {kt}x{kh}x{kw}x{cin} (time x height x width x input channels), one strip '
            f'per filter ({STRIPS_PER_COLUMN} strips to a column), its {kt} temporal slices left to right (earliest '
            f'frame first), shown {scale}x; each filter scaled to its own min (black) .. max (white) over all its '
            f'slices')
    if cin not in (1, 3):
        head += f' (mean over its {cin} input channels)'
    if kt == 1:
        return head + ('. Temporal extent 1: these filters see one frame at a time and cannot respond to motion; '
                       'this model can only combine frames later (fc layers or averaged predictions).')
    order = np.argsort(-var, kind='stable')
    top = ', '.join(f'{int(k)}: {var[k]:.2f}' for k in order[:min(8, cout)])
    return head + (f'. Filters whose slices differ over time respond to motion (a pattern that moves between '
                   f'frames), filters with alike slices to appearance. Temporal variation |w - mean over time| / '
                   f'|w| per filter (0 = the same in every frame), largest first: {top}; '
                   f'{int(np.sum(var > 0.5))} of {cout} above 0.5 (a filter of independent random slices scores '
                   f'about sqrt((kt - 1) / kt) = {math.sqrt((kt - 1) / kt):.2f}; a filter that learned a static '
                   f'pattern, near 0).')


def draw(writer: Any, config: ConfigDict, model: nn.Module, variables: Any, x: np.ndarray,
         y: np.ndarray) -> tuple[list[str], list[dict[str, Any]]]:
    """Draws the clip pictures into ``writer`` (`report._Writer`); returns (notes for index.html, summary rows)."""
    if x.ndim != 5:
        raise ValueError(f'clips.draw expects clips [N, T, H, W, C], got shape {x.shape}')
    n, t, h, w, c = x.shape
    names = class_names(config.data)
    logits, acts = intermediates(model, variables, x)
    probs = _softmax(logits)
    pred = np.argmax(probs, axis=-1)
    scale = _scale(max(h, w), MIN_DISPLAY)
    for i in range(min(NUM_CLIPS, n)):
        verdict = 'correct' if pred[i] == y[i] else 'wrong'
        writer.add('Clips', f'clip_{i}', frame_strip(x[i], scale),
                   f'eval clip {i}: its {t} frames ({h}x{w}, {c} channel{"s" * (c != 1)}) left to right, shown '
                   f'{scale}x; label {_name(names, int(y[i]))}, predicted {_name(names, int(pred[i]))} with '
                   f'probability {probs[i, pred[i]]:.3f} ({verdict}; p(label) = {probs[i, y[i]]:.3f})')

    layer, kernel = first_conv3d_kernel(variables, list(acts))
    fscale = _scale(max(kernel.shape[1:3]), MIN_SLICE)
    writer.add('Filters', 'conv1_filters', filter_strips(kernel, fscale), _filters_caption(layer, kernel, fscale))

    # Feature maps of clip 0: conv layers only (pools repeat them), [B', T', h, w, c] with B' the clips times the
    # frames / towers the model folds into its batch, clip-major: clip 0's B' / B x T' rows are its time axis.
    clips_in_batch = min(n, SUMMARY_CLIPS)
    for name, a in acts.items():
        if a.ndim != 5 or 'conv' not in name.rsplit('/', 1)[-1]:
            continue
        seq = a.reshape((clips_in_batch, -1) + a.shape[2:])[0]
        mscale = _scale(max(seq.shape[1:3]), 24)
        writer.add('Feature maps of eval clip 0 over time', f'featuremaps_{name.replace("/", "_")}',
                   maps_over_time(seq, scale=mscale),
                   f'{name}: its first {min(MAX_MAPS, seq.shape[-1])} of {seq.shape[-1]} maps, one per row, at its '
                   f'{seq.shape[0]} time steps left to right ({seq.shape[1]}x{seq.shape[2]}, shown {mscale}x); each '
                   f'map scaled to its own range over all its time steps (first and last steps of a layer that pads '
                   f'time see zeros beyond the clip)')

    accuracy = float(np.mean(pred == y))
    notes = [f'{config.model.name}: {n} eval clips of {t}x{h}x{w}x{c} (top-1 on them {accuracy:.3f}).',
             'Occlusion and top-k panels are drawn for image models only.']
    return notes, filters.activation_summary(acts)
