"""A sweep's figure from its runs' TensorBoard events (e.g. ResNet Fig. 4: training and validation error of plain vs
residual nets against iterations), drawn with matplotlib into a PNG; used by launch/report.py.

The training loop writes its scalars with tf.summary into `<workdir>/tensorboard` (convnets/train/progress.py):
'train/<metric>' every log interval and '<results_key>/<metric>' per evaluation ('eval_periodic/top1',
'eval/top1'). tf.summary stores a scalar as a tensor (the 'tensors' data of TensorBoard's EventAccumulator), older
writers as a simple value ('scalars'); both are read. A resumed run appends a new event file and may write a step
again: the later write wins.

One panel per `Figure.panels` entry, one colour per run (the same run keeps its colour across panels), one line
style per tag. Lines of 'train/' tags are thin and the others bold, as Fig. 4 of He et al. 2015 draws training
(thin) and validation (bold) error.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from etils import epath
from matplotlib.figure import Figure as PlotFigure
from matplotlib.lines import Line2D

from convnets import sweeps

EVENTS_DIR = 'tensorboard'  # <workdir>/tensorboard: where convnets.train.progress.MetricWriter writes.
PANEL_INCHES = (5.0, 4.0)  # One panel's (width, height); at DPI the PNG is 500 x 400 pixels per panel.
DPI = 100
MAX_PANELS_PER_ROW = 3
TITLE_CHARS_PER_PANEL = 50  # the figure title wraps at about this many characters per panel width
FEW_POINTS = 20  # curves with fewer points get dots (a run logged once or twice would draw no visible line)

Curve = tuple[np.ndarray, np.ndarray]  # (steps, values), sorted by step


def read_scalars(workdir: str, tags: Sequence[str]) -> dict[str, Curve] | None:
    """{tag: (steps, values)} of the `tags` found in `<workdir>/tensorboard`; None when the run has no event file
    there (never started, or another layout such as a staged run's `<workdir>/<stage>/tensorboard`)."""
    directory = epath.Path(workdir) / EVENTS_DIR
    if not directory.exists() or not any('tfevents' in p.name for p in directory.iterdir()):
        return None
    # Imported here: tensorboard loads TensorFlow (for gs:// and local file access), seconds that a report without
    # a figure does not need.
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.util import tensor_util

    # size_guidance 0 keeps every event; the default keeps a reservoir sample of 10 tensors per tag.
    accumulator = event_accumulator.EventAccumulator(
        str(directory), size_guidance={event_accumulator.TENSORS: 0, event_accumulator.SCALARS: 0})
    accumulator.Reload()
    available = accumulator.Tags()
    curves = {}
    for tag in tags:
        if tag in available.get(event_accumulator.TENSORS, ()):
            events = [(e.wall_time, e.step, float(tensor_util.make_ndarray(e.tensor_proto)))
                      for e in accumulator.Tensors(tag)]
        elif tag in available.get(event_accumulator.SCALARS, ()):
            events = [(e.wall_time, e.step, float(e.value)) for e in accumulator.Scalars(tag)]
        else:
            continue
        by_step = {step: value for _, step, value in sorted(events)}  # In time order: a rewritten step keeps its last
        steps = np.array(sorted(by_step), dtype=np.int64)
        curves[tag] = steps, np.array([by_step[s] for s in steps], dtype=np.float64)
    return curves


def ad_hoc_figure(title: str, labels: Sequence[str], tags: Sequence[str]) -> sweeps.Figure:
    """One panel per tag (its values as written, no error transform), every run in each: `--plot_tags` of
    launch.report. Draw it with `draw(..., tag_per_panel=True)`."""
    return sweeps.Figure(title=title, panels=tuple((tag, tuple(labels)) for tag in tags),
                         tags=tuple((tag, '-') for tag in tags), y_label='value', error=False, scale=1.0)


def draw(figure: sweeps.Figure, curves: Mapping[str, Mapping[str, Curve]], tag_per_panel: bool = False
         ) -> PlotFigure:
    """The matplotlib Figure of `figure` from `curves` ({run label: {tag: (steps, values)}}); runs absent from
    `curves` are left out of their panels. Every panel draws every tag of the figure, or with `tag_per_panel` the
    i-th panel the i-th tag. Drawn without pyplot (no display, no global state)."""
    labels = list(dict.fromkeys(label for _, rows in figure.panels for label in rows))
    colours = {label: f'C{i % 10}' for i, label in enumerate(labels)}
    n = len(figure.panels)
    cols = min(n, MAX_PANELS_PER_ROW)
    rows = math.ceil(n / cols)
    fig = PlotFigure(figsize=(PANEL_INCHES[0] * cols, PANEL_INCHES[1] * rows), dpi=DPI, layout='constrained')
    fig.suptitle(textwrap.fill(figure.title, TITLE_CHARS_PER_PANEL * cols))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for i, (ax, (panel, panel_labels)) in enumerate(zip(axes, figure.panels, strict=False)):
        tags = figure.tags[i:i + 1] if tag_per_panel else figure.tags
        ax.set_title(panel)
        ax.set_xlabel('iterations')
        ax.set_ylabel(figure.y_label)
        drawn = []
        for label in panel_labels:
            for tag, style in tags:
                if tag not in curves.get(label, {}):
                    continue
                steps, values = curves[label][tag]
                y = (1.0 - values) * figure.scale if figure.error else values * figure.scale
                ax.plot(steps, y, linestyle=style, color=colours[label],
                        linewidth=1.0 if tag.startswith('train/') else 2.0,
                        marker='.' if len(steps) < FEW_POINTS else None)  # a point or two: visible as dots
                if label not in drawn:
                    drawn.append(label)
        # Legend: colour = run, style = tag (proxy handles: they are not lines of the axes).
        handles = [Line2D([], [], color=colours[label], label=label) for label in drawn]
        if len(tags) > 1:
            handles += [Line2D([], [], color='black', linestyle=style, label=tag,
                               linewidth=1.0 if tag.startswith('train/') else 2.0) for tag, style in tags]
        if drawn:
            ax.legend(handles=handles, fontsize='small')
        else:
            ax.text(0.5, 0.5, 'nothing logged yet', transform=ax.transAxes, ha='center', va='center')
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig


def save(fig: PlotFigure, path: str) -> None:
    """Writes `fig` as PNG at `path` (local or gs://)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=DPI)
    epath.Path(path).write_bytes(buffer.getvalue())


def gather(figure: sweeps.Figure, workdirs: Mapping[str, str]) -> tuple[dict[str, dict[str, Curve]], list[str]]:
    """The curves of every run the figure names ({label: {tag: curve}}), read from `workdirs` ({label: workdir}),
    and notes on the runs left out (no events, or none of the figure's tags)."""
    tags = [tag for tag, _ in figure.tags]
    curves, notes = {}, []
    for label in dict.fromkeys(label for _, rows in figure.panels for label in rows):
        if label not in workdirs:
            notes.append(f'{label}: not a row of this sweep (left out)')
            continue
        found = read_scalars(workdirs[label], tags)
        if found is None:
            notes.append(f'{label}: no TensorBoard events in {workdirs[label]}/{EVENTS_DIR} (left out)')
        elif not found:
            notes.append(f'{label}: none of the tags {tags} in its TensorBoard events (left out)')
        else:
            curves[label] = found
            if missing := [t for t in tags if t not in found]:
                notes.append(f'{label}: no {", ".join(missing)} in its TensorBoard events')
    return curves, notes
