"""Importing released weights into a checkpoint, evaluating and exporting it, and fine-tuning from it
(convnets.weights.import / export, experiments/pretrained.py, config.init_from). The weights are the parity
fixtures' seeded stand-ins, written in the release's own format."""

import importlib
import json
import logging
import os

import jax
import numpy as np
import pytest

from convnets.train import checkpoint, loop
from convnets.weights import files, importer, sources
from experiments import pretrained, resnet50_finetune_digits
from tests import cli, helpers, weight_parity

IMPORT = importlib.import_module('convnets.weights.import')  # 'import' is a keyword: the module is the command
EXPORT = importlib.import_module('convnets.weights.export')


def _imagenet_config(key: str, imagenet_dir):
    data_dir, manual_dir = imagenet_dir
    c = pretrained.get_config(key)
    c.data.data_dir, c.data.manual_dir = data_dir, manual_dir
    c.batch_size = c.eval_batch_size = 8
    return c


@pytest.mark.slow
def test_import_evaluate_export_round_trip(tmp_path, imagenet_dir):
    fix = weight_parity.fixture('torchvision_resnet18')
    path = weight_parity.seeded_file(fix, str(tmp_path))
    config = _imagenet_config('torchvision_resnet18', imagenet_dir)
    workdir = str(tmp_path / 'imported')
    summary = IMPORT.run('torchvision', 'resnet18', path, workdir, config)
    assert summary['step'] == 0 and summary['num_params'] == 11_689_512 == fix['num_params']
    assert summary['sha256'] == importer.sha256(path)

    # The checkpoint holds exactly the converted weights, and records where they came from.
    source = sources.get('torchvision', 'resnet18')
    expected = importer.load_file(source, path)
    _, state = loop.restore_for_inference(config, workdir)
    helpers.assert_trees_equal(jax.device_get(state.nets['model'].eval_variables), expected)
    meta = checkpoint.Checkpointer(workdir, keep=0, architecture={}, read_only=True).meta(0)
    assert meta['pretrained']['file'] == os.path.basename(path)
    assert meta['pretrained']['preprocessing']['name'] == 'torchvision'

    # --mode=eval uses the recorded preprocessing (experiments/pretrained.py selects it) and reports the source.
    results = loop.evaluate_checkpoint(config, workdir)
    assert results['eval']['num_examples'] == 8
    assert results['pretrained']['top1'] == source.top1

    # Export gives back the released tensors exactly (BatchNorm counters as 0): import -> export is the identity.
    out = str(tmp_path / 'exported.safetensors')
    EXPORT.run(config, workdir, out)
    exported, original = files.read(out), files.read(path)
    assert set(exported) == set(original)
    for name, value in original.items():
        if name.endswith('num_batches_tracked'):
            assert exported[name] == 0
        else:
            np.testing.assert_array_equal(exported[name], value, err_msg=name)
    # ... and importing the exported file gives the same variables again.
    helpers.assert_trees_equal(importer.load_file(source, out), expected)


@pytest.mark.slow
def test_eval_warns_when_the_preprocessing_is_not_the_weights(tmp_path, imagenet_dir, caplog):
    fix = weight_parity.fixture('torchvision_resnet18')
    path = weight_parity.seeded_file(fix, str(tmp_path))
    config = _imagenet_config('torchvision_resnet18', imagenet_dir)
    workdir = str(tmp_path / 'imported')
    IMPORT.run('torchvision', 'resnet18', path, workdir, config)
    config.data.eval_preprocess = 'decode(3)|resize_short(256)|center_crop(224)|subtract_mean(120)'
    with caplog.at_level(logging.WARNING):
        loop.evaluate_checkpoint(config, workdir)
    assert 'normalize((123.675, 116.28, 103.53), (58.395, 57.12, 57.375))' in caplog.text
    assert 'experiments/pretrained.py:torchvision_resnet18' in caplog.text


def test_import_errors(tmp_path):
    with pytest.raises(ValueError, match=r"--model='resnet51'.*Did you mean 'resnet50'.*Valid: alexnet"):
        IMPORT.run('torchvision', 'resnet51', 'x.pth', str(tmp_path / 'w'))
    with pytest.raises(ValueError, match='--from=.caffe.*torchvision, keras'):
        IMPORT.run('caffe', 'resnet50', 'x.pth', str(tmp_path / 'w'))
    missing = str(tmp_path / 'resnet50-0676ba61.pth')
    with pytest.raises(FileNotFoundError, match=r'Download resnet50-0676ba61.pth from '
                                                r'https://download.pytorch.org/models/resnet50-0676ba61.pth'):
        IMPORT.run('torchvision', 'resnet50', missing, str(tmp_path / 'w'))
    open(missing, 'wb').close()
    wrong = pretrained.get_config('torchvision_resnet18')
    with pytest.raises(ValueError, match="fit our model 'resnet50_v1_5'.*builds 'resnet18'"):
        IMPORT.run('torchvision', 'resnet50', missing, str(tmp_path / 'w'), wrong)


def test_torch_pickles_need_torch(tmp_path, monkeypatch):
    monkeypatch.setattr(files.importlib.util, 'find_spec', lambda name: None)
    path = tmp_path / 'resnet18-f37072fd.pth'
    path.write_bytes(b'not read')
    with pytest.raises(files.WeightFileError, match=r'weights_only=True.*safetensors'):
        files.read(str(path))


@pytest.mark.slow
def test_import_refuses_a_used_workdir(tmp_path, imagenet_dir):
    path = weight_parity.seeded_file(weight_parity.fixture('torchvision_resnet18'), str(tmp_path))
    config = _imagenet_config('torchvision_resnet18', imagenet_dir)
    workdir = str(tmp_path / 'imported')
    IMPORT.run('torchvision', 'resnet18', path, workdir, config)
    with pytest.raises(FileExistsError, match='already holds checkpoints'):
        IMPORT.run('torchvision', 'resnet18', path, workdir, config)


@pytest.mark.slow
def test_command_lines(tmp_path, imagenet_dir):
    """As documented: import, then --mode=eval with experiments/pretrained.py; a missing file is a short error."""
    data_dir, manual_dir = imagenet_dir
    path = weight_parity.seeded_file(weight_parity.fixture('torchvision_resnet18'), str(tmp_path))
    workdir = str(tmp_path / 'imported')
    proc = cli.run([*cli.PYTHON_M, 'convnets.weights.import', '--from=torchvision', '--model=resnet18',
                    f'--file={path}', f'--workdir={workdir}'], num_devices=1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])['num_params'] == 11_689_512
    proc = cli.run([*cli.main_command(workdir, data_dir, config='experiments/pretrained.py:torchvision_resnet18'),
                    f'--config.data.manual_dir={manual_dir}', '--config.batch_size=8', '--config.eval_batch_size=8',
                    '--mode=eval'],
                   num_devices=1)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1])['eval']['num_examples'] == 8
    proc = cli.run([*cli.PYTHON_M, 'convnets.weights.import', '--from=keras', '--model=vgg16',
                    f'--file={tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels.h5"}',
                    f'--workdir={tmp_path / "w"}'], num_devices=1)
    assert proc.returncode == 1
    assert 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/' in proc.stderr
    assert 'Traceback' not in proc.stderr


@pytest.mark.slow
def test_finetune_experiment_starts_from_imported_resnet50(tmp_path, digits_dir):
    fix = weight_parity.fixture('torchvision_resnet50')
    path = weight_parity.seeded_file(fix, str(tmp_path))
    imported = str(tmp_path / 'tv50')
    c = resnet50_finetune_digits.get_config()
    IMPORT.run('torchvision', 'resnet50', path, imported)  # experiments/pretrained.py's ImageNet config
    c.init_from = imported
    c.data.data_dir = digits_dir
    c.batch_size = 16
    c.num_train_steps = 3
    c.log_every = '1'
    c.evals.val.every = ''
    c.checkpoint_every = ''
    workdir = str(tmp_path / 'finetune')
    results = loop.train_and_evaluate(c, workdir)
    assert results['init_from']['pretrained']['name'] == 'resnet50'
    assert np.isfinite(results['train']['loss']) and 0 <= results['eval']['top1'] <= 1
    params = helpers.final_params(workdir)
    assert params['fc_layer']['kernel'].shape == (2048, 10)
    source = importer.load_file(sources.get('torchvision', 'resnet50'), path)['params']
    # Fine-tuning moved the pretrained layers from where the import put them.
    assert not np.array_equal(params['conv1_layer']['kernel'], source['conv1_layer']['kernel'])
    np.testing.assert_allclose(params['conv1_layer']['kernel'], source['conv1_layer']['kernel'], atol=0.05)


@pytest.mark.slow
def test_visualize_reads_an_imported_checkpoint(tmp_path, imagenet_dir):
    from convnets.visualize import report

    path = weight_parity.seeded_file(weight_parity.fixture('torchvision_resnet18'), str(tmp_path))
    config = _imagenet_config('torchvision_resnet18', imagenet_dir)
    workdir = str(tmp_path / 'imported')
    IMPORT.run('torchvision', 'resnet18', path, workdir, config)
    config.visualize.num_images = 8
    config.visualize.layers = ('stage4',)
    config.visualize.occlusion_images = 1
    config.visualize.occlusion_patch = config.visualize.occlusion_stride = 56
    written = report.visualize(config, workdir)
    names = {os.path.basename(f) for f in written['files']}
    assert 'filters.png' in names and any(n.startswith('occlusion_0') for n in names)
