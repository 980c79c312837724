"""The Faster R-CNN VOC experiments end to end through `python -m convnets.main` on the fake VOC in the official tar
layout (tests/fake_voc.py): approximate joint training, and the 4-step alternating scheme as four stages that hand
weights and proposals over, killed (SIGKILL) in the middle of a stage and between two stages and resumed; VOC mAP and
devkit files in the original images' pixels."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from convnets.data import proposals as proposal_cache
from tests import cli
from tests.helpers import final_params
from tests.test_fast_rcnn_voc import _check_run

# VGG-A depth and VGG16's stride 16 with 4-8 maps: the paper's shapes (1000 x 1000 canvas, 63 x 63 map, 35721
# anchors), tiny compute; fewer proposals than the paper's 12000 / 2000 and 6000 / 300.
TINY = ('--config.model.vgg_config=A', '--config.model.stage_widths=(4, 4, 4, 4, 8)', '--config.model.fc_features=16',
        '--config.model.rpn_channels=8', '--config.log_every=1', '--config.checkpoint_every=',
        '--config.rpn.train_pre_nms_top_n=1000', '--config.rpn.train_post_nms_top_n=200',
        '--config.rpn.test_pre_nms_top_n=500', '--config.rpn.test_post_nms_top_n=100',
        '--config.evals.val.score_threshold=0.0')  # an untrained 21-way softmax scores ~1/21 < 0.05 everywhere
STEPS = {'rpn1': 1, 'frcn1': 2, 'rpn2': 1, 'frcn2': 2}
ALTERNATING = (*(f'--config.stage_configs.{s}.num_train_steps={n}' for s, n in STEPS.items()),
               '--config.checkpoint_every=1',
               '--config.evals.proposals.post_nms_top_n=300')

# convnets.main, SIGKILLed by itself at a deterministic point: after frcn1's checkpoint of step 1 (of 2) is durable
# (mid-stage), or when the runner enters stage rpn2 (between stages: frcn1 finished, rpn2 not started).
_KILLED = '''
import os, runpy, signal, sys
from convnets.train import checkpoint, loop
where = os.environ['KILL_AT']
save, train = checkpoint.Checkpointer.save, loop.train_and_evaluate
def save_then_die(self, step, state, **kw):
    saved = save(self, step, state, **kw)
    if where == 'frcn1' and self.workdir.name == 'frcn1' and step == 1:
        self.wait()
        os.kill(os.getpid(), signal.SIGKILL)
    return saved
def train_or_die(config, workdir, **kw):
    if where == 'rpn2' and os.path.basename(workdir) == 'rpn2':
        os.kill(os.getpid(), signal.SIGKILL)
    return train(config, workdir, **kw)
checkpoint.Checkpointer.save, loop.train_and_evaluate = save_then_die, train_or_die
sys.argv[0] = 'convnets.main'
runpy.run_module('convnets.main', run_name='__main__', alter_sys=True)
'''


@pytest.mark.slow
def test_faster_rcnn_vgg16_voc07_joint_training_runs_end_to_end(tmp_path, voc_dir):
    """Approximate joint training (2 steps), then VOC 2007 test mAP on the RPN's proposals and the devkit files."""
    workdir = str(tmp_path / 'run')
    cmd = cli.main_command(workdir, voc_dir[0], *TINY, '--config.num_train_steps=2',
                           config='experiments/faster_rcnn_vgg16_voc07.py')
    proc = cli.run(cmd, num_devices=1)
    _check_run(proc, workdir, num_images=3)
    train = json.loads(open(os.path.join(workdir, 'results.json')).read())['train']
    assert train['rpn_cls_loss'] > 0 and train['det_loss'] > 0 and np.isfinite(train['loss'])


def _tree(params, prefixes):
    return {k: v for k, v in params.items() if k.startswith(prefixes)}


def _assert_equal(a, b):
    assert a.keys() == b.keys() and a
    for k in a:
        for name in a[k]:
            np.testing.assert_array_equal(a[k][name], b[k][name], err_msg=f'{k}/{name}')


@pytest.mark.slow
def test_four_step_alternating_training_hands_over_and_resumes_after_sigkill(tmp_path, voc_dir):
    """The ':alternating' variant: rpn1 trains the RPN and writes its proposals of both splits; frcn1 trains Fast
    R-CNN on them (SIGKILL after its step 1: the rerun resumes it there, rpn1 is not retrained); a SIGKILL as the
    runner enters rpn2 loses nothing; rpn2 starts from frcn1 with shared convs frozen; frcn2 fine-tunes the head only
    and is tested with its own RPN. Hand-over checked on the final weights, exactly."""
    workdir = str(tmp_path / 'run')
    cmd = cli.main_command(workdir, voc_dir[0], *TINY, *ALTERNATING,
                           config='experiments/faster_rcnn_vgg16_voc07.py:alternating')
    for where in ('frcn1', 'rpn2'):
        env_kill = dict(cli.env(1), KILL_AT=where)
        killed = subprocess.run([sys.executable, '-c', _KILLED, *cmd[3:]], cwd=cli.ROOT, env=env_kill,
                                              capture_output=True, text=True, timeout=600)
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        if where == 'frcn1':
            assert os.path.exists(os.path.join(workdir, 'rpn1', 'results.json'))
            assert not os.path.exists(os.path.join(workdir, 'frcn1', 'results.json'))
        else:
            assert 'already finished at step 1' in killed.stderr  # rpn1
            assert 'Restored checkpoint at step 1' in killed.stderr  # frcn1 resumed mid-stage
            assert os.path.exists(os.path.join(workdir, 'frcn1', 'results.json'))
            assert not os.path.exists(os.path.join(workdir, 'rpn2'))
    proc = cli.run(cmd, num_devices=1, timeout=600)
    _check_run(proc, os.path.join(workdir, 'frcn2'), num_images=3)  # the last stage's mAP (printed) and devkit files
    results = json.loads(open(os.path.join(workdir, 'results.json')).read())
    assert results['stage_order'] == ['rpn1', 'frcn1', 'rpn2', 'frcn2']
    stages = results['stages']
    assert {s: stages[s]['step'] for s in STEPS} == STEPS
    assert 0.0 <= stages['frcn1']['eval']['mAP'] <= 1.0  # Table 2's "unshared" detector
    for split, count in (('train+validation', 4), ('test', 3)):  # rpn1's proposal files, read back by frcn1
        cache = proposal_cache.read(os.path.join(workdir, 'rpn1', 'proposals'), 'voc/2007', split)
        assert len(cache.filenames) == count and cache.manifest['method'] == 'rpn'
        assert stages['rpn1']['proposals_train' if count == 4 else 'proposals']['num_images'] == count
    assert 0.0 <= stages['rpn2']['proposals']['recall/300@0.5'] <= 1.0 and 'proposals' not in stages['frcn1']
    assert results['proposals']['num_images'] == 3  # the final network's RPN (Fig. 4)
    p = {s: final_params(os.path.join(workdir, s)) for s in STEPS}
    convs, rpn, head = ('conv',), ('rpn_',), ('fc6_', 'fc7_', 'cls_score_', 'bbox_pred_')
    _assert_equal(_tree(p['rpn2'], convs), _tree(p['frcn1'], convs))  # shared convs: frcn1's, frozen
    _assert_equal(_tree(p['rpn2'], head), _tree(p['frcn1'], head))  # the head is not trained by an RPN stage
    _assert_equal(_tree(p['frcn2'], convs), _tree(p['frcn1'], convs))
    _assert_equal(_tree(p['frcn2'], rpn), _tree(p['rpn2'], rpn))  # the final network's RPN is rpn2's
    assert not np.array_equal(p['frcn2']['cls_score_layer']['kernel'], p['rpn2']['cls_score_layer']['kernel'])
    # rpn2 trained its RPN layers (frcn1 kept a fresh, untrained RPN: rpn2 re-initialises it anyway).
    assert not np.array_equal(p['rpn2']['rpn_cls_score_layer']['kernel'], p['frcn1']['rpn_cls_score_layer']['kernel'])


@pytest.mark.slow
def test_zf_and_07_12_experiment_files_train_and_test(tmp_path, voc_dir, voc0712_dir):
    """The other two experiment files, one step each: ZF Net (its full widths, on a 200 px canvas: at 1000 px its
    step takes minutes on 2 cores) on VOC 2007, and the VGG16 recipe on the 07+12 union (narrow, 1000 px), each with
    VOC 2007 test mAP from its RPN's proposals and the RPN's recall."""
    import jax

    from convnets.train import loop
    from experiments import detection, faster_rcnn_vgg16_voc0712, faster_rcnn_zf_voc07, imagenet

    zf = faster_rcnn_zf_voc07.get_config()
    assert zf.model.name == 'faster_rcnn_zf' and zf.model.rpn_channels == 256 and zf.model.roi_size == 6
    for split in ('train', 'eval'):
        setattr(zf.data, f'{split}_preprocess', detection.voc_spec(
            zf, f'{split}_split', scales=160, max_size=200, flip=split == 'train', proposals=False,
            value_ops=imagenet.subtract_mean()))
    zf.data.data_dir = voc_dir[0]
    union = faster_rcnn_vgg16_voc0712.get_config()
    union.data.data_dir = voc0712_dir[0]
    union.model.vgg_config, union.model.stage_widths, union.model.fc_features = 'A', (4, 4, 4, 4, 8), 16
    union.model.rpn_channels = 8
    for c, name in ((zf, 'zf'), (union, '0712')):
        c.num_train_steps, c.log_every, c.checkpoint_every = 1, '1', ''
        c.rpn.train_pre_nms_top_n, c.rpn.train_post_nms_top_n = 1000, 200
        c.rpn.test_pre_nms_top_n, c.rpn.test_post_nms_top_n = 500, 100
        c.evals.val.score_threshold = 0.0
        c.evals.proposals.post_nms_top_n = 300
        results = loop.train_and_evaluate(c, str(tmp_path / name), devices=jax.devices()[:1])
        assert results['step'] == 1 and np.isfinite(results['train']['loss'])
        assert results['eval']['num_images'] == 3 and 0.0 <= results['eval']['mAP'] <= 1.0
        assert results['proposals']['num_images'] == 3 and results['proposals']['num_gt'] > 0
        assert len(os.listdir(tmp_path / name / 'detections' / 'val')) == 20
        assert (tmp_path / name / 'proposals' / 'proposals' / 'recall_vs_iou.png').exists()
