"""Fine-tuning from another workdir's weights (config.init_from, convnets.train.init_from)."""

import json
import os

import numpy as np
import pytest

from convnets.train import init_from, loop
from tests import helpers


def _trained(tmp_path, digits_dir, name='source', **overrides):
    c = helpers.tiny_config(digits_dir)
    for k, v in overrides.items():
        setattr(c, k, v)
    workdir = str(tmp_path / name)
    loop.train_and_evaluate(c, workdir)
    return c, workdir


@pytest.mark.slow
def test_init_from_loads_every_network_variable_and_trains_on(tmp_path, digits_dir):
    _, source = _trained(tmp_path, digits_dir)
    loaded = helpers.final_params(source)
    c = helpers.tiny_config(digits_dir)
    c.num_train_steps = 1
    c.init_from = source
    c.optimizer.learning_rate = 1e-30  # below every weight's float32 ulp: the loaded weights come through unchanged
    target = str(tmp_path / 'target')
    results = loop.train_and_evaluate(c, target)
    helpers.assert_trees_equal(helpers.final_params(target), loaded)
    assert results['init_from'] == {'workdir': source, 'step': 3}
    # A resumed fine-tuning run keeps its own weights and its provenance.
    c.num_train_steps = 2
    c.optimizer.learning_rate = 0.05
    c.resume_with_changes = True
    again = loop.train_and_evaluate(c, target)
    assert again['init_from'] == results['init_from']
    assert not np.array_equal(helpers.final_params(target)['F6_layer']['kernel'], loaded['F6_layer']['kernel'])


@pytest.mark.slow
def test_init_from_with_a_new_classifier(tmp_path, digits_dir):
    _, source = _trained(tmp_path, digits_dir)
    loaded = helpers.final_params(source)
    c = helpers.tiny_config(digits_dir)
    c.init_from = source
    c.model.num_classes = 12  # another head: its shape cannot be loaded
    c.num_train_steps = 1
    with pytest.raises(init_from.InitFromError, match=r"(?s)output_layer/kernel is \(84, 10\) in the checkpoint, "
                                                      r"\(84, 12\) here.*init_from_skip"):
        loop.train_and_evaluate(c, str(tmp_path / 'refused'))
    c.init_from_skip = ('params/output_layer/',)
    c.optimizer.learning_rate = 1e-30
    target = str(tmp_path / 'new_head')
    loop.train_and_evaluate(c, target)
    params = helpers.final_params(target)
    assert params['output_layer']['kernel'].shape == (84, 12)
    for layer in ('C1_layer', 'C3_layer', 'F6_layer'):
        helpers.assert_trees_equal(params[layer], loaded[layer])


def test_init_from_errors(tmp_path, digits_dir):
    c = helpers.tiny_config(digits_dir)
    c.init_from = str(tmp_path / 'nowhere')
    with pytest.raises(FileNotFoundError, match='no checkpoint there.*convnets.weights.import'):
        loop.train_and_evaluate(c, str(tmp_path / 'target'))


@pytest.mark.slow
def test_init_from_skips_a_damaged_checkpoint(tmp_path, digits_dir):
    c, source = _trained(tmp_path, digits_dir, keep_checkpoints=0, checkpoint_every='1')
    good = helpers.final_params(source, step=2)
    # Damage the newest checkpoint (every array data file emptied): the step before is used instead.
    data = os.path.join(source, 'checkpoints', '3', 'state')
    for directory, _, names in os.walk(data):
        for name in names:
            if os.sep + 'd' in directory[len(data):]:  # OCDBT array data files live under .../d/
                open(os.path.join(directory, name), 'wb').close()
    nets, meta = init_from.load(source)
    assert meta['step'] == 2
    helpers.assert_trees_equal(nets['model']['params'], good)
    assert os.path.isdir(os.path.join(source, 'checkpoints', '3'))  # another run's workdir: nothing moved
    json.dumps(meta)  # the provenance is JSON


def test_imported_weights_warn_when_the_pipeline_lacks_their_normalisation(monkeypatch, digits_dir):
    """check_preprocessing reads the host spec and, for training, the device ops after it."""
    warnings = []
    monkeypatch.setattr(init_from.logging, 'warning', lambda msg, *args: warnings.append(msg % args))
    ops = 'subtract_mean((123.68, 116.779, 103.939))'
    meta = {'init_from': {'pretrained': {'framework': 'torchvision', 'name': 'googlenet',
                                         'preprocessing': {'value_ops': ops, 'description': 'ImageNet mean'}}}}
    config = helpers.tiny_config(digits_dir)
    config.data.eval_preprocess = f'decode|to_rgb|{ops}'
    config.data.train_preprocess = 'decode|to_rgb'
    config.data.device_preprocess = f'photometric_distort|{ops}'
    init_from.check_preprocessing(config, meta, train=True)
    assert warnings == []
    config.data.device_preprocess = 'photometric_distort'
    init_from.check_preprocessing(config, meta, train=True)
    assert len(warnings) == 1
    assert "data.train_preprocess|data.device_preprocess='decode|to_rgb|photometric_distort' does not apply" in (
        warnings[0])
    config.data.device_preprocess = ''
    init_from.check_preprocessing(config, meta, train=False)  # Evaluation reads eval_preprocess only.
    assert len(warnings) == 1
    init_from.check_preprocessing(config, meta, train=True)
    assert "data.train_preprocess='decode|to_rgb' does not apply" in warnings[1]
