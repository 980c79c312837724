"""Mistakes users make give a few lines naming the file or field and the fix, not a traceback (issue 9, item 8).

Command-line mistakes (config file, overrides) exit with status 2 before anything runs; errors the project raises
on purpose while running (datasets that cannot be prepared or read) exit with status 1 after the run's log.
"""

import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile

import pytest
from ml_collections import ConfigDict

from tests import cli, fake_imagenet

MAX_LINES = 15


def _main(tmp_path, *args: str, config: str = 'experiments/quickstart.py', data_dir: str | None = None,
          env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m convnets.main` as users run it, on one CPU device."""
    cmd = [sys.executable, '-m', 'convnets.main', f'--config={config}', f'--workdir={tmp_path / "run"}', *args]
    if data_dir is not None:
        cmd.append(f'--config.data.data_dir={data_dir}')
    return subprocess.run(cmd, cwd=cli.ROOT, env={**cli.env(1), **(env or {})}, capture_output=True, text=True,
                          timeout=300)


def _report(proc, status: int, whole: bool) -> str:
    """The error report of a failed run: asserts the status, no traceback, and a short report; returns it.

    With `whole`, all of stderr is the report (command-line errors: nothing ran); otherwise the report is from
    the `error:` line on (after the run's own log).
    """
    assert proc.returncode == status, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    start = 0 if whole else max(i for i, line in enumerate(lines) if line.startswith('error: '))
    report = lines[start:]
    assert report and report[0].startswith('error: '), proc.stderr[-3000:]
    assert len(report) < MAX_LINES, proc.stderr
    return '\n'.join(report)


# ---- The command line -------------------------------------------------------------------------------------------

@pytest.mark.parametrize('override, suggestion', [
    ('--config.optimizer.learning_rat=0.1', 'optimizer.learning_rate'),  # The probe: 55 lines before.
    ('--config.optimzer.learning_rate=0.1', 'optimizer'),
    ('--config.learning_rate=0.1', 'optimizer.learning_rate'),  # The right name, in another group.
])
def test_misspelt_override_names_the_field_the_closest_names_and_the_schema(tmp_path, override, suggestion):
    report = _report(_main(tmp_path, override), 2, whole=True)
    assert override.split('=')[0] in report
    assert f'Did you mean {suggestion}' in report
    assert 'experiments/default.py' in report
    assert '\\n' not in report  # ml_collections' hint printed a literal backslash-n.


def test_override_of_a_single_value_as_a_group_is_explained(tmp_path):
    report = _report(_main(tmp_path, '--config.batch_size.x=1'), 2, whole=True)
    assert 'batch_size is a single value (int)' in report and "no field 'x'" in report


@pytest.mark.parametrize('override, expected', [
    ('--config.batch_size=sixteen', 'batch_size must be an integer'),
    ('--config.data.cache=maybe', 'data.cache must be True or False'),
    ('--config.optimizer.learning_rate=fast', 'optimizer.learning_rate must be a number'),
])
def test_override_of_the_wrong_type_names_field_value_and_type(tmp_path, override, expected):
    report = _report(_main(tmp_path, override), 2, whole=True)
    flag, value = override.split('=')
    assert expected in report and repr(value) in report
    assert f'e.g. {flag}=' in report  # A valid example: the experiment's own value.


def test_missing_config_file_lists_the_experiments(tmp_path):
    report = _report(_main(tmp_path, config='experiments/nope.py'), 2, whole=True)
    # Before: main ran with an error object as its config (logged), then a 40-line traceback.
    assert "'experiments/nope.py' not found" in report
    assert 'experiments/*.py' in report and 'quickstart.py' in report and 'resnet50.py' in report
    assert '__init__.py' not in report


def test_misspelt_config_file_suggests_the_closest_experiment(tmp_path):
    report = _report(_main(tmp_path, config='experiments/resnet5O.py'), 2, whole=True)
    assert 'Did you mean experiments/resnet50.py' in report


def test_config_file_with_a_syntax_error_names_file_line_and_message(tmp_path):
    config = tmp_path / 'broken.py'
    config.write_text('from experiments import default\n\n\ndef get_config(:\n    return default.get_config()\n')
    report = _report(_main(tmp_path, config=str(config)), 2, whole=True)
    assert f'config file {config}, line 4: ' in report
    assert 'def get_config(:' in report and '^' in report


def test_config_file_that_fails_while_building_names_file_and_line(tmp_path):
    config = tmp_path / 'fails.py'
    config.write_text('from experiments import default\n\n\ndef get_config():\n    c = default.get_config()\n'
                      '    c.batch_size = batch\n    return c\n')
    report = _report(_main(tmp_path, config=str(config)), 2, whole=True)
    assert f'config file {config}, line 6 (in get_config): NameError' in report and 'c.batch_size = batch' in report


def test_traceback_on_request(tmp_path):
    proc = _main(tmp_path, '--config.optimizer.learning_rat=0.1', env={'CONVNETS_TRACEBACK': '1'})
    assert proc.returncode != 0 and 'Traceback' in proc.stderr


# ---- Data that cannot be prepared or read: through the command line ---------------------------------------------

def _unwritable_dir(tmp_path) -> str:
    """A directory that cannot be written: read-only permissions, or (root ignores them) a sysfs path."""
    if os.geteuid() != 0:
        path = tmp_path / 'readonly'
        path.mkdir()
        path.chmod(0o555)
        return str(path / 'tfds')
    path = '/sys/convnets-tests-unwritable'
    try:
        os.makedirs(path)
    except OSError:
        return path
    os.rmdir(path)
    pytest.skip('no unwritable directory on this machine (root, and /sys is writable)')


@pytest.mark.slow
def test_read_only_data_dir_says_it_is_not_writable_and_how_to_choose_another(tmp_path):
    data_dir = _unwritable_dir(tmp_path)
    report = _report(_main(tmp_path, data_dir=data_dir), 1, whole=False)
    # Before: "run with --config.data.download=True on a machine with internet access" (the digits need none).
    assert f'the data directory {data_dir} is not writable' in report
    assert '--config.data.data_dir' in report and 'internet' not in report


def _cut_short(path: str, fraction: float = 0.5) -> None:
    os.truncate(path, int(os.path.getsize(path) * fraction))


def _tfrecord(data_dir: str, split: str) -> str:
    directory = os.path.join(data_dir, 'convnets_digits', '1.0.0')
    return os.path.join(directory, next(f for f in os.listdir(directory) if f'-{split}.tfrecord' in f))


@pytest.mark.slow
def test_truncated_tfrecord_names_the_file_and_says_to_prepare_again(tmp_path, digits_dir):
    data_dir = str(tmp_path / 'tfds')
    shutil.copytree(digits_dir, data_dir)
    record = _tfrecord(data_dir, 'train')
    _cut_short(record)
    report = _report(_main(tmp_path, '--config.num_train_steps=2', data_dir=data_dir), 1, whole=False)
    assert 'DamagedDatasetError' in report and os.path.basename(record) in report
    assert f'Delete {os.path.dirname(record)} and run again' in report


def _manual_dir(tmp_path) -> str:
    manual_dir = str(tmp_path / 'manual')
    fake_imagenet.write_manual_dir(manual_dir, images_per_class=2, num_val=4)
    return manual_dir


@pytest.mark.slow
def test_empty_imagenet_tar_names_the_file_and_says_to_download_it_again(tmp_path):
    manual_dir = _manual_dir(tmp_path)
    tar = os.path.join(manual_dir, 'ILSVRC2012_img_train.tar')
    open(tar, 'w').close()
    proc = _main(tmp_path, f'--config.data.manual_dir={manual_dir}', config='experiments/alexnet.py',
                 data_dir=str(tmp_path / 'tfds'))
    report = _report(proc, 1, whole=False)  # Before: 130 lines, no file named.
    assert f'the ImageNet file {tar} is empty (0 bytes)' in report
    assert 'Download it again' in report and 'check its size' in report


# ---- The same checks in-process (fast) --------------------------------------------------------------------------

def _imagenet(manual_dir: str, data_dir: str) -> ConfigDict:
    return ConfigDict({'name': 'imagenet2012', 'data_dir': data_dir, 'manual_dir': manual_dir, 'download': True})


def _garbage(path: str) -> None:
    with open(path, 'wb') as f:
        f.write(b'<html>403 Forbidden</html>\n' * 40)  # What a failed download with a login page saves.


@pytest.mark.parametrize('name', ['ILSVRC2012_img_train.tar', 'ILSVRC2012_img_val.tar'])
@pytest.mark.parametrize('damage, words', [
    (lambda p: open(p, 'w').close(), 'is empty (0 bytes)'),
    (_garbage, 'is not a tar archive'),
    (lambda p: _cut_short(p, 0.7), 'is cut short'),  # A truncated val tar used to prepare silently.
])
def test_damaged_imagenet_tars_are_found_before_preparing(tmp_path, name, damage, words):
    from convnets.data import builders

    manual_dir = _manual_dir(tmp_path)
    path = os.path.join(manual_dir, name)
    damage(path)
    with pytest.raises(ValueError) as e:
        builders.get_builder(_imagenet(manual_dir, str(tmp_path / 'tfds')))
    assert f'the ImageNet file {path} {words}' in str(e.value) and 'Download it again' in str(e.value)


def test_intact_tars_pass_the_check(tmp_path):
    from convnets.data import builders

    manual_dir = _manual_dir(tmp_path)
    for name in builders.IMAGENET_MANUAL_FILES:
        assert builders.tar_problem(os.path.join(manual_dir, name)) is None


def test_damage_inside_a_tar_found_while_preparing_names_both_files(tmp_path):
    """One class's inner tar cut short inside an intact outer tar: only reading it shows the damage."""
    from convnets.data import builders

    manual_dir = _manual_dir(tmp_path)
    path = os.path.join(manual_dir, 'ILSVRC2012_img_train.tar')
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar.getmembers()]
    with tarfile.open(fileobj=io.BytesIO(members[0][1])) as inner:
        last = inner.getmembers()[-1]
    with tarfile.open(path, 'w') as tar:
        for i, (member, data) in enumerate(members):
            if i == 0:  # The first class's tar ends in the middle of its last image.
                data = data[:last.offset_data + last.size // 2]
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    assert builders.tar_problem(path) is None
    with pytest.raises(ValueError) as e:
        builders.get_builder(_imagenet(manual_dir, str(tmp_path / 'tfds')))
    message = str(e.value)
    assert f'reading the ImageNet tar files in {manual_dir} failed' in message
    assert 'ILSVRC2012_img_train.tar' in message and 'ILSVRC2012_img_val.tar' in message
    assert 'Download the damaged one again' in message


@pytest.mark.parametrize('damage', ['truncate', 'flip'])
def test_damaged_tfrecord_while_iterating_names_the_file_and_the_fix(tmp_path, digits_dir, damage):
    from convnets.data import pipeline, records
    from experiments import quickstart

    data_dir = str(tmp_path / 'tfds')
    shutil.copytree(digits_dir, data_dir)
    record = _tfrecord(data_dir, 'test')
    if damage == 'truncate':
        _cut_short(record)
    else:
        with open(record, 'r+b') as f:
            f.seek(os.path.getsize(record) // 2)
            byte = f.read(1)
            f.seek(-1, os.SEEK_CUR)
            f.write(bytes([byte[0] ^ 0xFF]))
    config = quickstart.get_config()
    config.data.data_dir = data_dir
    with pytest.raises(records.DamagedDatasetError) as e:
        for _ in pipeline.eval_batches(config.data, global_batch_size=32):
            pass
    message = str(e.value)
    assert f"split 'test'; damaged file: {os.path.basename(record)}" in message
    assert ('truncated record' if damage == 'truncate' else 'corrupted record') in message
    assert f'Delete {os.path.dirname(record)} and run again' in message


def test_unwritable_data_dir_is_found_before_preparing(tmp_path):
    from convnets.data import builders

    data_dir = _unwritable_dir(tmp_path)
    with pytest.raises(PermissionError, match='is not writable'):
        builders.get_builder(ConfigDict({'name': 'convnets_digits', 'data_dir': data_dir, 'manual_dir': None,
                                         'download': True}))


# ---- Which errors lose their traceback ----------------------------------------------------------------------------

def test_only_errors_raised_on_purpose_by_the_project_are_shortened():
    from convnets import cli_errors as main
    from convnets.data import pipeline

    with pytest.raises(ValueError) as ours:
        pipeline._local_batch_size(10, 0, 3)  # A `raise ValueError(...)` with advice.
    assert 'not divisible by the process count' in main.run_error_message(ours.value)

    with pytest.raises(TypeError) as bug:
        pipeline._local_batch_size('10', 0, 1)  # Python's own error inside our code: a bug, keep the traceback.
    assert main.run_error_message(bug.value) is None

    with pytest.raises(ValueError) as library:
        tempfile.mkdtemp(prefix='a\0b')  # An error raised by a library.
    assert main.run_error_message(library.value) is None

    from convnets.data.records import DamagedDatasetError
    try:
        raise DamagedDatasetError('the files are damaged')
    except DamagedDatasetError as e:  # The project's own error types are always reported (with their name).
        assert main.run_error_message(e) == 'DamagedDatasetError: the files are damaged'
