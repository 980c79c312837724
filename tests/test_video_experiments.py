"""The video experiment files (C3D: Sports-1M, UCF101 from scratch and its depth sweep, UCF101 fc6 + SVM; Karpathy
et al.'s fusion nets on Sports-1M and their UCF101 transfer) build at the papers' sizes and run through
`python -m convnets.main` with tiny overrides on fake data prepared the TFDS way: a fake `ucf101/ucf101_1` written
by TFDS's own ucf101 builder (tests/fake_ucf101.py), and Sports-1M-style folders of frames prepared by the
convnets_video_folder builder."""

import importlib
import json
import os

import jax
import jax.numpy as jnp
import pytest

from convnets import tasks
from convnets.models import video_fusion
from tests import cli, fake_ucf101

EXPERIMENTS = {
    'c3d_sports1m': ('',),
    'c3d_ucf101': ('', 'depth1', 'depth5', 'depth7', 'increasing', 'decreasing', 'c3d'),
    'c3d_ucf101_svm': ('',),
    'video_fusion_sports1m': ('', 'single_frame', 'early_fusion', 'late_fusion', 'multires'),
    'video_fusion_ucf101': ('', 'top1', 'all', 'scratch'),
}
# Paper-size parameter counts (eval_shape): tests/test_video_models.py derives them layer by layer.
PARAMS = {('c3d_sports1m', ''): 79_991_015, ('c3d_ucf101', ''): 17_444_965, ('c3d_ucf101', 'c3d'): 78_409_573,
          ('video_fusion_sports1m', ''): 75_511_751, ('video_fusion_sports1m', 'single_frame'): 73_908_071}
TINY = ('--config.model.widths=(4, 4, 8, 8, 8)', '--config.model.fc_features=8', '--config.num_train_steps=2',
        '--config.batch_size=2', '--config.eval_batch_size=2', '--config.log_every=1', '--config.checkpoint_every=1')


def _config(name, variant):
    return importlib.import_module(f'experiments.{name}').get_config(*([variant] if variant else []))


def _param_count(config):
    """The network's parameter count at the paper's input; its output shape and the frozen layers are checked."""
    import re

    from convnets.train import optim

    model = tasks.get(config.task).build_nets(config)['model']
    fusion = {n: f for f, n in video_fusion.NAMES.items()}.get(config.model.name)
    frames, size = video_fusion.PAPER_INPUT[fusion] if fusion else (16, 112)
    x = jnp.zeros((1, frames, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    assert jax.eval_shape(lambda v: model.apply(v, x, train=False), variables).shape == (1, config.model.num_classes)
    paths = optim.param_paths(variables['params'])
    for pattern in config.optimizer.frozen:  # each names layers of this network (a typo would train everything)
        assert any(re.search(pattern, p) for p in paths), (pattern, paths[:4])
    return sum(leaf.size for leaf in jax.tree.leaves(variables['params']))


@pytest.mark.slow
def test_every_video_recipe_builds_at_the_papers_size_and_the_depth_sweep_expands():
    counts = {}
    for name, variants in EXPERIMENTS.items():
        for variant in variants:
            config = _config(name, variant)
            counts[name, variant] = _param_count(config)
            assert config.data.name in ('ucf101/ucf101_1', 'convnets_video_folder'), (name, variant)
    assert {k: counts[k] for k in PARAMS} == PARAMS
    # Fig. 2's sweep: six settings of one switch, each a valid config of the Sec. 3.1 net.
    from experiments import c3d_ucf101

    swept = []
    for run in c3d_ucf101.get_sweeps()['depth'].runs:
        config = c3d_ucf101.get_config()
        for path, value in run.overrides.items():
            section, field = path.split('.')
            config[section][field] = value
        swept.append(_param_count(config))
    assert swept == [counts['c3d_ucf101', v] for v in ('depth1', '', 'depth5', 'depth7', 'increasing', 'decreasing')]
    assert swept[0] < swept[1] < swept[2] < swept[3]


def _main(workdir, data_dir, config, *overrides):
    proc = cli.run(cli.main_command(str(workdir), data_dir, *TINY, *overrides, config=config), num_devices=2,
                   timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_c3d_recipes_run_through_main(tmp_path, ucf101_dir):
    """Sports-1M C3D on folders of frames -> its fc6 + SVM on UCF101 (init_from, nothing trained) -> a depth-1
    search net from scratch on UCF101 with the per-video evaluation."""
    frames = fake_ucf101.frame_tree(str(tmp_path / 'frames'))
    sports = _main(tmp_path / 'sports1m', str(tmp_path / 'tfds_frames'), 'experiments/c3d_sports1m.py',
                   f'--config.data.manual_dir={frames}',
                   "--config.evals.test.views=(\"rename('video', 'image')|resize((128, 171))|center_crop(112)"
                   "|video_clips(16, 2, 0)\",)")
    assert sports['step'] == 2 and sports['eval']['num_examples'] == 6 and 'eval_clip' in sports

    svm = _main(tmp_path / 'svm', ucf101_dir, 'experiments/c3d_ucf101_svm.py',
                f'--config.init_from={tmp_path / "sports1m"}',
                "--config.data.eval_preprocess=rename('video', 'image')|resize((128, 171))|center_crop(112)"
                "|video_clips(16, 3, 8)")
    assert svm['eval']['num_train'] == 12 and svm['eval']['num_examples'] == 6
    assert svm['eval']['feature_dim'] == 8 and 0.0 <= svm['eval']['top1'] <= 1.0
    with open(tmp_path / 'svm' / 'results.json') as f:
        assert json.load(f)['init_from']['workdir'] == str(tmp_path / 'sports1m')

    scratch = _main(tmp_path / 'depth1', ucf101_dir, 'experiments/c3d_ucf101.py:depth1',
                    "--config.evals.test.views=(\"rename('video', 'image')|resize((128, 171))|center_crop(112)"
                    "|video_clips(16, 3, 8)\",)")
    assert scratch['eval']['num_examples'] == scratch['eval_clip']['num_examples'] == 6
    assert sorted(os.listdir(tmp_path / 'depth1' / 'checkpoints')) == ['1', '2']


FUSION_VIEWS = ("--config.evals.test.views=(\"rename('video', 'image')|resize_short(200)|center_crop(200)"
                "|center_crop(170)|video_clips(10, 2, 0)\",)")


@pytest.mark.slow
def test_fusion_recipes_run_and_transfer_freezes_the_convs(tmp_path, ucf101_dir):
    """Slow fusion on "Sports-1M" (the fake UCF101 standing in) through convnets.main, then Table 3's "fine-tune
    the top 3 layers" from it: the convs stay exactly the Sports-1M ones, fc6 and fc7 move, fc8 is new."""
    import numpy as np

    from tests.helpers import final_params

    sports = _main(tmp_path / 'slow', ucf101_dir, 'experiments/video_fusion_sports1m.py',
                   '--config.data.name=ucf101/ucf101_1', '--config.data.train_split=train',
                   '--config.data.eval_split=test', FUSION_VIEWS)
    assert sports['eval']['num_examples'] == 6
    top3 = _main(tmp_path / 'top3', ucf101_dir, 'experiments/video_fusion_ucf101.py',
                 f'--config.init_from={tmp_path / "slow"}', FUSION_VIEWS)
    assert top3['step'] == 2
    before, after = final_params(str(tmp_path / 'slow')), final_params(str(tmp_path / 'top3'))
    for layer in ('conv1_layer', 'conv3_layer', 'conv5_layer'):
        np.testing.assert_array_equal(before['tower'][layer]['kernel'], after['tower'][layer]['kernel'])
    for layer in ('fc6_layer', 'fc7_layer'):
        assert not np.array_equal(before[layer]['kernel'], after[layer]['kernel'])
    assert before['fc8_layer']['kernel'].shape == (8, 487) and after['fc8_layer']['kernel'].shape == (8, 101)


@pytest.mark.slow
@pytest.mark.parametrize('variant', ['single_frame', 'early_fusion', 'late_fusion', 'multires'])
def test_other_fusion_recipes_fit_their_clips(tmp_path, ucf101_dir, variant):
    """Every fusion model's clip length and frame size (170, 178 for multires; 1, 10 or 16 frames) fit its
    network: one training step and the per-video evaluation, in process (the command line path is shown above)."""
    from convnets.train import loop

    c = _config('video_fusion_sports1m', variant)
    c.data.update(dict(name='ucf101/ucf101_1', data_dir=ucf101_dir, train_split='train', eval_split='test'))
    c.model.update(dict(widths=(4, 4, 8, 8, 8), fc_features=8))
    frames = video_fusion.PAPER_INPUT[_fusion(c.model.name)][0]
    view = c.evals.test.views[0]
    c.evals.test.views = (view.replace(f'video_clips({frames}, 20, 0)', f'video_clips({frames}, 2, 0)'),)
    c.update(dict(num_train_steps=1, batch_size=2, eval_batch_size=2, log_every='1', checkpoint_every=''))
    results = loop.train_and_evaluate(c, str(tmp_path / variant), devices=jax.devices()[:2])
    assert results['eval']['num_examples'] == results['eval_clip']['num_examples'] == 6


def _fusion(model_name: str) -> str:
    return {n: f for f, n in video_fusion.NAMES.items()}[model_name]
