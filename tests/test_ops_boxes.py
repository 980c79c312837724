"""Boxes follow the pixels: every geometric op moves features['boxes'] exactly as it moves the image.

Each test image has one channel per box, 255 inside the box and 0 outside, so that after any chain of ops
the box can be found again in the pixels (the bounding box of the channel's pixels above half height) and
compared with the transformed coordinates. Pixel-edge convention: rows 2..5 inclusive are ymin=2, ymax=6.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops
from convnets.data.ops import boxes as box_ops

# (ymin, xmin, ymax, xmax) in pixel edges of a 40 x 60 image; overlapping is fine (one channel each).
BOXES = np.array([[4, 6, 20, 30], [0, 40, 12, 60], [22, 2, 40, 18], [10, 20, 34, 52]], np.float32)
H, W = 40, 60
SEED = tf.constant([7, 11], tf.int64)


def _box_image(h: int, w: int, boxes: np.ndarray) -> np.ndarray:
    """uint8 [h, w, N]: channel k is 255 inside box k (integer pixel edges), 0 elsewhere."""
    image = np.zeros((h, w, len(boxes)), np.uint8)
    for k, (y0, x0, y1, x1) in enumerate(boxes.astype(int)):
        image[y0:y1, x0:x1, k] = 255
    return image


def _found(image: np.ndarray) -> list[np.ndarray | None]:
    """Per channel: the pixel-edge bounding box of the pixels above half height, or None if there are none."""
    out = []
    for k in range(image.shape[-1]):
        rows, cols = np.nonzero(image[..., k] > 127.5)
        out.append(None if rows.size == 0 else np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]))
    return out


def _features(boxes=BOXES, h=H, w=W) -> dict:
    return {
        "image": tf.constant(_box_image(h, w, boxes)),
        "boxes": tf.constant(boxes),
        "box_classes": tf.range(len(boxes), dtype=tf.int32),
        "box_difficult": tf.constant([False, True, False, False][: len(boxes)]),
    }


def _assert_boxes_follow(out: dict, tol: float) -> None:
    """The boxes in out['boxes'] are where the pixels of their channels are (edges within tol pixels).

    A box emptied by a crop has no pixels; a box thinner than a pixel may also have none after resampling.
    """
    boxes = out["boxes"].numpy()
    image = out["image"].numpy()
    assert boxes.shape == (len(BOXES), 4) and boxes.dtype == np.float32
    h, w = image.shape[-3:-1]
    assert np.all(boxes >= 0) and np.all(boxes[:, [0, 2]] <= h) and np.all(boxes[:, [1, 3]] <= w)
    for k, found in enumerate(_found(image)):
        sides = boxes[k, 2:] - boxes[k, :2]
        if found is None:
            assert sides.min() <= 1.0 + 1e-4, f"box {k} {boxes[k]} has no pixels in the output"
        else:
            np.testing.assert_allclose(boxes[k], found, atol=tol + 1e-3, err_msg=f"box {k}")
    # Rows are never removed or reordered by geometric ops: classes stay aligned.
    np.testing.assert_array_equal(out["box_classes"].numpy(), np.arange(len(BOXES)))


def _seeds(n: int) -> list[tf.Tensor]:
    return [tf.constant([5, s], tf.int64) for s in range(n)]


@pytest.mark.parametrize(
    "spec, tol",
    [
        # Exact: integer shifts, flips and resize factors (nearest neighbour, even box edges).
        ("flip_lr", 0),
        ("hflip", 0),
        ("pad(3)", 0),
        ("center_crop((30, 36))", 0),
        ("random_crop((24, 32))", 0),
        ("random_crop((40, 60), pad=8)", 0),
        ("random_ten_crop((30, 40))", 0),
        ("resize((80, 30), 'nearest')", 0),
        ("resize((20, 120), 'nearest')|random_crop((16, 100), pad=2)|flip_lr", 0),
        ("pad(4)|random_crop((36, 50))|flip_lr|flip_lr", 0),
        # Any scale factor: nearest sampling puts an edge within half an output pixel of the scaled edge,
        # and so does bilinear interpolation thresholded at half height.
        ("resize((31, 17), 'nearest')", 0.5),
        ("resize((53, 71))", 0.5),
        ("resize_short(27, 'nearest')", 0.5),
        ("random_resize_short(20, 70, 'nearest')", 0.5),
        ("random_resize_short(30, 50)|random_crop(28)|flip_lr", 0.5),
        ("inception_crop(48)", 0.5),
        ("inception_crop((30, 50), area_min=0.2)|flip_lr", 0.5),
    ],
)
def test_boxes_follow_the_pixels(spec, tol):
    fn = ops.parse(spec)
    outcomes = set()
    for seed in _seeds(12):
        out = fn(_features(), seed)
        _assert_boxes_follow(out, tol)
        outcomes.add(out["boxes"].numpy().tobytes())
    if any(name in spec for name in ("random", "flip_lr", "inception")):
        assert len(outcomes) > 1, "the random op drew the same transform for every seed"


def test_boxes_follow_inside_tf_data_with_dynamic_shapes():
    """Graph mode with unknown height and width (as from decoded JPEGs) gives the eager result."""
    spec = ops.parse("random_resize_short(30, 50)|random_crop(28, pad=2)|flip_lr|pad_boxes(6)")
    seeds = tf.stack(_seeds(8))
    features = {k: tf.stack([v] * 8) for k, v in _features().items()}
    dynamic = tf.data.Dataset.from_tensor_slices((features, seeds)).map(
        lambda x, s: ({**x, "image": tf.ensure_shape(tf.identity(x["image"]), [None, None, len(BOXES)])}, s)
    )
    for (x, s), out in zip(dynamic, dynamic.map(spec), strict=True):
        eager = spec(x, s)
        assert set(out) == set(eager) == {"image", "boxes", "box_classes", "box_difficult", "box_mask"}
        for key in eager:
            np.testing.assert_array_equal(out[key].numpy(), eager[key].numpy())


def test_crop_clips_boxes_and_keeps_empty_ones():
    # Rows 12..27, columns 20..39: boxes 1 and 2 lie outside, box 0 is cut, box 3 covers the crop.
    out = ops.parse("center_crop((16, 20))")(_features(), SEED)
    top, left = 12, 20
    expected = np.clip(BOXES - [top, left, top, left], 0, [16, 20, 16, 20])
    np.testing.assert_array_equal(out["boxes"].numpy(), expected)
    # Outside the crop: kept, with zero area (pad_boxes drops them).
    np.testing.assert_array_equal(box_ops.area(out["boxes"]).numpy(), [80, 0, 0, 320])
    assert out["box_difficult"].numpy().tolist() == [False, True, False, False]


def test_boxes_key_choice():
    # Ops on another key leave the image's boxes alone; boxes_key='' disables, boxes_key=... redirects.
    features = {**_features(), "other": tf.zeros([10, 20, 1])}
    out = ops.parse("hflip(key='other')|resize(5, key='other')")(features, SEED)
    np.testing.assert_array_equal(out["boxes"].numpy(), BOXES)
    out = ops.parse("hflip(boxes_key='')")(features, SEED)
    np.testing.assert_array_equal(out["boxes"].numpy(), BOXES)
    features["other_boxes"] = tf.constant([[0.0, 0.0, 10.0, 5.0]])
    out = ops.parse("hflip(key='other', boxes_key='other_boxes')")(features, SEED)
    np.testing.assert_array_equal(out["other_boxes"].numpy(), [[0, 15, 10, 20]])
    np.testing.assert_array_equal(out["boxes"].numpy(), BOXES)
    # Multi-view ops write 'crops' and leave 'image' and its boxes.
    out = ops.parse("ten_crop(20)")(_features(), SEED)
    np.testing.assert_array_equal(out["image"].numpy(), _box_image(H, W, BOXES))
    np.testing.assert_array_equal(out["boxes"].numpy(), BOXES)


def test_pad_boxes_drops_empty_then_keeps_the_first():
    boxes = np.array(
        [[0, 0, 0, 5], [1, 1, 3, 3], [2, 2, 2, 2], [4, 4, 9, 9], [5, 0, 6, 1], [7, 7, 8, 9]], np.float32
    )  # rows 0 and 2 have zero area
    features = {
        "boxes": tf.constant(boxes),
        "box_classes": tf.constant([10, 11, 12, 13, 14, 15]),
        "box_difficult": tf.constant([True, False, True, True, False, True]),
    }
    out = ops.get("pad_boxes", 3)(features, SEED)
    np.testing.assert_array_equal(out["boxes"].numpy(), boxes[[1, 3, 4]])
    assert out["box_classes"].numpy().tolist() == [11, 13, 14]
    assert out["box_difficult"].numpy().tolist() == [False, True, False]
    assert out["box_mask"].numpy().tolist() == [True, True, True]
    out = ops.get("pad_boxes", 6)(features, SEED)
    np.testing.assert_array_equal(out["boxes"].numpy(), np.concatenate([boxes[[1, 3, 4, 5]], np.zeros((2, 4))]))
    assert out["box_classes"].numpy().tolist() == [11, 13, 14, 15, 0, 0]
    assert out["box_difficult"].numpy().tolist() == [False, True, False, True, False, False]
    assert out["box_mask"].numpy().tolist() == [True] * 4 + [False] * 2
    out = ops.parse("pad_boxes(8)|pad_boxes(5)")(features, SEED)  # idempotent on masked rows
    assert out["box_mask"].numpy().tolist() == [True] * 4 + [False]
    assert out["box_classes"].numpy().tolist() == [11, 13, 14, 15, 0]
    thick = ops.get("pad_boxes", 3, min_size=2)(features, SEED)  # rows 4 and 5 are 1 pixel thin
    np.testing.assert_array_equal(thick["boxes"].numpy(), np.concatenate([boxes[[1, 3]], np.zeros((1, 4))]))
    assert thick["box_mask"].numpy().tolist() == [True, True, False]
    assert ops.get("drop_empty_boxes", 2)(features, SEED)["box_classes"].numpy().tolist() == [11, 13]
    dropped = ops.get("drop_empty_boxes")(features, SEED)
    np.testing.assert_array_equal(dropped["boxes"].numpy(), boxes[[1, 3, 4, 5]])
    assert dropped["box_classes"].numpy().tolist() == [11, 13, 14, 15]
    # Static shapes for batching, also from a dynamic number of boxes.
    ds = tf.data.Dataset.from_tensors(features).map(lambda x: ops.get("drop_empty_boxes")(x, None))
    padded = ds.map(lambda x: ops.get("pad_boxes", 7)(x, None))
    assert padded.element_spec["boxes"].shape.as_list() == [7, 4]
    assert padded.element_spec["box_mask"].shape.as_list() == [7]
    with pytest.raises(ValueError, match="objects_to_boxes"):
        ops.get("pad_boxes", 3)({"image": tf.zeros([2, 2, 1])}, None)


def test_objects_to_boxes_converts_normalized_tfds_boxes_to_pixels():
    image = tf.zeros([40, 60, 3], tf.uint8)
    objects = {
        "bbox": tf.constant([[0.1, 0.1, 0.5, 0.5], [0.0, 0.0, 1.0, 1.0]], tf.float32),
        "label": tf.constant([7, 2], tf.int64),
        "is_difficult": tf.constant([False, True]),
        "pose": tf.constant([0, 1], tf.int64),
    }
    out = ops.get("objects_to_boxes")({"image": image, "objects": objects, "label": 1}, None)
    assert set(out) == {"image", "label", "boxes", "box_classes", "box_difficult"}
    np.testing.assert_allclose(out["boxes"].numpy(), [[4, 6, 20, 30], [0, 0, 40, 60]], rtol=1e-6)
    assert out["box_classes"].dtype == tf.int32 and out["box_classes"].numpy().tolist() == [7, 2]
    assert out["box_difficult"].numpy().tolist() == [False, True]
    no_flag = ops.get("objects_to_boxes")({"image": image, "objects": {k: objects[k] for k in ("bbox", "label")}}, None)
    assert no_flag["box_difficult"].numpy().tolist() == [False, False]
    with pytest.raises(ValueError, match="put decode before it"):
        ops.get("objects_to_boxes")({"image": tf.constant(b"png"), "objects": objects}, None)
    with pytest.raises(ValueError, match="no feature 'objects'"):
        ops.get("objects_to_boxes")({"image": image}, None)
