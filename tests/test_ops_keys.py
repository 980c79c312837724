"""Ops read and write configurable keys: multi-view ops write 'crops', keep / rename, producers, key errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops
from tests.op_testing import SEED, _coords, _image


@pytest.mark.parametrize(
    "name, args, views",
    [("five_crop", "4", 5), ("ten_crop", "4", 10), ("flip_views", "", 2), ("googlenet_crops", "4, 6", 36)],
)
def test_multi_view_ops_write_crops_and_leave_image(name, args, views):
    image = _coords(7, 9)
    out = ops.parse(f"{name}({args})")({"image": tf.constant(image), "label": tf.constant(1)}, SEED)
    assert set(out) == {"image", "crops", "label"}
    np.testing.assert_array_equal(out["image"].numpy(), image)  # untouched
    assert out["crops"].shape[0] == views and out["crops"].shape[-1] == 2
    # inkey / outkey choose other features.
    keys = "inkey='other', outkey='views'"
    moved = ops.parse(f"{name}({args}, {keys})" if args else f"{name}({keys})")({"other": tf.constant(image)}, SEED)
    assert set(moved) == {"other", "views"}
    np.testing.assert_array_equal(moved["views"].numpy(), out["crops"].numpy())


def test_value_ops_on_views_and_keep():
    image = _image(6, 8, 3)
    out = ops.parse("ten_crop(4)|subtract_mean((1, 2, 3), key='crops')|hflip(key='crops')|keep('crops', 'label')")(
        {"image": tf.constant(image), "label": tf.constant(4)}, SEED
    )
    assert set(out) == {"crops", "label"} and int(out["label"]) == 4
    plain = ops.parse("ten_crop(4)")({"image": tf.constant(image)}, SEED)["crops"].numpy()
    np.testing.assert_array_equal(out["crops"].numpy(), (plain - np.float32([1, 2, 3]))[:, :, ::-1])
    with pytest.raises(ValueError, match=r"keep: the example has no feature 'crops' \(it has image, label\)"):
        ops.parse("keep('crops', 'label')")({"image": tf.constant(image), "label": tf.constant(4)}, SEED)
    with pytest.raises(ValueError, match="name the features to keep"):
        ops.parse("keep")
    out = ops.parse("rename('image', 'pixels')|to_float(key='pixels')")({"image": tf.constant(image)}, SEED)
    assert set(out) == {"pixels"}
    np.testing.assert_allclose(out["pixels"].numpy(), image / 255.0, rtol=1e-6)


def test_producers_and_missing_key_errors():
    assert ops.producers("crops") == [
        "five_crop", "flip_views", "googlenet_crops", "grid_crops", "ten_crop", "video_clips"]
    assert ops.producers("box_mask") == ["pad_boxes"]
    assert ops.producers("boxes") == ["objects_to_boxes"]
    assert ops.producers("label") == []
    with pytest.raises(ValueError, match=r"resize: the example has no feature 'image' \(it has video\)"):
        ops.parse("resize(4)")({"video": tf.zeros([2, 4, 4, 3])}, SEED)
    with pytest.raises(ValueError, match="image \\[H, W, C\\] or a clip \\[T, H, W, C\\]"):
        ops.parse("random_crop(2)")({"image": tf.zeros([4, 4])}, SEED)


def test_every_image_op_takes_a_key():
    """Spec-level contract: each op that reads pixels names them with key= (or inkey=/outkey=)."""
    no_key = {"keep", "rename", "objects_to_boxes", "pad_boxes", "drop_empty_boxes"}
    for name in ops.names():
        signature = ops.signature(name)
        if name not in no_key:
            assert "key='image'" in signature, signature
