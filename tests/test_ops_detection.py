"""Fixed-shape detection preprocessing: Fast R-CNN's capped resize, padding to a canvas, and bad boxes.

Boxes are pixel edges (see ``convnets.data.ops.boxes``); expected values are worked out by hand in comments.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops
from convnets.data.ops import geometry

SEED = tf.constant([7, 11], tf.int64)
SPEC = "decode(3)|objects_to_boxes|resize_short_capped(600, 1000)|flip_lr|pad_to(1000)|pad_boxes(64)"


def _record(h: int, w: int, boxes: list, labels: list, difficult: list | None = None) -> dict:
    """A TFDS-voc-like record: PNG bytes and normalized objects."""
    image = np.zeros((h, w, 3), np.uint8)
    for k, (y0, x0, y1, x1) in enumerate(boxes):
        image[int(y0) : int(y1), int(x0) : int(x1), k % 3] = 255
    bbox = np.array(boxes, np.float64).reshape(-1, 4) / [h, w, h, w]
    return {
        "image": tf.io.encode_png(image),
        "objects": {
            "bbox": tf.constant(bbox, tf.float32),
            "label": tf.constant(labels, tf.int64),
            "is_difficult": tf.constant(difficult or [False] * len(labels)),
        },
    }


@pytest.mark.parametrize(
    "h, w, expected",
    [
        (375, 500, (600, 800)),  # VOC's typical size: 600/375 = 1.6, 500 * 1.6 = 800 <= 1000
        (500, 375, (800, 600)),
        (300, 1000, (300, 1000)),  # 600/300 * 1000 = 2000 > 1000: the long side is capped, 1000/1000 = 1
        (100, 2000, (50, 1000)),
        (333, 500, (600, 901)),  # 500 * 600/333 = 900.9 -> 901
        (600, 1001, (599, 1000)),  # scale 1 would leave 1001 > 1000: capped, 600 * 1000/1001 = 599.4 -> 599
    ],
)
def test_capped_size_follows_prep_im_for_blob(h, w, expected):
    got = geometry.capped_size(h, w, 600, 1000)
    assert (int(got[0]), int(got[1])) == expected
    # py-faster-rcnn's rule in floats gives the same sizes here.
    s = 600 / min(h, w)
    if round(s * max(h, w)) > 1000:
        s = 1000 / max(h, w)
    assert expected == (round(h * s), round(w * s))


def test_resize_short_capped_scales_boxes_and_records_the_scale():
    image = np.zeros((30, 40, 1), np.uint8)
    features = {"image": tf.constant(image), "boxes": tf.constant([[3.0, 4.0, 15.0, 40.0]])}
    out = ops.get("resize_short_capped", 60, 100)(features, SEED)  # 30x40 -> 60x80, both axes x2
    assert out["image"].shape == (60, 80, 1) and out["image"].dtype == tf.float32
    np.testing.assert_array_equal(out["boxes"].numpy(), [[6, 8, 30, 80]])
    np.testing.assert_array_equal(out["image_scale"].numpy(), [2, 2])
    capped = ops.get("resize_short_capped", 60, 50)(features, SEED)  # 80 > 50: 30x40 -> round(37.5)=38 x 50
    assert capped["image"].shape == (38, 50, 1)
    np.testing.assert_allclose(capped["boxes"].numpy(), [[3 * 38 / 30, 5, 15 * 38 / 30, 50]], rtol=1e-6)
    np.testing.assert_allclose(capped["image_scale"].numpy(), [38 / 30, 50 / 40], rtol=1e-6)
    # A second resize multiplies the scale: image_scale always maps back to the decoded image.
    twice = ops.get("resize_short_capped", 30, 100)(out, SEED)
    np.testing.assert_allclose(twice["image_scale"].numpy(), [1, 1])


def test_resize_short_capped_multi_scale_draws_one_scale_per_seed():
    op = ops.get("resize_short_capped", [10, 20, 30], 1000)
    image = tf.zeros((5, 8, 3), tf.uint8)
    shorts = {int(op({"image": image}, tf.constant([i, 0], tf.int64))["image"].shape[0]) for i in range(40)}
    assert shorts == {10, 20, 30}
    again = op({"image": image}, SEED)["image"].shape
    assert all(op({"image": image}, SEED)["image"].shape == again for _ in range(3))


def test_pad_to_keeps_boxes_and_records_the_image_size():
    image = tf.fill((20, 30, 3), tf.constant(7, tf.uint8))
    out = ops.get("pad_to", (32, 40))({"image": image, "boxes": tf.constant([[1.0, 2.0, 20.0, 30.0]])}, SEED)
    assert out["image"].shape == (32, 40, 3) and out["image"].dtype == tf.uint8
    np.testing.assert_array_equal(out["boxes"].numpy(), [[1, 2, 20, 30]])
    np.testing.assert_array_equal(out["image_size"].numpy(), [20, 30])
    pixels = out["image"].numpy()
    assert (pixels[:20, :30] == 7).all() and not pixels[20:].any() and not pixels[:, 30:].any()
    with pytest.raises(tf.errors.InvalidArgumentError, match="larger than the canvas"):
        ops.get("pad_to", 25)({"image": image}, SEED)
    with pytest.raises(ValueError, match="pad_to"):
        ops.get("pad_to", 0)


def _flip_seeds() -> dict[bool, tf.Tensor]:
    """A seed for which the spec's flip_lr flips, and one for which it does not."""
    found = {}
    for i in range(50):
        seed = tf.constant([i, 3], tf.int64)
        features = ops.parse("flip_lr")({"image": tf.constant([[[0], [1]]])}, seed)
        found.setdefault(bool(features["image"].numpy()[0, 0, 0] == 1), seed)
        if len(found) == 2:
            return found
    raise AssertionError("no seed of each kind")


def test_the_fast_rcnn_spec_yields_fixed_shapes_with_exact_boxes():
    # 375x500 -> 600x800 (x1.6); flipped: x -> 800 - x.
    record = _record(375, 500, [[10, 20, 100, 250], [200, 300, 375, 500]], [4, 11], [False, True])
    spec = ops.parse(SPEC)
    for flipped, seed in _flip_seeds().items():
        out = spec(record, seed)
        assert {k: tuple(v.shape) for k, v in out.items()} == {
            "image": (1000, 1000, 3),
            "boxes": (64, 4),
            "box_classes": (64,),
            "box_difficult": (64,),
            "box_mask": (64,),
            "image_scale": (2,),
            "image_size": (2,),
        }
        boxes = np.array([[16, 32, 160, 400], [320, 480, 600, 800]], np.float32)
        if flipped:
            boxes = np.array([[16, 400, 160, 768], [320, 0, 600, 320]], np.float32)
        np.testing.assert_allclose(out["boxes"].numpy()[:2], boxes, atol=1e-4)
        assert not out["boxes"].numpy()[2:].any()
        assert out["box_mask"].numpy().tolist() == [True, True] + [False] * 62
        assert out["box_classes"].numpy()[:3].tolist() == [4, 11, 0]
        assert out["box_difficult"].numpy()[:3].tolist() == [False, True, False]
        np.testing.assert_array_equal(out["image_size"].numpy(), [600, 800])
        np.testing.assert_allclose(out["image_scale"].numpy(), [1.6, 1.6])
        image = out["image"].numpy()
        assert not image[600:].any() and not image[:, 800:].any()
        # Box 0 sits on its pixels (channel 0): bilinear edges blur by at most a scale's worth of pixels.
        rows, cols = np.nonzero(image[..., 0] > 127.5)
        np.testing.assert_allclose([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1], boxes[0], atol=1)


def test_the_spec_in_tf_data_with_unknown_image_sizes():
    records = [_record(375, 500, [[10, 20, 100, 250]], [3]), _record(500, 300, [], [])]

    def gen():
        for r in records:
            yield {"image": r["image"].numpy(), "objects": {k: v.numpy() for k, v in r["objects"].items()}}

    signature = {
        "image": tf.TensorSpec([], tf.string),
        "objects": {
            "bbox": tf.TensorSpec([None, 4], tf.float32),
            "label": tf.TensorSpec([None], tf.int64),
            "is_difficult": tf.TensorSpec([None], tf.bool),
        },
    }
    spec = ops.parse(SPEC.replace("flip_lr|", ""))
    ds = tf.data.Dataset.from_generator(gen, output_signature=signature).map(lambda x: spec(x, SEED)).batch(2)
    batch = next(iter(ds))
    assert batch["image"].shape == (2, 1000, 1000, 3) and batch["boxes"].shape == (2, 64, 4)
    np.testing.assert_allclose(batch["boxes"][0, 0].numpy(), [16, 32, 160, 400], atol=1e-4)
    # The image with no objects: all padding, mask all False. 500x300 -> 1000x600 (capped: 600/300 * 500 = 1000).
    assert not batch["box_mask"][1].numpy().any() and not batch["boxes"][1].numpy().any()
    np.testing.assert_array_equal(batch["image_size"].numpy(), [[600, 800], [1000, 600]])


def test_objects_to_boxes_voc_one_based():
    # TFDS voc stores VOC's 1-based (xmin=1 .. xmax=10) as 1/W .. 10/W; the pixels are edges 0..10.
    record = {"image": tf.zeros((20, 40, 3), tf.uint8),
              "objects": {"bbox": tf.constant([[2 / 20, 1 / 40, 12 / 20, 10 / 40]]), "label": tf.constant([1])}}
    plain = ops.get("objects_to_boxes")(record, SEED)["boxes"].numpy()
    fixed = ops.get("objects_to_boxes", voc_one_based=True)(record, SEED)["boxes"].numpy()
    np.testing.assert_allclose(plain, [[2, 1, 12, 10]], atol=1e-5)
    np.testing.assert_allclose(fixed, [[1, 0, 12, 10]], atol=1e-5)


def test_clean_boxes_clips_masks_and_counts_bad_boxes():
    features = {
        "image": tf.zeros((20, 30, 3), tf.uint8),
        "boxes": tf.constant(
            [
                [2, 3, 10, 12],  # fine
                [5, 12, 9, 8],  # xmax <= xmin: dropped
                [-4, 25, 8, 45],  # reaches outside: clipped to (0, 25, 8, 30)
                [22, 5, 30, 9],  # entirely below the image: empty after clipping, dropped
                [4, 4, 4, 9],  # zero height: dropped
            ],
            tf.float32,
        ),
        "box_classes": tf.constant([1, 2, 3, 4, 5]),
    }
    out = ops.parse("clean_boxes|pad_boxes(6)")(features, SEED)
    assert int(out["num_bad_boxes"]) == 3
    np.testing.assert_array_equal(out["boxes"].numpy()[:2], [[2, 3, 10, 12], [0, 25, 8, 30]])
    assert out["box_classes"].numpy().tolist() == [1, 3, 0, 0, 0, 0]
    assert out["box_mask"].numpy().tolist() == [True, True, False, False, False, False]
    none = ops.parse("clean_boxes|pad_boxes(3)")(
        {"image": tf.zeros((8, 8, 3)), "boxes": tf.zeros((0, 4)), "box_classes": tf.zeros((0,), tf.int32)}, SEED
    )
    assert int(none["num_bad_boxes"]) == 0 and not none["box_mask"].numpy().any()
    with pytest.raises(ValueError, match="objects_to_boxes earlier"):
        ops.get("clean_boxes")({"image": tf.zeros((8, 8, 3))}, SEED)
