"""The report of a sweep: its paper table regenerated from the runs' results.json, the paper's numbers beside ours,
as Markdown (printed, and written) and CSV, and its figure from the runs' TensorBoard events as PNG.

  python -m launch.report ROOT [--out=DIR] [--format=md,csv,png] [--plot_tags=train/loss,eval_periodic/top1]

ROOT is the --workdir of `python -m launch.sweep`, which wrote ROOT/sweep.json (convnets.sweeps.manifest): the
sweep's title, source, columns, rows with the paper's numbers, and each row's workdir. Files go to DIR (default
ROOT/report): <sweep>.md, <sweep>.csv and, where the sweep declares a figure, <sweep>.png; `--plot_tags` also draws
those TensorBoard tags of every run (one panel per tag, values as logged) into <sweep>_curves.png, for any sweep.
Tags the loop writes: train/loss, train/top1, train/lr, ..., and <results key>/<metric> per evaluation
(eval_periodic/top1 during training, eval/top1 at the end).

The table has one row per run, in the sweep's order, and for each column our number beside the paper's:
  number     from the run's results.json (Column: error = 1 - value, x scale), rounded to as many decimals as the
             paper prints in that column (at least 1; 2 where the paper prints none)
  not run    no results.json, no checkpoints, no events: the run has not started
  running    checkpoints or events but no results.json yet: started and unfinished (rerunning the sweep resumes it)
  n/a        finished, but its results.json has no such number (the evaluation was not configured)
  —          the paper reports no number there
With a baseline row (Sweep.baseline), each column also shows each row's difference to the baseline, ours and the
paper's (AlexNet's ablations are reported as such differences). The CSV holds the same numbers (empty where there
is none) with the run's status, step and full workdir.
"""

from __future__ import annotations

import argparse
import dataclasses
import decimal
import io
import json
import math
import posixpath
import sys
from collections.abc import Sequence
from typing import Any

import pandas as pd
from etils import epath

from convnets import sweeps

FINISHED, RUNNING, NOT_RUN = 'finished', 'running', 'not run'
NO_NUMBER = 'n/a'  # Finished, but results.json lacks the column's key.
NO_PAPER = '—'  # The paper reports no number.
FORMATS = ('md', 'csv', 'png')


@dataclasses.dataclass(frozen=True)
class RunState:
    """One row's run as found on disk: status (FINISHED / RUNNING / NOT_RUN), the step it finished at (or its
    newest checkpoint's step while running), and its results.json."""
    label: str
    workdir: str
    status: str
    step: int | None = None
    results: dict[str, Any] | None = None


# ---- Reading the runs -------------------------------------------------------------------------------------------

def workdirs(record: dict, root: str) -> list[str]:
    """Each row's workdir. The manifest records them under the root the sweep was launched with; a sweep read from
    another place (copied from gs://, or a ROOT spelled differently) is looked up under the ROOT given here."""
    launched = str(record.get('root', '')).rstrip('/')
    found = []
    for row in record['runs']:
        workdir = row['workdir']
        if launched and workdir.startswith(launched + '/'):
            workdir = root.rstrip('/') + workdir[len(launched):]
        found.append(workdir)
    return found


def _newest_checkpoint(directory: epath.Path) -> int | None:
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]  # orbax: '<step>' once complete
    return max(steps) if steps else None


def run_state(label: str, workdir: str) -> RunState:
    """What `workdir` holds: results.json (finished), checkpoints or events (running), or nothing (not run).
    A staged run (convnets/train/stages.py) has its checkpoints in <workdir>/<stage>/checkpoints."""
    path = epath.Path(workdir)
    results_path = path / sweeps.RESULTS
    if results_path.exists():
        results = json.loads(results_path.read_text())
        return RunState(label, workdir, FINISHED, results.get('step'), results)
    if not path.exists():
        return RunState(label, workdir, NOT_RUN)
    if (path / 'checkpoints').exists():
        return RunState(label, workdir, RUNNING, _newest_checkpoint(path / 'checkpoints'))
    started = (path / 'tensorboard').exists() or any((p / 'checkpoints').exists() for p in path.iterdir()
                                                      if p.is_dir())
    return RunState(label, workdir, RUNNING if started else NOT_RUN)


def collect(root: str) -> tuple[dict, sweeps.Sweep, list[RunState]]:
    """(the manifest record, the Sweep, each row's RunState in order) of the sweep in `root`."""
    record, sweep = sweeps.read_manifest(root)
    states = [run_state(run.label, workdir) for run, workdir in zip(sweep.runs, workdirs(record, root), strict=True)]
    return record, sweep, states


# ---- The table ----------------------------------------------------------------------------------------------------

def decimals(sweep: sweeps.Sweep, column: sweeps.Column) -> int:
    """Decimals shown in `column`: as many as the paper's numbers there have (1 to 3), 2 if it has none."""
    places = [max(0, -decimal.Decimal(repr(float(run.paper[column.name]))).normalize().as_tuple().exponent)
              for run in sweep.runs if column.name in run.paper]
    return min(3, max(1, *places)) if places else 2


def _headers(sweep: sweeps.Sweep, column: sweeps.Column) -> list[str]:
    names = [f'{column.name} ours', f'{column.name} paper']
    return names + ([f'{column.name} Δ ours', f'{column.name} Δ paper'] if sweep.baseline else [])


def _round(value: float | None, places: int) -> float:
    return math.nan if value is None else round(value, places) + 0.0  # + 0.0: no '-0.00'


def table(sweep: sweeps.Sweep, states: Sequence[RunState]) -> pd.DataFrame:
    """The numbers: one row per run in order; per column ours and the paper's (and the differences to the baseline
    row), rounded as displayed, NaN where there is none; then status, step and workdir."""
    ours = {s.label: {c.name: c.value(s.results) if s.results else None for c in sweep.columns} for s in states}
    rows = []
    for run, state in zip(sweep.runs, states, strict=True):
        row: dict[str, Any] = {'run': run.label}
        for column in sweep.columns:
            places = decimals(sweep, column)
            mine, paper = ours[run.label][column.name], run.paper.get(column.name)
            headers = _headers(sweep, column)
            row[headers[0]], row[headers[1]] = _round(mine, places), _round(paper, places)
            if sweep.baseline:
                base = next(r for r in sweep.runs if r.label == sweep.baseline)
                base_mine, base_paper = ours[base.label][column.name], base.paper.get(column.name)
                row[headers[2]] = _round(None if mine is None or base_mine is None else mine - base_mine, places)
                row[headers[3]] = _round(None if paper is None or base_paper is None else paper - base_paper, places)
        row.update(status=state.status, step=state.step, workdir=state.workdir)
        rows.append(row)
    frame = pd.DataFrame(rows)
    frame['step'] = frame['step'].astype('Int64')
    return frame


def display(sweep: sweeps.Sweep, frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` as the Markdown shows it: numbers as text with the column's decimals (differences signed), our cell
    saying 'not run' / 'running' / 'n/a' where there is no number, '—' where the paper has none; the workdir's
    last component."""
    shown = pd.DataFrame({'run': frame['run']})
    for column in sweep.columns:
        places = decimals(sweep, column)
        headers = _headers(sweep, column)
        mine = [f'{v:.{places}f}' if not math.isnan(v) else (NO_NUMBER if status == FINISHED else status)
                for v, status in zip(frame[headers[0]], frame['status'], strict=True)]
        shown[headers[0]] = mine
        shown[headers[1]] = [NO_PAPER if math.isnan(v) else f'{v:.{places}f}' for v in frame[headers[1]]]
        for header in headers[2:]:
            shown[header] = [NO_PAPER if math.isnan(v) else f'{v:+.{places}f}' for v in frame[header]]
    shown['step'] = ['' if pd.isna(s) else str(s) for s in frame['step']]
    shown['workdir'] = [posixpath.basename(w.rstrip('/')) for w in frame['workdir']]
    return shown


def markdown(record: dict, sweep: sweeps.Sweep, frame: pd.DataFrame, figures: Sequence[tuple[str, str,
             list[str]]] = ()) -> str:
    """The report as Markdown: title, source, what ran, the table, how to read it, the sweep's notes, and the
    figures ((file name, title, notes) each)."""
    counts = frame['status'].value_counts()
    progress = f'{counts.get(FINISHED, 0)} of {len(frame)} runs finished'
    progress += ''.join(f', {counts[s]} {s}' for s in (RUNNING, NOT_RUN) if counts.get(s, 0))
    lines = [f'## {sweep.title}', '',
             f'Paper: {sweep.source}. Sweep `{record.get("sweep", "?")}` of `{record.get("config", "?")}` in '
             f'`{record.get("root", "?")}`: {progress}.']
    if record.get('extra'):
        lines.append('Every run also got `' + ' '.join(record['extra']) + '`.')
    shown = display(sweep, frame)
    align = ['left'] + ['right'] * (len(shown.columns) - 2) + ['left']
    lines += ['', shown.to_markdown(index=False, disable_numparse=True, colalign=align), '']
    legend = (f'"ours" is this sweep\'s number, "paper" the paper\'s ({NO_PAPER}: not in the paper); "{NOT_RUN}": not '
              f'started; "{RUNNING}": started, no results.json yet; "step": where it finished (running: newest '
              'checkpoint).')
    if sweep.baseline:
        legend += f' Δ: difference to the row {sweep.baseline!r}, ours to ours and the paper\'s to the paper\'s.'
    lines.append(legend)
    if sweep.notes:
        lines += ['', f'Notes: {sweep.notes}']
    for name, title, notes in figures:
        lines += ['', f'![{title}]({name})']
        lines += [f'- {note}' for note in notes]
    return '\n'.join(lines) + '\n'


def csv_text(frame: pd.DataFrame) -> str:
    """The numbers of `table` as CSV: one row per run, empty cells where there is no number."""
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False)
    return buffer.getvalue()


# ---- The command line ---------------------------------------------------------------------------------------------

def no_manifest_message(root: str) -> str:
    """What to do when ROOT has no sweep.json."""
    lines = [f'launch.report: {root} has no {sweeps.MANIFEST}, so it is not the root of a launched sweep. Run the '
             'sweep first (--dry_run shows what it would run):',
             f'  python -m launch.sweep --config=experiments/FILE.py --sweep=NAME --workdir={root}']
    parent = posixpath.dirname(root.rstrip('/'))
    if parent and (epath.Path(parent) / sweeps.MANIFEST).exists():
        lines.append(f'{root} looks like one run of a sweep: its report is `python -m launch.report {parent}`.')
    try:
        lines.append('Experiment files with sweeps: ' + ', '.join(sweeps.files_with_sweeps()))
    except OSError:  # No experiments directory to list (an installed package without it): the rest still helps.
        pass
    return '\n'.join(lines)


def figures(record: dict, sweep: sweeps.Sweep, dirs: Sequence[str], plot_tags: Sequence[str]):
    """[(file name, title, matplotlib Figure, notes)] of the declared figure and the --plot_tags one, read from the
    runs' workdirs `dirs` (in row order)."""
    from launch import report_figure  # matplotlib and tensorboard: only when a figure is drawn.

    wanted = []
    if sweep.figure is not None:
        wanted.append((f'{record["sweep"]}.png', sweep.figure, False))
    if plot_tags:
        wanted.append((f'{record["sweep"]}_curves.png', report_figure.ad_hoc_figure(
            sweep.title, [r.label for r in sweep.runs], plot_tags), True))  # one panel per tag
    by_label = {run.label: workdir for run, workdir in zip(sweep.runs, dirs, strict=True)}
    drawn = []
    for name, figure, tag_per_panel in wanted:
        curves, notes = report_figure.gather(figure, by_label)
        drawn.append((name, figure.title, report_figure.draw(figure, curves, tag_per_panel), notes))
    return drawn


def report(root: str, out: str | None = None, formats: Sequence[str] = FORMATS, plot_tags: Sequence[str] = (),
           stdout=None) -> str:
    """Writes the report of the sweep in `root` into `out` (default <root>/report) and prints its Markdown to
    `stdout` (default sys.stdout); returns the Markdown. Raises FileNotFoundError without <root>/sweep.json."""
    record, sweep, states = collect(root)
    frame = table(sweep, states)
    out_dir = epath.Path(out or posixpath.join(root.rstrip('/'), 'report'))
    out_dir.mkdir(parents=True, exist_ok=True)
    written, drawn = [], []
    if 'png' in formats and (sweep.figure is not None or plot_tags):
        from launch import report_figure

        for name, title, fig, notes in figures(record, sweep, [s.workdir for s in states], plot_tags):
            report_figure.save(fig, str(out_dir / name))
            drawn.append((name, title, notes))
            written.append(str(out_dir / name))
    text = markdown(record, sweep, frame, drawn)
    print(text, end='', file=stdout or sys.stdout)
    if 'md' in formats:
        (out_dir / f'{record["sweep"]}.md').write_text(text)
        written.append(str(out_dir / f'{record["sweep"]}.md'))
    if 'csv' in formats:
        (out_dir / f'{record["sweep"]}.csv').write_text(csv_text(frame))
        written.append(str(out_dir / f'{record["sweep"]}.csv'))
    for path in written:
        print(f'wrote {path}', file=sys.stderr)
    return text


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog='python -m launch.report', description=__doc__.split('\n\n')[0])
    parser.add_argument('root', help='the --workdir of `python -m launch.sweep` (holds sweep.json)')
    parser.add_argument('--out', default=None, help='where the files go (default ROOT/report)')
    parser.add_argument('--format', default=','.join(FORMATS), help='comma-separated, of: ' + ', '.join(FORMATS))
    parser.add_argument('--plot_tags', default='', help='TensorBoard tags to plot for every run, comma-separated '
                        '(train/loss, train/top1, eval_periodic/top1, eval/top1, ...), into <sweep>_curves.png')
    args = parser.parse_args(argv)
    args.format = [f.strip() for f in args.format.split(',') if f.strip()]
    if unknown := sorted(set(args.format) - set(FORMATS)):
        parser.error(f'--format: unknown {unknown}; use some of {", ".join(FORMATS)}')
    args.plot_tags = [t.strip() for t in args.plot_tags.split(',') if t.strip()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    if not (epath.Path(args.root) / sweeps.MANIFEST).exists():
        print(no_manifest_message(args.root), file=sys.stderr)
        return 2
    try:
        report(args.root, args.out, args.format, args.plot_tags)
    except (KeyError, ValueError) as e:  # json.JSONDecodeError is a ValueError; a bad Sweep raises ValueError
        print(f'launch.report: {args.root}/{sweeps.MANIFEST} or a results.json there could not be read ({e!r}); '
              'rerunning `python -m launch.sweep` with the same flags rewrites the manifest', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
