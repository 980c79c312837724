"""`--mode=detect` (convnets/detect.py) and the detection pictures (convnets/visualize/detections.py): drawing,
TensorBoard image summaries, finding and reading a user's images, the eval spec run on them with the scale back to
the original pixels, the error messages, and a tiny trained detector run from the command line."""

import io
import json
import os

import numpy as np
import pytest
from PIL import Image

from convnets import detect
from convnets.visualize import detections as pictures
from tests import cli
from tests.helpers import tiny_fast_rcnn as _tiny

NAMES = ['zero', 'one', 'two', 'three']


def _png(path, array):
    Image.fromarray(np.asarray(array, np.uint8)).save(path)
    return str(path)


def test_draw_boxes_outlines_each_class_in_its_colour_with_a_label():
    image = np.full((64, 80, 3), 100, np.uint8)
    boxes = np.array([[20, 10, 50, 40], [30, 45, 60, 75]], np.float32)  # (ymin, xmin, ymax, xmax) edges
    out = pictures.draw_boxes(image, boxes, np.array([2, 3]), NAMES, np.array([0.9, 0.4]), line_width=1)
    assert out.shape == (64, 80, 3) and out.dtype == np.uint8 and not np.shares_memory(out, image)
    green, red = pictures.class_colour(2), pictures.class_colour(3)
    assert tuple(out[35, 10]) == green and tuple(out[35, 39]) == green and tuple(out[49, 25]) == green  # xmax - 1
    assert tuple(out[45, 45]) == red and tuple(out[59, 60]) == red
    assert tuple(out[35, 25]) == (100, 100, 100) and tuple(out[35, 40]) == (100, 100, 100)  # inside, outside
    label = (out[:20, 10:40] == green).all(-1)  # above the first box: a label of its colour holding text
    assert not label[:12].any() and 0.5 < label[12:].mean() < 1
    dashed = pictures.draw_boxes(image, boxes[:1], np.array([1]), NAMES, dashed=True, labels=[''], line_width=1)
    edge = (dashed[20, 10:40] == pictures.class_colour(1)).all(-1)
    assert 0.3 < edge.mean() < 0.8  # dashes and gaps
    grey = pictures.draw_boxes(np.zeros((8, 8, 1), np.uint8), np.zeros((0, 4)), np.zeros(0, int), NAMES)
    assert grey.shape == (8, 8, 3)


def test_every_voc_class_has_its_own_colour():
    colours = {pictures.class_colour(c) for c in range(30)}
    assert len(colours) == 30


def _events(logdir):
    import tensorflow as tf

    found = []
    for name in os.listdir(logdir):
        for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name == 'images':
                    found.append((value.tag, event.step, tf.make_ndarray(value.tensor)))
    return found


def test_detection_pictures_go_to_tensorboard_at_the_step(tmp_path):
    """The evaluator's host loop hands over a process batch and the gathered predictions; the first real images
    (padding rows skipped) become one image summary detections/<name> at the step, cropped to image_size and
    enlarged to >= 256 px, detections of the class colour from min_score up."""
    b, canvas = 3, 64
    images = np.linspace(-1, 1, b * canvas * canvas * 3, dtype=np.float32).reshape(b, canvas, canvas, 3)
    batch = {'image': images, 'image_size': np.array([[60, 50], [64, 64], [40, 64]], np.int32)}
    out = {'mask': np.array([1.0, 0.0, 1.0]),
           'boxes': np.tile(np.array([[[4, 4, 30, 20], [0, 0, 0, 0]]], np.float32), (b, 1, 1)),
           'box_classes': np.zeros((b, 2), np.int32), 'box_difficult': np.zeros((b, 2), bool),
           'box_mask': np.array([[True, False]] * b),
           'det_boxes': np.tile(np.array([[[10, 10, 40, 30], [0, 0, 5, 5]]], np.float32), (b, 1, 1)),
           'det_classes': np.array([[1, 2]] * b), 'det_scores': np.array([[0.9, 0.2]] * b, np.float32),
           'det_count': np.array([2, 2, 2])}
    pics = pictures.DetectionPictures(str(tmp_path), 'val', NAMES, num_images=2)
    pics.add_batch(batch, out)
    assert not pics.wants_more and [p.shape for p in pics.pictures] == [(360, 300, 3), (280, 448, 3)]
    one = pics.pictures[0]  # factor ceil(256 / 50) = 6: detection (10, 10, 40, 30) -> rows 60.., column 60
    assert tuple(one[150, 60]) == pictures.class_colour(1)
    assert not (one[:60, :60] == pictures.class_colour(2)).all(-1).any()  # score 0.2 < min_score: not drawn
    assert pics.write(7) == 'detections/val'
    (tag, step, tensor), = _events(str(tmp_path / 'tensorboard'))
    assert tag == 'detections/val' and step == 7 and len(tensor) == 2 + 2  # width, height, then 2 PNGs
    assert (int(tensor[0]), int(tensor[1])) == (448, 360)
    first = np.asarray(Image.open(io.BytesIO(tensor[2])))
    np.testing.assert_array_equal(first[:360, :300], one)
    assert (first[:, 300:] == 128).all()  # padded to the largest picture with grey


def test_find_images_reads_a_directory_a_glob_and_names_the_pattern_that_matches_nothing(tmp_path):
    for name in ('b.PNG', 'a.jpg', 'notes.txt', 'sub/c.png'):
        os.makedirs(os.path.dirname(tmp_path / name), exist_ok=True)
        (tmp_path / name).write_bytes(b'x')
    assert detect.find_images(str(tmp_path)) == [str(tmp_path / 'a.jpg'), str(tmp_path / 'b.PNG')]
    assert detect.find_images([str(tmp_path / '**' / '*.png'), str(tmp_path / 'a.jpg')]) == [
        str(tmp_path / 'sub' / 'c.png'), str(tmp_path / 'a.jpg')]
    with pytest.raises(FileNotFoundError, match=r"--images='.*/nothing/\*.jpg' matches no image file.*quotes"):
        detect.find_images(str(tmp_path / 'nothing' / '*.jpg'))
    with pytest.raises(FileNotFoundError, match='matches no image file'):
        detect.find_images(str(tmp_path / 'sub' / 'empty_dir_that_is_missing'))


def test_read_image_decodes_grey_and_jpeg_and_names_a_bad_file(tmp_path):
    grey = _png(tmp_path / 'grey.png', np.arange(12 * 10).reshape(12, 10) % 256)
    assert detect.read_image(grey).shape == (12, 10, 3)
    Image.fromarray(np.zeros((9, 7, 3), np.uint8)).save(tmp_path / 'x.jpg', format='JPEG')
    assert detect.read_image(str(tmp_path / 'x.jpg')).shape == (9, 7, 3)
    (tmp_path / 'bad.jpg').write_text('not an image')
    with pytest.raises(ValueError, match=r'bad\.jpg: not a readable JPEG or PNG image \(12 bytes'):
        detect.read_image(str(tmp_path / 'bad.jpg'))
    with pytest.raises(ValueError, match=r'missing\.png: cannot be read'):
        detect.read_image(str(tmp_path / 'missing.png'))


SPEC = 'decode(3)|objects_to_boxes|{}pad_to(128)|pad_boxes(8)|value_range(-1, 1)'


def test_preprocess_runs_the_eval_spec_and_records_the_scale_to_the_original():
    image = (np.arange(100 * 150 * 3) % 251).reshape(100, 150, 3).astype(np.uint8)
    # Fast R-CNN's scaling: shorter side 100 -> 64 (longer 96 <= 128), exact ratio 0.64 on both axes.
    out, scale, fitted = detect.preprocess(SPEC.format('resize_short_capped(64, 128)|'), image, (128, 128))
    assert out['image'].shape == (128, 128, 3) and list(out['image_size']) == [64, 96] and not fitted
    np.testing.assert_allclose(scale, [0.64, 0.64], rtol=1e-6)
    assert not out['box_mask'].any() and (out['image'][64:] == -1).all()  # zero padding, then value_range
    # No resize in the spec (the quickstart): an image within the canvas keeps its pixels (scale 1)...
    out, scale, fitted = detect.preprocess(SPEC.format(''), image[:90, :120], (128, 128))
    assert not fitted and list(out['image_size']) == [90, 120] and list(scale) == [1.0, 1.0]
    np.testing.assert_allclose(out['image'][:90, :120], image[:90, :120] / 127.5 - 1, atol=1e-6)
    # ... and a larger one is shrunk to fit the canvas first (150 -> 128, 100 -> 85), the scale recorded.
    out, scale, fitted = detect.preprocess(SPEC.format(''), image, (128, 128))
    assert fitted and list(out['image_size']) == [85, 128]
    np.testing.assert_allclose(scale, [85 / 100, 128 / 150])


def test_detections_go_back_to_original_pixels_best_first():
    out = {'det_count': np.array([2]), 'det_scores': np.array([[0.3, 0.8, 0.0]], np.float32),
           'det_classes': np.array([[1, 2, -1]]),
           'det_boxes': np.array([[[10, 20, 30, 40], [0, 5, 64, 50], [0, 0, 0, 0]]], np.float32)}
    boxes, scores, classes = detect.to_original(out, np.array([0.5, 0.4]), 120, 110)
    np.testing.assert_allclose(boxes, [[0, 12.5, 120, 110], [20, 50, 60, 100]])  # / (sy, sx), clipped to 120x110
    np.testing.assert_allclose(scores, [0.8, 0.3])
    np.testing.assert_array_equal(classes, [2, 1])


def test_cached_proposals_are_replaced_by_selective_search_on_the_image():
    """A spec with load_proposals (the VOC experiments): the user's image is in no cache (this directory does not
    even exist), so selective search runs on the decoded image and the later ops scale its boxes with the image."""
    pytest.importorskip('cv2', reason='selective search needs opencv-contrib (the proposals extra)')
    from convnets.data import proposals

    image = np.full((100, 150, 3), (40, 60, 80), np.uint8)
    image[10:50, 20:70], image[55:95, 90:140], image[30:80, 60:100] = (200, 30, 30), (30, 200, 30), (230, 230, 40)
    load = "load_proposals('/no/cache', 'convnets_digit_scenes', 'test', max_proposals=40)"
    spec = SPEC.format(load + '|resize_short_capped(64, 128)|')
    assert detect.split_at_proposals(spec) == ('decode(3)|objects_to_boxes', 40, SPEC.format(
        'resize_short_capped(64, 128)|').removeprefix('decode(3)|objects_to_boxes|'))
    out, scale, _ = detect.preprocess(spec, image, (128, 128))
    expected = proposals.selective_search(image)[:40]
    assert 20 <= len(expected) <= 40 and out['proposals'].shape == (40, 4)
    assert out['proposal_mask'].sum() == len(expected) and not out['proposals'][len(expected):].any()
    np.testing.assert_allclose(out['proposals'][:len(expected)], expected * 0.64, rtol=1e-6)
    assert list(scale) == pytest.approx([0.64, 0.64])


def test_detect_errors_name_the_problem_before_any_compile(tmp_path):
    from tests.helpers import tiny_config

    image = _png(tmp_path / 'a.png', np.zeros((20, 30, 3)))
    with pytest.raises(ValueError, match=r"this config's task is 'classification': use a detection config"):
        detect.detect_images(tiny_config('unused'), str(tmp_path), image)
    config = _tiny('unused')
    with pytest.raises(FileNotFoundError, match='matches no image file'):
        detect.detect_images(config, str(tmp_path), str(tmp_path / '*.jpg'))
    (tmp_path / 'broken.png').write_bytes(b'\x89PNG\r\n\x1a\n truncated')
    with pytest.raises(ValueError, match=r'broken\.png: not a readable JPEG or PNG image'):
        detect.detect_images(config, str(tmp_path), str(tmp_path))
    with pytest.raises(ValueError, match=r'would overwrite input images with their pictures \(a\.png\)'):
        detect.detect_images(config, str(tmp_path / 'run'), image, out_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r'No checkpoint in .*checkpoints: train first'):
        detect.detect_images(config, str(tmp_path / 'run'), image)
    config.detection.proposals = 'batch'
    with pytest.raises(ValueError, match=r"detection.proposals='batch' and the eval spec .* reads them from another"):
        detect.detect_images(config, str(tmp_path), image)
    config.detection.proposals = 'grid'
    config.evals.val.type = 'classification'
    with pytest.raises(ValueError, match='config.evals has none'):
        detect.detect_images(config, str(tmp_path), image)


def _devkit_detections(directory: str, image_id: str) -> list[tuple[str, float, list[float]]]:
    """(class, score, devkit box x1 y1 x2 y2) of one image in the evaluator's comp4 files, best first."""
    found = []
    for name in os.listdir(directory):
        with open(os.path.join(directory, name)) as f:
            for line in f:
                i, score, *box = line.split()
                if i == image_id:
                    found.append((name.removeprefix('comp4_det_test_').removesuffix('.txt'), float(score),
                                  [float(v) for v in box]))
    return sorted(found, key=lambda d: -d[1])


@pytest.mark.slow
def test_detect_mode_on_a_tiny_trained_detector(tmp_path, scenes_dir):
    """2 training steps (and the evaluation), then `python -m convnets.main --mode=detect` on: the first test scene's
    own PNG file (its detections must be the evaluator's, mapped back to its pixels), a PNG A (64x80), B = A
    enlarged 2x (128x160, given as an extra file argument as an unquoted glob would be) and a JPEG of 90x70. The
    eval spec scales the shorter side to 64, so B's input equals A's exactly: B's boxes must be A's times 2."""
    import tensorflow_datasets as tfds

    from convnets.data import pipeline
    from convnets.train import loop

    spec = SPEC.format('resize_short_capped(64, 128)|')
    c = _tiny(scenes_dir, num_train_steps=2)
    c.data.eval_preprocess = spec
    c.evals.val.score_threshold, c.evals.val.max_detections = 0.0, 8
    workdir = str(tmp_path / 'run')
    loop.train_and_evaluate(c, workdir)
    photos = tmp_path / 'photos'
    photos.mkdir()
    record = next(iter(pipeline.get_builder(c.data).as_dataset(
        split='test', shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()})))
    (photos / 'scene.png').write_bytes(record['image'].numpy())  # the bytes the evaluation decoded as image 0
    scene_id = os.path.splitext(record['image/filename'].numpy().decode())[0]  # its id in the devkit files
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (64, 80, 3))
    _png(photos / 'a.png', a)
    path_b = _png(tmp_path / 'b.png', np.repeat(np.repeat(a, 2, axis=0), 2, axis=1))
    path_c = str(photos / 'c.jpg')
    Image.fromarray(rng.integers(0, 256, (90, 70, 3)).astype(np.uint8)).save(path_c, format='JPEG')
    out = str(tmp_path / 'out')
    cmd = cli.main_command(workdir, scenes_dir, '--config.model.stage_widths=(8, 16)',
                           '--config.model.fc_features=32', '--config.detection.grid_stride=16',
                           '--config.batch_size=8', '--config.eval_batch_size=8',
                           f'--config.data.eval_preprocess={spec}',
                           '--mode=detect', f'--images={photos}', '--detect_score_threshold=0',
                           '--detect_max_detections=5', '--detect_draw_threshold=0', f'--detect_out={out}', path_b,
                           config='experiments/fast_rcnn_quickstart.py')
    proc = cli.run(cmd, num_devices=1)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = json.loads(proc.stdout.strip().splitlines()[-1])
    assert line == {'step': 2, 'json': os.path.join(out, 'detections.json'), 'images': 4, 'detections': 20}
    with open(line['json']) as f:
        result = json.load(f)
    # The flags override the config's evaluator entry (score_threshold 0.05, max_detections 100 on this command line).
    assert result['max_detections'] == 5 and result['score_threshold'] == 0 and result['nms_iou'] == 0.3
    by_name = {os.path.basename(r['file']): r for r in result['images']}
    assert list(by_name) == ['a.png', 'c.jpg', 'scene.png', 'b.png']
    scene = by_name['scene.png']
    sizes = {'a.png': (80, 64), 'b.png': (160, 128), 'c.jpg': (70, 90),
             'scene.png': (scene['width'], scene['height'])}
    names = {'zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'}
    for name, r in by_name.items():
        assert (r['width'], r['height']) == sizes[name]
        dets = r['detections']
        assert len(dets) == 5 and {d['class'] for d in dets} <= names
        scores = [d['score'] for d in dets]
        assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
        for d in dets:
            x1, y1, x2, y2 = d['box']
            assert 0 <= x1 <= x2 <= r['width'] and 0 <= y1 <= y2 <= r['height']
        with Image.open(os.path.join(out, r['picture'])) as picture:
            assert picture.size == sizes[name]
    assert by_name['a.png']['scale'] == [1.0, 1.0] and by_name['b.png']['scale'] == [0.5, 0.5]
    np.testing.assert_allclose(by_name['c.jpg']['scale'], [82 / 90, 64 / 70], rtol=1e-6)  # 90 x 70 -> 82 x 64
    da, db = by_name['a.png']['detections'], by_name['b.png']['detections']
    assert [d['class'] for d in da] == [d['class'] for d in db]
    np.testing.assert_allclose([d['score'] for d in db], [d['score'] for d in da], atol=1e-5)
    np.testing.assert_allclose([d['box'] for d in db], [[2 * v for v in d['box']] for d in da], atol=0.03)
    # The evaluator's best 5 of test image 0 (devkit files: its file name's stem, 1-based x1 y1, in the model input's
    # pixels: this tiny config's eval spec has no image_scale batch key).
    evaluated = _devkit_detections(os.path.join(workdir, 'detections', 'val'), scene_id)[:5]
    sx, sy = scene['scale'][1], scene['scale'][0]
    assert [d['class'] for d in scene['detections']] == [e[0] for e in evaluated]
    np.testing.assert_allclose([d['score'] for d in scene['detections']], [e[1] for e in evaluated], atol=1e-5)
    mapped = [[x1 * sx + 1, y1 * sy + 1, x2 * sx, y2 * sy] for x1, y1, x2, y2 in (d['box'] for d in
                                                                                  scene['detections'])]
    np.testing.assert_allclose(mapped, [e[2] for e in evaluated], atol=0.02)
