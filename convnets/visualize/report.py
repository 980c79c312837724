"""`--mode=visualize`: pictures of what a trained model's layers respond to, from its latest checkpoint.

Writes under ``<workdir>/visualize/``:
  input_<i>.png                      the first eval images
  filters.png                        the first convolution's filters (`filters.filter_grid`)
  featuremaps_<layer>.png            every sown NHWC layer's maps on the first eval image
  occlusion_<i>_{image,activation,probability,class}.png
                                     the three occlusion maps of Zeiler and Fergus sec. 4.2, upsampled to the
                                     image size x ``scale`` (viridis; probability on a fixed 0..1 scale; class map
                                     in the tab10 palette, class c -> colour c mod 10)
  top9_<layer>_<feature>.png         the top-``top_k`` images of a feature map: receptive-field patches, and
                                     beside them the DeconvNet projections when `deconvnet.supported(model)`
  index.html                         every image with a caption, and the per-layer activation summary table
and the same images to TensorBoard (``visualize/<name>`` under ``<workdir>/tensorboard``, at the checkpoint's
step). The ``visualize`` section of the config sets what to draw (experiments/default.py). Clip models (5-D inputs
[N, T, H, W, C]) get clip_<i>.png, conv1_filters.png and featuremaps_<layer>.png instead (convnets.visualize.clips).
"""

from __future__ import annotations

import html
import importlib
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from absl import logging
from etils import epath
from ml_collections import ConfigDict

from convnets.data import pipeline
from convnets.train import loop
from convnets.visualize import filters, occlusion
from convnets.visualize import images as im

MIN_DISPLAY = 128  # Small images (e.g. 32x32 digits) are upsampled to at least this many pixels.


def _setting(config: ConfigDict, name: str, default: Any) -> Any:
    section = config.get('visualize') or ConfigDict()
    value = section.get(name, default)
    return default if value is None else value


def _eval_images(config: ConfigDict, num: int) -> tuple[np.ndarray, np.ndarray]:
    data = config.data.copy_and_resolve_references()
    split = _setting(config, 'split', '')
    if split:
        with data.unlocked():
            data.eval_split = split
    batch_size = max(1, min(num, config.get('eval_batch_size') or config.batch_size))
    xs, ys, have = [], [], 0
    for batch in pipeline.eval_batches(data, global_batch_size=batch_size):
        keep = np.asarray(batch['mask']) > 0
        xs.append(np.asarray(batch['image'])[keep])
        ys.append(np.asarray(batch['label'])[keep])
        have += int(keep.sum())
        if have >= num:
            break
    return np.concatenate(xs)[:num].astype(np.float32), np.concatenate(ys)[:num].astype(np.int64)


def _deconvnet(model):
    """The DeconvNet module when it exists and supports ``model``; otherwise (None, reason)."""
    try:
        deconvnet = importlib.import_module('convnets.visualize.deconvnet')
    except ImportError as e:
        return None, f'the DeconvNet module is not available ({e})'
    try:
        if deconvnet.supported(model):
            return deconvnet, ''
    except Exception as e:  # noqa: BLE001 - a report without projections beats no report.
        return None, f'the DeconvNet failed on this model ({e!r})'
    return None, f'the DeconvNet does not support {type(model).__name__}'


class _Writer:
    """Collects PNG files, their captions (by section) and TensorBoard image summaries."""

    def __init__(self, workdir: str, step: int):
        self.dir = os.path.join(workdir, 'visualize')
        epath.Path(self.dir).mkdir(parents=True, exist_ok=True)  # local or gs://
        self.step, self.files, self.sections = step, [], {}
        import tensorflow as tf
        self.tf = tf
        self.tb = tf.summary.create_file_writer(os.path.join(workdir, 'tensorboard'))

    def add(self, section: str, name: str, image: np.ndarray, caption: str) -> str:
        path = im.save_png(os.path.join(self.dir, f'{name}.png'), image)
        self.files.append(path)
        self.sections.setdefault(section, []).append((f'{name}.png', caption))
        with self.tb.as_default():
            self.tf.summary.image(f'visualize/{name}', np.asarray(image)[None], step=self.step)
        return path

    def close(self) -> None:
        self.tb.flush()
        self.tb.close()


def _scale_for(size: int) -> int:
    return max(1, -(-MIN_DISPLAY // max(size, 1)))


def _occlusion(w: _Writer, model, variables, x, y, config: ConfigDict, layer: str) -> None:
    patch = int(_setting(config, 'occlusion_patch', 8))
    stride = int(_setting(config, 'occlusion_stride', 2))
    fill = _setting(config, 'occlusion_fill', None)
    h, wd = x.shape[1:3]
    scale = _scale_for(max(h, wd))
    for i in range(min(int(_setting(config, 'occlusion_images', 2)), len(x))):
        m = occlusion.occlusion_maps(model, variables, x[i], int(y[i]), patch=patch, stride=stride,
                                     layer=layer or None, fill=fill)
        sec = 'Occlusion sensitivity'
        w.add(sec, f'occlusion_{i}_image', im.upsample(im.as_display(x[i]), scale),
              f'eval image {i}: label {int(y[i])}, predicted {m["unoccluded_class"]} '
              f'(p(label) = {m["unoccluded_probability"]:.3f}); grey square {patch}x{patch}, stride {stride}; '
              f'the maps below have one cell per square position (top-left corner at cell x stride), '
              f'stretched to the image size')

        def big(rgb):
            return im.resize_nearest(rgb, h * scale, wd * scale)
        if m['activation'] is not None:
            a = m['activation']
            w.add(sec, f'occlusion_{i}_activation', big(im.colormap(a)),
                  f'(a) total activation of {layer} feature map {m["feature"]} (strongest on the unoccluded '
                  f'image) vs. square position; range {a.min():.3g} .. {a.max():.3g} (dark -> yellow)')
        w.add(sec, f'occlusion_{i}_probability', big(im.colormap(m['probability'], 0.0, 1.0)),
              f'(b) probability of the correct class {int(y[i])} vs. square position (dark 0 -> yellow 1)')
        present = ', '.join(f'{c}: {tuple(int(v) for v in im.TAB10[c % 10])}' for c in np.unique(m['class']))
        w.add(sec, f'occlusion_{i}_class', big(im.class_colormap(m['class'])),
              f'(c) most probable class vs. square position (class: RGB colour) {present}')


def _top9(w: _Writer, model, variables, x, mask, acts, layers: Sequence[str], config: ConfigDict,
          deconvnet, deconv_layers: set[str]) -> None:
    k = int(_setting(config, 'top_k', 9))
    num_features = int(_setting(config, 'features', 4))
    for layer in layers:
        if layer not in acts or acts[layer].ndim != 4:
            logging.warning('visualize: skipping top-%d for %r (not a sown NHWC layer)', k, layer)
            continue
        field = filters.receptive_field(model, variables, x.shape[1:], layer)
        feats = list(range(min(num_features, acts[layer].shape[-1])))
        for f, hits in filters.top_activations(acts[layer], feats, k=k, mask=mask).items():
            idx = [i for i, *_ in hits]
            lo, hi = float(x.min()), float(x.max())
            patches = [im.to_uint8(filters.crop_field(x[i], field, yy, xx, fill=lo), lo, hi)
                       for i, yy, xx, _ in hits]
            patches = [p if p.shape[-1] in (1, 3) else im.as_display(p) for p in patches]
            scale = _scale_for(max(field['size']) * 3) if patches else 1
            panels = [im.tile([im.upsample(p, scale) for p in patches], cols=3, pad=2)]
            note = 'receptive-field patches'
            if deconvnet is not None and layer in deconv_layers:
                proj = np.asarray(deconvnet.project(model, variables, x[idx], layer, f, mode='max'))
                crops = [im.as_display(filters.crop_field(proj[j], field, yy, xx))
                         for j, (_, yy, xx, _) in enumerate(hits)]
                panels.append(im.tile([im.upsample(c, scale) for c in crops], cols=3, pad=2))
                note = 'left: receptive-field patches; right: DeconvNet projections (mode=max)'
            values = ', '.join(f'{v:.3g}' for *_, v in hits)
            w.add(f'Top-{k} activations', f'top9_{layer}_{f}', im.hstack(panels, gap=8),
                  f'{layer} feature map {f}: top {len(hits)} of {len(x)} images ({note}); receptive field '
                  f'{field["size"][0]}x{field["size"][1]}, stride {field["stride"][0]}; activations {values}')


def _summary_table(rows: list[dict[str, Any]]) -> str:
    head = ('layer', 'shape', 'mean', 'std', 'min', 'max', 'frac_zero', 'frac_saturated')
    out = ['<table border="1" cellpadding="3"><tr>' + ''.join(f'<th>{h}</th>' for h in head) + '</tr>']
    for r in rows:
        cells = [html.escape(r['layer']), 'x'.join(map(str, r['shape']))]
        cells += [f'{r[h]:.4g}' for h in head[2:]]
        out.append('<tr>' + ''.join(f'<td>{c}</td>' for c in cells) + '</tr>')
    return '\n'.join(out + ['</table>'])


def _write_index(w: _Writer, title: str, notes: list[str], table: str) -> str:
    parts = [f'<!DOCTYPE html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title></head><body>',
             f'<h1>{html.escape(title)}</h1>'] + [f'<p>{html.escape(n)}</p>' for n in notes]
    parts += ['<h2>Per-layer activation summary</h2>', table]
    for section, items in w.sections.items():
        parts.append(f'<h2>{html.escape(section)}</h2>')
        for src, caption in items:
            parts.append(f'<figure><img src="{html.escape(src)}" alt="{html.escape(src)}">'
                         f'<figcaption>{html.escape(caption)}</figcaption></figure>')
    parts.append('</body></html>')
    path = os.path.join(w.dir, 'index.html')
    epath.Path(path).write_text('\n'.join(parts))
    return path


def visualize(config: ConfigDict, workdir: str, *, devices: Sequence[jax.Device] | None = None) -> dict[str, Any]:
    """Draws the pictures set in ``config.visualize`` from the latest checkpoint in ``workdir``.

    Returns ``{'files': [PNG paths], 'index': path of index.html}``.
    """
    nets, state = loop.restore_for_inference(config, workdir, devices=devices or jax.local_devices()[:1])
    model, variables = nets['model'], jax.device_get(state.nets['model'].eval_variables)
    step = int(jax.device_get(state.step))
    num = int(_setting(config, 'num_images', 256))
    x, y = _eval_images(config, num)
    mask = np.ones(len(x), np.float32)
    w = _Writer(workdir, step)
    if x.ndim == 5:  # Clips [N, T, H, W, C] (C3D, the fusion nets): frame strips, 3D filters (visualize.clips).
        from convnets.visualize import clips
        notes, rows = clips.draw(w, config, model, variables, x, y)
        index = _write_index(w, f'What {config.model.name} learned', [f'Step {step}.'] + notes, _summary_table(rows))
        w.close()
        return {'files': list(w.files), 'index': index}
    apply_batch = 256
    parts = [filters.intermediates(model, variables, x[s:s + apply_batch]) for s in range(0, len(x), apply_batch)]
    logits = np.concatenate([p[0] for p in parts])
    acts = {k: np.concatenate([p[1][k] for p in parts]) for k in parts[0][1]}
    spatial = filters.spatial_layers(acts)
    accuracy = float(np.mean(np.argmax(logits, axis=-1) == y))

    for i in range(min(4, len(x))):
        w.add('Inputs', f'input_{i}', im.upsample(im.as_display(x[i]), _scale_for(max(x.shape[1:3]))),
              f'eval image {i}, label {int(y[i])}, predicted {int(np.argmax(logits[i]))}')
    name, kernel = filters.first_conv_kernel(variables, list(acts))
    grid = filters.filter_grid(kernel)
    w.add('Filters', 'filters', im.upsample(grid, _scale_for(max(grid.shape[:2]) // 2)),
          f'{name}: the {kernel.shape[-1]} first-layer filters ({kernel.shape[0]}x{kernel.shape[1]}x'
          f'{kernel.shape[2]}), each scaled to its own min (black) .. max (white)')
    for layer in spatial:
        maps = filters.feature_maps(acts[layer][0])
        w.add('Feature maps of eval image 0', f'featuremaps_{layer}', im.upsample(maps, _scale_for(maps.shape[0])),
              f'{layer}: {acts[layer].shape[-1]} maps of {acts[layer].shape[1]}x{acts[layer].shape[2]} '
              f'(each scaled to its own range; first 64 shown)')

    occ_layer = _setting(config, 'occlusion_layer', '') or (spatial[-1] if spatial else '')
    _occlusion(w, model, variables, x, y, config, occ_layer)

    deconvnet, reason = _deconvnet(model)
    deconv_layers: set[str] = set()
    if deconvnet is not None:
        deconv_layers = set(deconvnet.layer_names(model))
    layers = list(_setting(config, 'layers', ())) or spatial
    _top9(w, model, variables, x, mask, acts, layers, config, deconvnet, deconv_layers)

    notes = [f'{config.model.name} at step {step}; {len(x)} eval images (top-1 on them {accuracy:.3f}).']
    if deconvnet is None:
        notes.append(f'DeconvNet projections are not shown: {reason}. The top-k panels show only the image '
                     f'patches in the receptive fields.')
    index = _write_index(w, f'What {config.model.name} learned', notes, _summary_table(
        filters.activation_summary(acts)))
    w.close()
    logging.info('visualize: wrote %d images and %s', len(w.files), index)
    return {'files': list(w.files), 'index': index}
