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
    model = tasks.get(config.task).build_nets(config)['model']
    fusion = {n: f for f, n in video_fusion.NAMES.items()}.get(config.model.name)
    frames, size = video_fusion.PAPER_INPUT[fusion] if fusion else (16, 112)
    x = jnp.zeros((1, frames, size, size, 3))
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    assert jax.eval_shape(lambda v: model.apply(v, x, train=False), variables).shape == (1, config.model.num_classes)
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
    for overrides in c3d_ucf101.get_sweeps()['depth']:
        config = c3d_ucf101.get_config()
        for path, value in overrides.items():
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
