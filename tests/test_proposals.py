"""Region proposals: selective search (R-CNN's fast mode through OpenCV), the per-split cache, the authors' .mat
files, and the `load_proposals` op whose boxes follow every geometric op like the ground truth (numpy references)."""

import os
import sys

import numpy as np
import pytest
import scipy.io
import tensorflow as tf

from convnets.data import ops
from convnets.data import proposals as P


def _scene(height: int = 90, width: int = 120) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """Flat background with two flat rectangles (edge boxes (y1, x1, y2, x2)), a little noise."""
    rng = np.random.default_rng(0)
    image = np.full((height, width, 3), (40, 90, 40), np.uint8)
    objects = [(10, 12, 50, 60), (40, 70, 85, 112)]
    for (y1, x1, y2, x2), colour in zip(objects, [(220, 30, 30), (30, 30, 220)], strict=True):
        image[y1:y2, x1:x2] = colour
    noise = rng.integers(-3, 4, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8), objects


def test_opencv_rects_become_edge_boxes_and_small_or_repeated_ones_go():
    boxes = P.rects_to_boxes(np.array([[3, 5, 10, 20], [0, 0, 30, 25]]))  # (x, y, w, h)
    np.testing.assert_array_equal(boxes, [[5, 3, 25, 13], [0, 0, 25, 30]])
    raw = np.array([[0, 0, 30, 30], [5, 5, 10, 40], [0, 0, 30, 30], [1, 2, 41, 42], [5, 5, 24, 40]])
    # Sides under 20 (rows 1 and 4: heights 5 and 19) and the repeat of row 0 go; order kept (R-CNN's ranking).
    np.testing.assert_array_equal(P.filter_boxes(raw), [[0, 0, 30, 30], [1, 2, 41, 42]])


def test_selective_search_finds_the_objects_of_a_flat_scene_reproducibly():
    image, objects = _scene()
    boxes = P.selective_search(image)
    assert boxes.dtype == np.int64 and boxes.shape[1] == 4 and len(boxes) > 5
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 90) and np.all(boxes[:, 3] <= 120)
    assert np.all(boxes[:, 2] - boxes[:, 0] >= 20) and np.all(boxes[:, 3] - boxes[:, 1] >= 20)
    assert len(np.unique(boxes, axis=0)) == len(boxes)
    for box in objects:  # each flat rectangle is a region of the segmentation: its exact box is proposed
        assert any((boxes == box).all(axis=1)), box
    np.testing.assert_array_equal(P.selective_search(image), boxes)  # the ranking is seeded per image
    assert sorted(map(tuple, P.selective_search(image, seed=1))) == sorted(map(tuple, boxes))


def test_a_missing_opencv_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, 'cv2', None)
    with pytest.raises(P.MissingOpenCVError, match=r"pip install 'convnets\[proposals\]'"):
        P.selective_search(np.zeros((30, 30, 3), np.uint8))


def test_cache_round_trip_and_errors_name_the_file_and_the_command(tmp_path):
    out = str(tmp_path / 'cache')
    names = ['a.jpg', 'b.jpg', 'c.jpg']
    boxes = [np.array([[0, 0, 10, 20], [1, 2, 3, 4], [5, 5, 9, 9]]), np.zeros((0, 4)), np.array([[2, 2, 30, 40]])]
    path = P.write(out, 'voc/2007', 'train+validation', names, boxes, 'rcnn_fast', max_proposals=2)
    assert path == os.path.join(out, 'voc_2007', 'train+validation.npz')
    cache = P.read(out, 'voc/2007', 'train[:1]+validation[:1]')  # slices are served by the whole split's cache
    np.testing.assert_array_equal(cache.of('a.jpg'), boxes[0][:2])  # max_proposals keeps the first ones
    assert cache.of('b.jpg').shape == (0, 4) and cache.manifest['count'] == 3
    with pytest.raises(FileNotFoundError, match=r"no proposals for voc/2007 split 'test' .*make_proposals "
                                                r"--data=voc/2007 --split=test"):
        P.read(out, 'voc/2007', 'test')
    with pytest.raises(FileNotFoundError, match='does not exist'):
        P.read(str(tmp_path / 'nowhere'), 'voc/2007', 'test')
    with pytest.raises(ValueError, match='proposals_dir'):
        P.read('', 'voc/2007', 'test')
    # A cache renamed to another split: its manifest says what it was made for.
    os.rename(path, os.path.join(out, 'voc_2007', 'test.npz'))
    os.rename(path[:-4] + '.json', os.path.join(out, 'voc_2007', 'test.json'))
    with pytest.raises(ValueError, match=r"test.json was made for voc/2007 split 'train\+validation', not voc/2007 "
                                         r"split 'test'.*--split=test"):
        P.read(out, 'voc/2007', 'test')


def test_published_mat_files_are_one_based_y_x_and_become_edges(tmp_path):
    """R-CNN's selective_search_data/*.mat: cell arrays 'images' (ids) and 'boxes', rows (y1, x1, y2, x2) of 1-based
    inclusive pixels (fast-rcnn's pascal_voc.py: raw[:, (1, 0, 3, 2)] - 1 gives 0-based (x1, y1, x2, y2))."""
    images = np.empty((1, 2), object)
    images[0, 0], images[0, 1] = np.array(['000005']), np.array(['000007'])
    cells = np.empty((1, 2), object)
    cells[0, 0] = np.array([[1, 1, 60, 80], [11, 21, 30, 40]], np.float64)
    cells[0, 1] = np.zeros((0, 4))
    file = str(tmp_path / 'voc_2007_trainval.mat')
    scipy.io.savemat(file, {'images': images, 'boxes': cells})
    names, boxes = P.read_mat(file)
    assert names == ['000005.jpg', '000007.jpg']
    # Pixels 1..60 (rows) x 1..80 (columns) are the edges [0, 60] x [0, 80]; the devkit's 0-based (x1, y1, x2, y2)
    # of the second box is (20, 10, 39, 29) inclusive, i.e. edges y 10..30, x 20..40.
    np.testing.assert_array_equal(boxes[0], [[0, 0, 60, 80], [10, 20, 30, 40]])
    assert boxes[1].shape == (0, 4)
    scipy.io.savemat(file, {'rois': cells})
    with pytest.raises(ValueError, match="no 'images' and 'boxes'"):
        P.read_mat(file)


def _example(height=30, width=40, filename='a.jpg'):
    return {'image': tf.zeros([height, width, 3], tf.uint8), 'image/filename': tf.constant(filename),
            'boxes': tf.constant([[2.0, 4.0, 20.0, 30.0]])}


def test_load_proposals_follow_resize_flip_and_pad_like_the_boxes(tmp_path):
    out = str(tmp_path)
    props = np.array([[2, 4, 20, 30], [0, 0, 30, 40], [5, 10, 25, 35]])
    P.write(out, 'ds', 'train', ['a.jpg'], [props], 'rcnn_fast')
    spec = f"load_proposals({out!r}, 'ds', 'train', 4)|resize_short_capped(600, 1000)|hflip|pad_to(1000)"
    got = ops.parse(spec)(_example(), tf.constant([0, 0], tf.int64))
    # Numpy: 30x40 -> 600x800 (short side 600), x -> 800 - x, padding at the bottom/right moves nothing.
    sy, sx = 600 / 30, 800 / 40
    want = props * [sy, sx, sy, sx]
    want = np.stack([want[:, 0], 800 - want[:, 3], want[:, 2], 800 - want[:, 1]], axis=-1)
    np.testing.assert_allclose(got['proposals'][:3], want, rtol=1e-6)
    np.testing.assert_array_equal(got['proposal_mask'], [True, True, True, False])
    np.testing.assert_array_equal(got['boxes'][0], got['proposals'][0])  # the same box moved the same way
    assert got['image'].shape == (1000, 1000, 3)
    # A random flip moves both with one draw, and the example is a pure function of its seed.
    flip = ops.parse(f"load_proposals({out!r}, 'ds', 'train', 4)|flip_lr")
    for seed in range(6):
        a = flip(_example(), tf.constant([seed, 1], tf.int64))
        b = flip(_example(), tf.constant([seed, 1], tf.int64))
        np.testing.assert_array_equal(a['proposals'][0], a['boxes'][0])
        np.testing.assert_array_equal(a['proposals'], b['proposals'])
    # Crops and resizes too (every geometric op moves the 'image' box keys): the proposal equal to the gt box stays so.
    for spec in ('random_crop(20)', 'center_crop(24)', 'resize((50, 70))', 'inception_crop(16)', 'random_ten_crop(20)'):
        chain = ops.parse(f"load_proposals({out!r}, 'ds', 'train', 4)|{spec}")
        moved = chain(_example(), tf.constant([3, 4], tf.int64))
        np.testing.assert_array_equal(moved['proposals'][0], moved['boxes'][0], err_msg=spec)
    # max_proposals below the count keeps the first (ranked) ones.
    two = ops.parse(f"load_proposals({out!r}, 'ds', 'train', 2)")(_example(), tf.constant([0, 0], tf.int64))
    np.testing.assert_array_equal(two['proposals'], props[:2])
    np.testing.assert_array_equal(two['proposal_mask'], [True, True])


def test_load_proposals_errors_name_the_image_and_the_cache(tmp_path):
    out = str(tmp_path)
    P.write(out, 'ds', 'train', ['a.jpg'], [np.array([[0, 0, 30, 50]])], 'rcnn_fast')
    fn = ops.parse(f"load_proposals({out!r}, 'ds', 'train')")
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"(?s)not in the proposal cache .*train.npz.*b.jpg"):
        fn(_example(filename='b.jpg'), tf.constant([0, 0], tf.int64))
    with pytest.raises(tf.errors.InvalidArgumentError, match='reach outside their image'):
        fn(_example(), tf.constant([0, 0], tf.int64))  # a 30x40 image, a box 50 wide: a cache of other images
    late = ops.parse(f"resize_short_capped(600, 1000)|load_proposals({out!r}, 'ds', 'train')")
    with pytest.raises(ValueError, match='before resize_short_capped'):
        late(_example(), tf.constant([0, 0], tf.int64))
    with pytest.raises(FileNotFoundError, match=r"no proposals for ds split 'test'"):
        ops.parse(f"load_proposals({out!r}, 'ds', 'test')")


def test_the_five_scale_pyramid_draws_one_scale_per_image_from_its_seed():
    """Fast R-CNN sec. 2.3 / 5.2: a scale of {480, 576, 688, 864, 1200} per sampled image, longer side <= 2000."""
    fn = ops.parse('resize_short_capped((480, 576, 688, 864, 1200), 2000)')
    shorts = []
    for seed in range(40):
        out = fn(_example(30, 40), tf.constant([seed, 7], tf.int64))
        h, w = out['image'].shape[:2]
        shorts.append(min(h, w))
        assert max(h, w) <= 2000
        np.testing.assert_allclose(out['boxes'][0], np.array([2, 4, 20, 30]) * [h / 30, w / 40, h / 30, w / 40],
                                   rtol=1e-6)
    assert set(shorts) == {480, 576, 688, 864, 1200}  # 30x40 at 1200 -> 1200x1600: under the 2000 cap
    again = fn(_example(30, 40), tf.constant([3, 7], tf.int64))['image'].shape
    assert min(again[:2]) == shorts[3]


def test_a_failed_check_while_reading_batches_is_the_ops_own_message(tmp_path):
    """A record the cache lacks surfaces while the batches are read: records.checked turns TF's assertion into a
    DataCheckError (a ValueError: a few lines on the command line) carrying the op's message and the image."""
    from convnets.data import records

    out = str(tmp_path)
    P.write(out, 'ds', 'train', ['a.jpg'], [np.array([[0, 0, 30, 50]])], 'rcnn_fast')
    fn = ops.parse(f"load_proposals({out!r}, 'ds', 'train')")
    example = _example(filename='b.jpg')
    ds = tf.data.Dataset.from_tensors(example).map(lambda x: fn(x, tf.constant([0, 0], tf.int64)))
    with pytest.raises(records.DataCheckError, match=r"not in the proposal cache .*train.npz.* Image: b.jpg$"):
        list(records.checked(ds.as_numpy_iterator(), None, 'train'))
