"""Line plots of proposal recall (Faster R-CNN Fig. 4: recall vs IoU, recall vs number of proposals) as PNG.

Drawn with Pillow, which the project already writes its pictures with (`convnets.visualize.images.save_png`), so
that the evaluator needs no plotting library: axes with ticks and a light grid, one polyline per series (solid or
dashed), the legend under the plot. `recall_vs_iou` / `recall_vs_proposals` take the curves JSON that
`convnets.evaluate.proposal_recall` writes (one per source: this run, and e.g. a selective-search run to overlay).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convnets.visualize.images import save_png

WIDTH, HEIGHT = 720, 520
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 60  # margins around the axes box
LEGEND_ROW = 18  # the legend goes under the plot, one row per series (two columns for more than 3)
# Tableau-like colours, one per series.
COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
GRID = (225, 225, 225)


@dataclasses.dataclass
class Series:
    """One curve: points (x, y), a legend label, a colour and whether it is dashed."""

    label: str
    x: Sequence[float]
    y: Sequence[float]
    colour: tuple[int, int, int] = COLOURS[0]
    dashed: bool = False


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: a fixed bitmap font
        return ImageFont.load_default()


def _fmt(v: float) -> str:
    return f'{v:g}'


def line_plot(path: str, series: Sequence[Series], *, title: str, xlabel: str, ylabel: str,
              xlim: tuple[float, float], ylim: tuple[float, float] = (0.0, 1.0), xticks: Sequence[float] = (),
              yticks: Sequence[float] = (), xlog: bool = False) -> str:
    """Draws `series` on one pair of axes (x logarithmic if `xlog`) and writes the PNG `path`; returns `path`."""
    columns = 1 if len(series) <= 3 else 2
    legend_rows = -(-len(series) // columns)
    image = Image.new('RGB', (WIDTH, HEIGHT + LEGEND_ROW * legend_rows + 10), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    font, small = _font(15), _font(12)
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    fx = (lambda v: math.log10(v)) if xlog else (lambda v: v)
    lo, hi = fx(xlim[0]), fx(xlim[1])

    def px(x: float, y: float) -> tuple[float, float]:
        u = (fx(x) - lo) / (hi - lo) if hi > lo else 0.5
        v = (y - ylim[0]) / (ylim[1] - ylim[0])
        return x0 + u * (x1 - x0), y1 - v * (y1 - y0)

    for t in yticks:
        _, y = px(xlim[0], t)
        draw.line([(x0, y), (x1, y)], fill=GRID)
        draw.line([(x0 - 4, y), (x0, y)], fill=(0, 0, 0))
        draw.text((x0 - 7, y), _fmt(t), fill=(0, 0, 0), font=small, anchor='rm')
    for t in xticks:
        x, _ = px(t, ylim[0])
        draw.line([(x, y0), (x, y1)], fill=GRID)
        draw.line([(x, y1), (x, y1 + 4)], fill=(0, 0, 0))
        draw.text((x, y1 + 7), _fmt(t), fill=(0, 0, 0), font=small, anchor='mt')
    draw.rectangle([x0, y0, x1, y1], outline=(0, 0, 0))
    draw.text(((x0 + x1) / 2, 12), title, fill=(0, 0, 0), font=font, anchor='mt')
    draw.text(((x0 + x1) / 2, HEIGHT - 18), xlabel, fill=(0, 0, 0), font=font, anchor='mb')
    label = Image.new('RGB', (y1 - y0, 22), (255, 255, 255))
    ImageDraw.Draw(label).text(((y1 - y0) / 2, 11), ylabel, fill=(0, 0, 0), font=font, anchor='mm')
    image.paste(label.rotate(90, expand=True), (8, y0))
    for s in series:
        points = [px(x, y) for x, y in zip(s.x, s.y, strict=True) if (x > 0 or not xlog) and np.isfinite(y)]
        _polyline(draw, points, s.colour, s.dashed)
    for i, s in enumerate(series):  # the legend under the x label, column by column
        x = x0 + (i // legend_rows) * (x1 - x0) / columns
        y = HEIGHT + LEGEND_ROW * (i % legend_rows) + LEGEND_ROW / 2
        _polyline(draw, [(x, y), (x + 26, y)], s.colour, s.dashed)
        draw.text((x + 32, y), s.label, fill=(0, 0, 0), font=small, anchor='lm')
    return save_png(path, np.asarray(image))


def _polyline(draw: ImageDraw.ImageDraw, points: list[tuple[float, float]], colour, dashed: bool) -> None:
    if len(points) == 1:
        x, y = points[0]
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
    if not dashed:
        if len(points) > 1:
            draw.line(points, fill=colour, width=2, joint='curve')
        return
    dash, gap, carry = 8.0, 5.0, 0.0  # carry: how far into the current dash+gap period the pen is
    for (ax, ay), (bx, by) in zip(points, points[1:], strict=False):
        length = math.hypot(bx - ax, by - ay)
        t = 0.0
        while t < length:
            phase = carry % (dash + gap)
            step = min((dash - phase) if phase < dash else (dash + gap - phase), length - t)
            if phase < dash:
                u, v = t / length, (t + step) / length
                draw.line([(ax + u * (bx - ax), ay + u * (by - ay)), (ax + v * (bx - ax), ay + v * (by - ay))],
                          fill=colour, width=2)
            t += step
            carry += step


def _log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks between lo and hi."""
    ticks, decade = [], 10 ** math.floor(math.log10(max(lo, 1e-9)))
    while decade <= hi:
        ticks += [m * decade for m in (1, 2, 5) if lo <= m * decade <= hi]
        decade *= 10
    return ticks


def recall_vs_iou(path: str, curves: Sequence[dict[str, Any]]) -> str:
    """Fig. 4's panels on one pair of axes: recall against the IoU threshold, one line per (source, proposal
    count); the first source solid, the others (`compare`) dashed."""
    series, k = [], 0
    for i, c in enumerate(curves):
        for n, recalls in c['recall_vs_iou'].items():
            series.append(Series(f"{c['label']}: {n}", c['iou_thresholds'], recalls, COLOURS[k % len(COLOURS)],
                                 dashed=i > 0))
            k += 1
    ious = [t for c in curves for t in c['iou_thresholds']] or [0.5, 0.95]
    lo, hi = min(ious), max(ious)
    return line_plot(path, series, title='Recall vs IoU', xlabel='IoU', ylabel='Recall', xlim=(lo, hi),
                     xticks=[float(t) for t in np.round(np.arange(lo, hi + 1e-6, 0.1 if hi - lo > 0.3 else 0.05), 2)],
                     yticks=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])


def recall_vs_proposals(path: str, curves: Sequence[dict[str, Any]]) -> str:
    """Recall against the number of proposals per image (log axis), one line per (source, IoU threshold)."""
    series, k = [], 0
    for i, c in enumerate(curves):
        for t, recalls in c['recall_vs_proposals'].items():
            series.append(Series(f"{c['label']}: IoU {t}", c['num_proposals'], recalls,
                                 COLOURS[k % len(COLOURS)], dashed=i > 0))
            k += 1
    counts = [n for c in curves for n in c['num_proposals'] if n > 0] or [10, 2000]
    lo, hi = min(counts), max(max(counts), min(counts) * 2)
    return line_plot(path, series, title='Recall vs number of proposals', xlabel='Number of proposals',
                     ylabel='Recall', xlim=(lo, hi), xticks=_log_ticks(lo, hi), xlog=True,
                     yticks=[0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
