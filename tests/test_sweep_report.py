"""launch/report.py: a sweep's table from hand-made results.json files (ours beside the paper's, 'not run',
'running', differences to a baseline row), its CSV and Markdown files, its figure from TensorBoard events, and the
message for a ROOT without sweep.json. No training: the runs' workdirs are written by hand."""

import json
import os
import shutil
import struct
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from convnets import sweeps
from launch import report, report_figure
from tests import cli

TOP1 = sweeps.Column('top-1 err.', 'eval.top1', error=True)
TOP5 = sweeps.Column('top-5 err.', 'eval.top5', error=True)


def _ablation_sweep() -> sweeps.Sweep:
    """AlexNet-like: a full net (the baseline) and three ablations; the paper prints one decimal."""
    return sweeps.Sweep(
        title='Top-1 / top-5 error (%)', source='Krizhevsky et al. 2012, sec. 3', columns=(TOP1, TOP5),
        runs=(sweeps.Run('full', {}, paper={'top-1 err.': 40.7, 'top-5 err.': 18.2}),
              sweeps.Run('no LRN', {'model.lrn': False}, paper={'top-1 err.': 42.1, 'top-5 err.': 19.4}),
              sweeps.Run('one tower', {'model.towers': 1}, paper={'top-1 err.': 42.4}),
              sweeps.Run('no overlap', {'model.overlapping_pool': False})),
        baseline='full', notes='Made-up numbers.')


def _resnet_sweep() -> sweeps.Sweep:
    """ResNet Table 2 / Fig. 4-like: four rows, two panels, training (thin) and validation (bold) error."""
    labels = ('plain-18', 'plain-34', 'ResNet-18', 'ResNet-34')
    paper = (27.94, 28.54, 27.88, 25.03)
    return sweeps.Sweep(
        title='Top-1 error (%)', source='He et al. 2015, Table 2', columns=(TOP1,),
        runs=tuple(sweeps.Run(label, {'model.name': label.lower().replace('-', '')}, paper={'top-1 err.': p})
                   for label, p in zip(labels, paper, strict=True)),
        figure=sweeps.Figure('Fig. 4', (('plain', labels[:2]), ('ResNet', labels[2:])),
                             (('train/top1', ':'), ('eval_periodic/top1', '-'))))


def _launch(root: str, sweep: sweeps.Sweep, name: str = 'ablations') -> list[str]:
    """Writes the manifest as launch/sweep.py does; returns the rows' workdirs."""
    record = sweeps.manifest('experiments/alexnet.py', name, sweep, root, ['--config.num_train_steps=3'])
    sweeps.write_manifest(root, record)
    return [row['workdir'] for row in record['runs']]


def _finish(workdir: str, step: int, **evals) -> None:
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, 'results.json'), 'w') as f:
        json.dump({'step': step, 'eval': evals, 'config': {}}, f)


def _ablation_root(tmp_path) -> str:
    """full and no LRN finished (no LRN without top-5), one tower running (a checkpoint at step 200), no overlap
    not started."""
    root = str(tmp_path / 'sweep')
    full, no_lrn, one_tower, _ = _launch(root, _ablation_sweep())
    _finish(full, 300, top1=0.6012, top5=0.8104)  # errors 39.88 / 18.96 -> 39.9 / 19.0
    _finish(no_lrn, 300, top1=0.5871)  # 41.29 -> 41.3; its results have no top5
    os.makedirs(os.path.join(one_tower, 'checkpoints', '200'))
    os.makedirs(os.path.join(one_tower, 'checkpoints', '100'))
    return root


def test_table_rows_ours_paper_status_and_baseline_differences(tmp_path):
    _, sweep, states = report.collect(_ablation_root(tmp_path))
    frame = report.table(sweep, states)
    assert list(frame['run']) == ['full', 'no LRN', 'one tower', 'no overlap']
    assert list(frame['status']) == ['finished', 'finished', 'running', 'not run']
    assert frame['step'].tolist()[:3] == [300, 300, 200] and pd.isna(frame['step'][3])
    # error = 1 - accuracy, x100, rounded to the paper's one decimal.
    np.testing.assert_array_equal(frame['top-1 err. ours'], [39.9, 41.3, np.nan, np.nan])
    np.testing.assert_array_equal(frame['top-5 err. ours'], [19.0, np.nan, np.nan, np.nan])
    np.testing.assert_array_equal(frame['top-1 err. paper'], [40.7, 42.1, 42.4, np.nan])
    # Differences to the 'full' row: ours 41.29 - 39.88 = 1.41 -> 1.4; the paper's 42.1 - 40.7 = 1.4.
    np.testing.assert_array_equal(frame['top-1 err. Δ ours'], [0.0, 1.4, np.nan, np.nan])
    np.testing.assert_array_equal(frame['top-1 err. Δ paper'], [0.0, 1.4, 1.7, np.nan])
    np.testing.assert_array_equal(frame['top-5 err. Δ paper'], [0.0, 1.2, np.nan, np.nan])

    shown = report.display(sweep, frame).set_index('run')
    assert shown.loc['full', 'top-1 err. ours'] == '39.9' and shown.loc['full', 'top-5 err. ours'] == '19.0'
    assert shown.loc['no LRN', 'top-1 err. Δ ours'] == '+1.4' and shown.loc['full', 'top-1 err. Δ ours'] == '+0.0'
    assert shown.loc['no LRN', 'top-5 err. ours'] == 'n/a'  # finished, but no such number in its results.json
    assert shown.loc['one tower', 'top-1 err. ours'] == 'running' and shown.loc['one tower', 'step'] == '200'
    assert shown.loc['no overlap', 'top-1 err. ours'] == 'not run'
    assert shown.loc['no overlap', 'top-1 err. paper'] == '—' and shown.loc['one tower', 'top-5 err. paper'] == '—'
    assert shown.loc['no LRN', 'workdir'] == 'lrn=False'


def test_run_states_of_staged_started_and_moved_runs(tmp_path):
    os.makedirs(tmp_path / 'staged' / 'rpn1' / 'checkpoints' / '40')  # a staged run: <workdir>/<stage>/checkpoints
    os.makedirs(tmp_path / 'events' / 'tensorboard')  # started, no checkpoint yet
    os.makedirs(tmp_path / 'empty')
    states = {name: report.run_state(name, str(tmp_path / name)) for name in ('staged', 'events', 'empty', 'none')}
    assert {name: s.status for name, s in states.items()} == {
        'staged': 'running', 'events': 'running', 'empty': 'not run', 'none': 'not run'}

    root = _ablation_root(tmp_path)  # a sweep copied elsewhere (say from gs://) is read where it now is
    moved = str(tmp_path / 'copy')
    shutil.copytree(root, moved)
    shutil.rmtree(root)
    _, _, states = report.collect(moved)
    assert [s.status for s in states] == ['finished', 'finished', 'running', 'not run']
    assert states[1].workdir == os.path.join(moved, 'lrn=False')


def test_decimals_follow_the_paper():
    def sweep(*paper):
        return sweeps.Sweep('t', 's', (TOP1,), tuple(sweeps.Run(f'r{i}', {'x': i}, paper={} if p is None else
                                                                {'top-1 err.': p}) for i, p in enumerate(paper)))
    assert report.decimals(sweep(27.94, 25.03), TOP1) == 2
    assert report.decimals(sweep(45.0, 40), TOP1) == 1  # at least one
    assert report.decimals(sweep(24.2, 7.125), TOP1) == 3
    assert report.decimals(sweep(None), TOP1) == 2  # no paper number: two


def test_files_match_what_was_printed_and_csv_parses_back(tmp_path, capsys):
    root = _ablation_root(tmp_path)
    assert report.main([root, '--format=md,csv']) == 0
    printed = capsys.readouterr().out
    with open(os.path.join(root, 'report', 'ablations.md')) as f:
        assert f.read() == printed
    assert printed.startswith('## Top-1 / top-5 error (%)\n')
    assert 'Krizhevsky et al. 2012, sec. 3' in printed and 'Made-up numbers.' in printed
    assert '2 of 4 runs finished, 1 running, 1 not run' in printed
    assert '--config.num_train_steps=3' in printed  # what every run also got
    assert "Δ: difference to the row 'full'" in printed
    table_lines = [line for line in printed.splitlines() if line.startswith('|')]
    assert len(table_lines) == 2 + 4
    assert [c.strip() for c in table_lines[3].split('|')[1:6]] == ['no LRN', '41.3', '42.1', '+1.4', '+1.4']

    csv = pd.read_csv(os.path.join(root, 'report', 'ablations.csv'))
    _, sweep, states = report.collect(root)
    expected = report.table(sweep, states)
    assert list(csv.columns) == list(expected.columns)
    assert csv['run'].tolist() == expected['run'].tolist() and csv['status'].tolist() == expected['status'].tolist()
    for column in expected.columns:
        if column.endswith(('ours', 'paper')):
            np.testing.assert_array_equal(csv[column].to_numpy(float), expected[column].to_numpy(float))
    assert csv['workdir'].tolist() == [s.workdir for s in states]
    assert csv['step'].tolist()[:3] == [300, 300, 200]


def test_no_finished_run_still_prints_the_table(tmp_path, capsys):
    root = str(tmp_path / 'sweep')
    _launch(root, _resnet_sweep(), name='table2')
    assert report.main([root, '--format=md', f'--out={tmp_path / "out"}']) == 0
    printed = capsys.readouterr().out
    assert '0 of 4 runs finished, 4 not run' in printed
    rows = [line for line in printed.splitlines() if line.startswith('| plain') or line.startswith('| ResNet')]
    assert len(rows) == 4 and all('not run' in row for row in rows)
    assert '27.94' in rows[0] and 'Δ' not in printed  # the paper's numbers; no baseline, no differences
    assert os.path.exists(tmp_path / 'out' / 'table2.md') and not os.path.exists(tmp_path / 'out' / 'table2.csv')


def test_a_root_without_sweep_json_says_to_run_the_sweep(tmp_path, capsys):
    assert report.main([str(tmp_path / 'nowhere')]) == 2
    err = capsys.readouterr().err
    assert 'has no sweep.json' in err and 'python -m launch.sweep --config=experiments/FILE.py' in err
    assert len(err.splitlines()) <= 4 and 'experiments/alexnet.py' in err  # lists the files with sweeps

    root = _ablation_root(tmp_path)  # A run's workdir given instead of the root: point at the root.
    assert report.main([os.path.join(root, 'lrn=False')]) == 2
    assert f'its report is `python -m launch.report {root}`' in capsys.readouterr().err

    with open(os.path.join(root, 'sweep.json'), 'w') as f:  # a damaged manifest: say so, no traceback
        f.write('{"title": ')
    assert report.main([root]) == 2
    assert 'sweep.json or a results.json there could not be read' in capsys.readouterr().err


def _curves(n: int = 5, offset: float = 0.0) -> dict:
    steps = np.arange(n) * 10
    return {'train/top1': (steps, np.linspace(0.5, 0.9, n) + offset),
            'eval_periodic/top1': (steps, np.linspace(0.4, 0.8, n) + offset)}


def test_figure_panels_lines_and_png_size(tmp_path):
    figure = _resnet_sweep().figure
    curves = {'plain-18': _curves(), 'plain-34': _curves(offset=0.05), 'ResNet-18': _curves(offset=0.1)}
    fig = report_figure.draw(figure, curves)  # ResNet-34 has no events: left out of its panel
    plain, resnet = fig.axes
    assert (plain.get_title(), resnet.get_title()) == ('plain', 'ResNet')
    assert len(plain.lines) == 4 and len(resnet.lines) == 2  # runs x tags
    # error = (1 - value) x 100; training (':') thin, validation ('-') bold; one colour per run.
    train, val = resnet.lines
    np.testing.assert_allclose(train.get_ydata(), (1 - curves['ResNet-18']['train/top1'][1]) * 100)
    assert (train.get_linestyle(), train.get_linewidth(), val.get_linestyle(), val.get_linewidth()) == (
        ':', 1.0, '-', 2.0)
    assert train.get_color() == val.get_color() != plain.lines[0].get_color()
    assert [t.get_text() for t in resnet.get_legend().get_texts()] == ['ResNet-18', 'train/top1',
                                                                      'eval_periodic/top1']
    path = str(tmp_path / 'fig.png')
    report_figure.save(fig, path)
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n' and struct.unpack('>II', head[16:24]) == (1000, 400)  # 2 x 500x400


def test_plot_tags_draw_one_panel_per_tag():
    figure = report_figure.ad_hoc_figure('t', ['a', 'b', 'c'], ['train/loss', 'eval/top1'])
    one_point = (np.array([60]), np.array([0.1]))
    curves = {'a': _curves(30) | {'train/loss': _curves(30)['train/top1']}, 'b': {'eval/top1': one_point}}
    fig = report_figure.draw(figure, curves, tag_per_panel=True)
    loss, top1 = fig.axes
    assert (loss.get_title(), top1.get_title()) == ('train/loss', 'eval/top1')
    assert len(loss.lines) == 1 and len(top1.lines) == 1  # 'a' has no eval/top1, 'b' no train/loss
    np.testing.assert_allclose(loss.lines[0].get_ydata(), curves['a']['train/loss'][1])  # as written
    assert loss.lines[0].get_marker() in ('None', None) and top1.lines[0].get_marker() == '.'  # one point: a dot


def test_runs_without_events_are_noted(tmp_path):
    figure = _resnet_sweep().figure
    workdirs = {label: str(tmp_path / label) for _, labels in figure.panels for label in labels}
    curves, notes = report_figure.gather(figure, workdirs)
    assert curves == {} and len(notes) == 4 and all('no TensorBoard events' in n for n in notes)
    fig = report_figure.draw(figure, curves)
    assert all(len(ax.lines) == 0 and ax.texts[0].get_text() == 'nothing logged yet' for ax in fig.axes)


@pytest.mark.slow
def test_report_reads_the_training_loops_tensorboard_events(tmp_path, capsys):
    """Events written by the loop's own writer (tf.summary), a resumed run's rewritten step included, read back
    into the figure; then `python -m launch.report` as a command."""
    from convnets.train import progress

    root = str(tmp_path / 'sweep')
    workdirs = _launch(root, _resnet_sweep(), name='table2')
    for i, workdir in enumerate(workdirs[:3]):  # ResNet-34: no events
        writer = progress.MetricWriter(workdir, enabled=True)
        for step in (0, 10, 20):
            writer.scalars(step, {'train/top1': 0.5 + 0.1 * i + step / 100, 'eval_periodic/top1': 0.25 + step / 100})
        writer.close()
    resumed = progress.MetricWriter(workdirs[0], enabled=True)  # resumed from step 10: step 20 written again
    resumed.scalars(20, {'train/top1': 0.9})
    resumed.close()
    _finish(workdirs[0], 20, top1=0.7206)

    fig = report.figures(*report.collect(root)[:2], workdirs, ['train/top1'])
    (name, _, declared, notes), (curves_name, _, ad_hoc, _) = fig
    assert (name, curves_name) == ('table2.png', 'table2_curves.png')
    plain, resnet = declared.axes
    assert len(plain.lines) == 4 and len(resnet.lines) == 2
    np.testing.assert_array_equal(plain.lines[0].get_xdata(), [0, 10, 20])
    np.testing.assert_allclose(plain.lines[0].get_ydata(), [50, 40, 10], atol=1e-4)  # 1 - 0.9 at step 20
    assert notes == [f'ResNet-34: no TensorBoard events in {workdirs[3]}/tensorboard (left out)']
    assert len(ad_hoc.axes[0].lines) == 3

    assert report.main([root]) == 0
    printed = capsys.readouterr().out
    assert '![Fig. 4](table2.png)' in printed and '- ResNet-34: no TensorBoard events' in printed
    assert os.path.getsize(os.path.join(root, 'report', 'table2.png')) > 10_000

    result = subprocess.run([sys.executable, '-m', 'launch.report', root, '--format=md,csv'], cwd=cli.ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    with open(os.path.join(root, 'report', 'table2.md')) as f:
        assert f.read() == result.stdout
    assert '| plain-18  |             27.94 |              27.94 |     20 | name=plain18  |' in result.stdout
