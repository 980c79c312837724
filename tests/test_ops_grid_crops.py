"""grid_crops: VGG's multi-crop evaluation (Simonyan & Zisserman sec. 3.2), checked against a numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import ops
from tests.op_testing import SEED, _coords, _dynamic, _eager, _image


def _reference(image: np.ndarray, size: int, n: int) -> np.ndarray:
    """n x n crops at offsets round-down(i * (H - size) / (n - 1)), row-major, then the same crops mirrored."""
    height, width = image.shape[:2]

    def starts(span: int) -> list[int]:
        return [span // 2] if n == 1 else [i * span // (n - 1) for i in range(n)]

    crops = [image[t:t + size, s:s + size] for t in starts(height - size) for s in starts(width - size)]
    return np.stack(crops + [c[:, ::-1] for c in crops])


def test_grid_crops_matches_numpy_on_any_aspect_ratio():
    for h, w, size, n in [(7, 12, 4, 5), (12, 7, 4, 5), (9, 9, 3, 3), (5, 8, 5, 2), (6, 6, 4, 1)]:
        image = _coords(h, w)
        out = _eager(ops.parse(f"grid_crops({size}, n={n})"), image, key="crops")
        assert out.shape == (2 * n * n, size, size, 2)
        np.testing.assert_array_equal(out, _reference(image, size, n))
    # Row-major grid from the top-left to the bottom-right corner; view n^2 + i mirrors view i.
    out = _eager(ops.parse("grid_crops(4)"), _coords(7, 12), key="crops")
    assert out[0, 0, 0].tolist() == [0, 0] and out[4, 0, 0].tolist() == [0, 8] and out[24, -1, -1].tolist() == [6, 11]
    assert out[12, 0, 0].tolist() == [1, 4]  # the centre: (7 - 4) * 2 // 4 = 1, (12 - 4) * 2 // 4 = 4
    np.testing.assert_array_equal(out[25 + 7], out[7][:, ::-1])


def test_grid_crops_in_tf_data_batches_images_of_different_sizes_and_refuses_small_ones():
    images = [_image(9, 13, 3, seed=1), _image(13, 9, 3, seed=2)]  # tf.data: image heights and widths unknown
    ds = _dynamic(images).map(ops.parse("grid_crops(6)|keep('crops', 'label')")).batch(2)
    assert ds.element_spec["crops"].shape.as_list() == [None, 50, 6, 6, 3]
    batch = next(iter(ds))["crops"].numpy()
    for b, image in enumerate(images):
        np.testing.assert_array_equal(batch[b], _reference(image, 6, 5))
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="smaller than the crop"):
        ops.get("grid_crops", 10)({"image": tf.constant(images[0])}, SEED)
    with pytest.raises(ValueError, match="n must be a positive int"):
        ops.get("grid_crops", 4, n=0)
    assert "grid_crops" in ops.producers("crops")
