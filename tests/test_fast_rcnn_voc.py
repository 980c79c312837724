"""The Fast R-CNN VOC experiments end to end on a fake VOC in the official tar layout (TFDS's own voc builder):
proposal caches made by `convnets.data.make_proposals`, batches whose proposals equal the cache moved like the
images (numpy), training and VOC evaluation with devkit files through `python -m convnets.main`, and the errors of
a missing cache or one made for another split."""

import json
import os
import shutil

import numpy as np
import pytest
import scipy.io
import tensorflow_datasets as tfds

from convnets import cli_errors
from convnets.data import make_proposals, pipeline
from convnets.data import proposals as P
from experiments import fast_rcnn_vgg16_voc07
from tests import cli, fake_voc

# VGG-A depth and VGG16's stride 16 with 4-8 maps: the run's shapes (1000x1000 canvas, 63x63 conv5 map) are the
# paper's, its compute tiny.
TINY = ('--config.model.vgg_config=A', '--config.model.stage_widths=(4, 4, 4, 4, 8)', '--config.model.fc_features=16',
        '--config.num_train_steps=2', '--config.log_every=1', '--config.checkpoint_every=',
        '--config.data.max_proposals=300',
        '--config.evals.val.score_threshold=0.0')  # an untrained 21-way softmax scores ~1/21 < 0.05 everywhere
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
               'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')


def _records(data_dir: str, name: str, split: str) -> dict[str, np.ndarray]:
    builder = tfds.builder(name, data_dir=data_dir)
    return {r['image/filename'].decode(): r['image'] for r in builder.as_dataset(split=split).as_numpy_iterator()}


@pytest.mark.slow
def test_the_command_caches_selective_search_of_every_image_and_converts_published_files(tmp_path, voc_dir):
    out = str(tmp_path / 'cache')
    proc = cli.run([*cli.PYTHON_M, 'convnets.data.make_proposals', '--data=voc/2007', '--split=test',
                    f'--data_dir={voc_dir[0]}', f'--manual_dir={voc_dir[1]}', f'--out={out}', '--min_side=4'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads(proc.stdout.strip().splitlines()[-1])
    assert manifest['dataset'] == 'voc/2007' and manifest['split'] == 'test' and manifest['count'] == 3
    assert manifest['method'] == 'rcnn_fast' and manifest['min_side'] == 4
    cache = P.read(out, 'voc/2007', 'test')
    images = _records(voc_dir[0], 'voc/2007', 'test')
    assert sorted(cache.filenames) == sorted(images) == ['000001.jpg', '000004.jpg', '000006.jpg']
    for name, image in images.items():  # the original image, selective search as in-process
        np.testing.assert_array_equal(cache.of(name), P.selective_search(image, min_side=4))
    assert len(cache.of('000001.jpg')) > 3
    # A published .mat (1-based (y1, x1, y2, x2)) of the same split converts; one lacking an image is refused.
    ids, cells = np.empty((1, 3), object), np.empty((1, 3), object)
    for k, name in enumerate(sorted(images)):
        ids[0, k] = np.array([name[:-4]])
        cells[0, k] = np.array([[1, 1, 20, 30]], np.float64)
    mat = str(tmp_path / 'voc_2007_test.mat')
    scipy.io.savemat(mat, {'images': ids, 'boxes': cells})
    converted = make_proposals.convert_mat('voc/2007', 'test', str(tmp_path / 'mat'), [mat], data_dir=voc_dir[0])
    assert converted['method'] == 'mat' and converted['count'] == 3
    np.testing.assert_array_equal(P.read(str(tmp_path / 'mat'), 'voc/2007', 'test').of('000004.jpg'),
                                  [[0, 0, 20, 30]])
    scipy.io.savemat(mat, {'images': ids[:, :2], 'boxes': cells[:, :2]})
    proc = cli.run([*cli.PYTHON_M, 'convnets.data.make_proposals', '--data=voc/2007', '--split=test',
                    f'--data_dir={voc_dir[0]}', f'--out={tmp_path / "mat2"}', f'--from_mat={mat}'])
    assert proc.returncode == 1 and 'lacks 1 of the 3 images of voc/2007 test (e.g. 000006.jpg)' in proc.stderr
    assert 'Traceback' not in proc.stderr


def _voc07(data_dir: str, proposals_dir: str, **fields):
    c = fast_rcnn_vgg16_voc07.get_config()
    c.data.data_dir = data_dir
    c.data.proposals_dir = proposals_dir
    c.data.prefetch = 0
    for k, v in fields.items():
        setattr(c.data, k, v)
    return c


@pytest.mark.slow
def test_batches_hold_the_cached_proposals_scaled_like_the_image(voc_dir, voc_proposals, scenes_dir, tmp_path):
    """The experiment's test spec (no flip): VOC's image i of size (h, w) becomes (round(h s), round(w s)) with
    s = 600 / min(h, w); its proposals are the cache's times the per-axis ratio, then masked padding."""
    c = _voc07(voc_dir[0], voc_proposals, max_proposals=64)
    cache = P.read(voc_proposals, 'voc/2007', 'test')
    batch = next(pipeline.eval_batches(c.data, global_batch_size=3))
    assert batch['proposals'].shape == (3, 64, 4) and batch['image'].shape == (3, 1000, 1000, 3)
    sizes = {}  # the resized (h, w) of each test image -> its file name (they differ in the fake VOC)
    for name in cache.filenames:
        oh, ow = fake_voc.IMAGES[name[:-4]][1:3]
        s = 600 / min(oh, ow)
        sizes[(round(oh * s), round(ow * s))] = name
    seen = set()
    for i in range(3):
        h, w = (int(v) for v in batch['image_size'][i])
        name = sizes[(h, w)]
        seen.add(name)
        oh, ow = fake_voc.IMAGES[name[:-4]][1:3]
        want = cache.of(name).astype(np.float64) * [h / oh, w / ow, h / oh, w / ow]
        n = len(want)
        np.testing.assert_allclose(batch['proposals'][i][:n], want, rtol=1e-6)
        np.testing.assert_array_equal(batch['proposal_mask'][i], np.arange(64) < n)
    assert len(seen) == 3
    # Training on the embedded scenes (flips): each image's proposals are the cache's, flipped iff its boxes are.
    make_proposals.run_selective_search('convnets_digit_scenes', 'train', str(tmp_path), data_dir=scenes_dir,
                                        min_side=8)
    cache = P.read(str(tmp_path), 'convnets_digit_scenes', 'train')
    originals = _records(scenes_dir, 'convnets_digit_scenes', 'train')
    data = _voc07(scenes_dir, str(tmp_path), name='convnets_digit_scenes', train_split='train', max_proposals=300)
    data.data.train_preprocess = data.data.train_preprocess.replace('objects_to_boxes(voc_one_based=True)',
                                                                    'objects_to_boxes')
    flips = []
    for row in _rows(next(pipeline.train_batches(data.data, global_batch_size=8, seed=0))):
        (h, w), (sy, sx) = row['image_size'], row['image_scale']
        candidates = [n for n, im in originals.items() if [round(im.shape[0] * sy), round(im.shape[1] * sx)] == [h, w]]
        matches = []
        for name in candidates:
            scaled = cache.of(name).astype(np.float64) * [sy, sx, sy, sx]
            flipped = np.stack([scaled[:, 0], w - scaled[:, 3], scaled[:, 2], w - scaled[:, 1]], axis=-1)
            n = len(scaled)
            if n == 0 or not np.array_equal(row['proposal_mask'], np.arange(300) < n):
                continue
            matches += [flip for flip, want in ((False, scaled), (True, flipped))
                        if np.allclose(row['proposals'][:n], want, rtol=1e-5, atol=1e-3)]
        if not matches:  # an image without proposals (tiny digits): nothing to compare but the mask
            assert not row['proposal_mask'].any()
            continue
        flips.append(matches[0])
    assert len(flips) >= 4
    assert any(flips) and not all(flips)  # flip_lr p = 0.5


def _rows(batch):
    return [{k: v[i] for k, v in batch.items()} for i in range(len(batch['image']))]


@pytest.mark.slow
def test_missing_or_mismatched_caches_are_named_with_the_command_that_makes_them(tmp_path, voc_dir, voc_proposals):
    c = _voc07(voc_dir[0], str(tmp_path / 'missing'))
    with pytest.raises(FileNotFoundError) as e:
        pipeline.element_spec(c.data, train=True)
    message = cli_errors.run_error_message(e.value)  # what `python -m convnets.main` prints (exit status 1)
    assert 'the proposal cache directory' in message and 'python -m convnets.data.make_proposals --data=voc/2007 ' \
        '--split=train+validation' in message
    # A cache of trainval copied in as the test split's: the manifest names what it was made for.
    wrong = tmp_path / 'wrong' / 'voc_2007'
    wrong.mkdir(parents=True)
    for ext in ('npz', 'json'):
        shutil.copy(os.path.join(voc_proposals, 'voc_2007', f'train+validation.{ext}'), wrong / f'test.{ext}')
    c = _voc07(voc_dir[0], str(tmp_path / 'wrong'))
    with pytest.raises(ValueError) as e:
        pipeline.element_spec(c.data, train=False)
    message = cli_errors.run_error_message(e.value)
    assert "test.json was made for voc/2007 split 'train+validation', not voc/2007 split 'test'" in message
    assert '--split=test' in message


def _check_run(proc, workdir: str, num_images: int) -> None:
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    ev = result['eval']
    assert result['step'] == 2 and ev['num_images'] == num_images and 0.0 <= ev['mAP'] <= 1.0
    files = sorted(os.listdir(os.path.join(workdir, 'detections', 'val')))
    assert files == sorted(f'comp4_det_test_{n}.txt' for n in VOC_CLASSES)
    # The devkit files name VOC's own test images and give boxes in their ORIGINAL pixels (1-based, inclusive),
    # not in the 1000x1000 canvas the images were resized and padded to.
    sizes = {i: (h, w) for i, (split, h, w, _) in fake_voc.IMAGES.items() if split == 'test'}
    lines = [line.split() for f in files for line in open(os.path.join(workdir, 'detections', 'val', f))]
    assert lines, 'no detections written'
    for image_id, _, x1, y1, x2, y2 in lines:
        h, w = sizes[image_id]
        assert 1 <= float(x1) <= float(x2) <= w and 1 <= float(y1) <= float(y2) <= h


@pytest.mark.slow
def test_fast_rcnn_vgg16_voc07_runs_end_to_end(tmp_path, voc_dir, voc_proposals):
    workdir = str(tmp_path / 'run')
    cmd = cli.main_command(workdir, voc_dir[0], f'--config.data.proposals_dir={voc_proposals}', *TINY,
                           config='experiments/fast_rcnn_vgg16_voc07.py:svm')
    proc = cli.run(cmd, num_devices=1)
    _check_run(proc, workdir, num_images=3)
    # The ':svm' variant (Table 8) also trains R-CNN's SVMs on fc7 of the 4 trainval images and scores the test set.
    svm = json.loads(proc.stdout.strip().splitlines()[-1])['svm']
    assert svm['num_images'] == 3 and svm['train_images'] == 4 and 0.0 <= svm['svm_bbox_reg/mAP'] <= 1.0
    assert len(os.listdir(os.path.join(workdir, 'detections', 'svm'))) >= 20


@pytest.mark.slow
def test_fast_rcnn_vgg16_voc0712_runs_end_to_end(tmp_path, voc0712_dir):
    """07+12: VOC 2007 trainval (4 fake images) + VOC 2012 trainval (2) in training, VOC 2007 test (3) in eval."""
    data_dir, _, proposals_dir = voc0712_dir
    builder = tfds.builder('convnets_voc0712', data_dir=data_dir)
    assert {k: v.num_examples for k, v in builder.info.splits.items()} == {'trainval': 6, 'test': 3}
    assert '2008_000008.jpg' in _records(data_dir, 'convnets_voc0712', 'trainval')
    workdir = str(tmp_path / 'run')
    cmd = cli.main_command(workdir, data_dir, f'--config.data.proposals_dir={proposals_dir}', *TINY,
                           config='experiments/fast_rcnn_vgg16_voc0712.py')
    _check_run(cli.run(cmd, num_devices=1), workdir, num_images=3)


@pytest.mark.slow
def test_the_07_12_union_says_which_tars_are_missing(tmp_path):
    from ml_collections import ConfigDict

    manual = str(tmp_path / 'manual')
    fake_voc.write_manual_dir(manual)  # VOC 2007 only: VOC 2012 trainval missing
    with fake_voc.registered(manual), pytest.raises(FileNotFoundError, match=r'put VOCtrainval_11-May-2012.tar '
                                                                             r'\(of VOCtrainval_06-Nov-2007.tar'):
        pipeline.get_builder(ConfigDict({'name': 'convnets_voc0712', 'data_dir': str(tmp_path / 'tfds'),
                                         'manual_dir': manual, 'download': True}))


def test_the_recipes_hold_the_papers_settings():
    """Fast R-CNN sec. 2.3 / 4 / 4.5 / 5.2 / 5.3 (see the experiment docstrings)."""
    from experiments import fast_rcnn_vgg16_voc0712

    c07, c0712 = fast_rcnn_vgg16_voc07.get_config(), fast_rcnn_vgg16_voc0712.get_config()
    for c in (c07, c0712):
        assert c.batch_size == 2 and c.detection.rois_per_image == 64 and c.detection.fg_fraction == 0.25
        assert (c.optimizer.learning_rate, c.optimizer.momentum, c.optimizer.weight_decay) == (0.001, 0.9, 5e-4)
        assert c.optimizer.bias_lr_multiplier == 2 and tuple(c.optimizer.frozen) == ('^conv1_', '^conv2_')
        assert c.data.max_proposals == 2000 and 'flip_lr' in c.data.train_preprocess
        assert 'flip_lr' not in c.data.eval_preprocess and 'resize_short_capped(600, 1000)' in c.data.eval_preprocess
        assert c.init_from_skip == fast_rcnn_vgg16_voc07.INIT_FROM_SKIP
    assert (c07.num_train_steps, tuple(c07.optimizer.boundaries)) == (40_000, (30_000,))
    assert (c0712.num_train_steps, c0712.data.name, c0712.data.train_split) == (60_000, 'convnets_voc0712', 'trainval')
    assert (c07.data.name, c07.data.train_split, c07.data.eval_split) == ('voc/2007', 'train+validation', 'test')
    multi = fast_rcnn_vgg16_voc07.get_config('multiscale')
    assert 'resize_short_capped((480, 576, 688, 864, 1200), 2000)|flip_lr|pad_to(2000)' in multi.data.train_preprocess
    assert tuple(multi.evals.val.scales) == (480, 576, 688, 864, 1200) and multi.evals.val.max_size == 2000
    # The proposal op follows the fields it reads: a command-line directory, count or split reaches both specs.
    c07.data.proposals_dir, c07.data.max_proposals, c07.data.eval_split = '/cache', 300, 'test[:10]'
    assert "load_proposals('/cache', 'voc/2007', 'test[:10]', 300)" in c07.data.eval_preprocess
    assert "load_proposals('/cache', 'voc/2007', 'train+validation', 300)" in c07.data.train_preprocess
    with pytest.raises(ValueError, match='unknown variant'):
        fast_rcnn_vgg16_voc07.get_config('pyramid')
