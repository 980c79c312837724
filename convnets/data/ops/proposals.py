"""Region proposals from a per-image cache (R-CNN / Fast R-CNN's selective search boxes, computed once).

``load_proposals(directory, dataset, split, max_proposals)`` looks the example up in the cache that
``python -m convnets.data.make_proposals`` wrote (``convnets.data.proposals``) by its ``'image/filename'`` and
adds ``features['proposals']`` float32 ``[max_proposals, 4]`` (edge boxes (y1, x1, y2, x2) in pixels of the
image as decoded, the convention of ``convnets.data.ops.boxes``) and ``features['proposal_mask']`` bool
``[max_proposals]`` (True for real proposals; padding rows start as zero boxes, which later flips may move:
only the mask tells them apart). An image with more proposals keeps the
first ``max_proposals`` in the cache's (ranked) order; Fast R-CNN tests on "2000 proposals" (sec. 4).

Put it right after ``decode`` / ``objects_to_boxes``, before any geometric op: the cache holds boxes of the
original image, and every geometric op then moves 'proposals' exactly like 'boxes' (resizes, crops, flips,
``resize_short_capped``). The experiment configs pass the directory, dataset and split as references to
``data.proposals_dir``, ``data.name`` and the split fields, so ``--config.data.proposals_dir=DIR`` reaches the
spec (``experiments/detection.py``, ``voc_data``).

Errors: a missing directory or cache file, or a cache made for another dataset or split, is a ValueError /
FileNotFoundError when the spec is built, naming the file and the command that makes the cache; an example whose
file name the cache lacks, or whose proposals reach outside its image (a cache of other images), fails while the
batches are read with a message naming the image and the cache.
"""

from __future__ import annotations

import tensorflow as tf

from convnets.data import proposals as proposal_cache
from convnets.data.ops.core import Features, OpFn, positive_int, read, register


@register("load_proposals", produces=("proposals", "proposal_mask"))
def load_proposals(
    directory: str,
    dataset: str,
    split: str,
    max_proposals: int = 2000,
    *,
    image_key: str = "image",
    filename_key: str = "image/filename",
) -> OpFn:
    """Adds the cached proposals of the example (see the module docstring)."""
    max_proposals = positive_int(max_proposals, "load_proposals", "max_proposals")
    cache = proposal_cache.read(directory, dataset, split)
    npz, _ = proposal_cache.cache_files(directory, dataset, split)
    command = proposal_cache.make_command(dataset, split, directory)
    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(cache.filenames.astype(object), tf.string),
            tf.range(len(cache.filenames), dtype=tf.int64)),
        default_value=-1)
    offsets = tf.constant(cache.offsets, tf.int64)
    counts = tf.constant(cache.counts, tf.int64)
    boxes = tf.constant(cache.boxes.reshape(-1, 4), tf.uint16)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        filename = read(features, filename_key, "load_proposals")
        image = read(features, image_key, "load_proposals")
        if image.dtype == tf.string:
            raise ValueError(f"load_proposals needs the decoded features[{image_key!r}]: put decode before it")
        if "image_scale" in features:
            raise ValueError("load_proposals reads boxes of the original image: put it before resize_short_capped "
                             "and any other geometric op")
        i = tf.reshape(table.lookup(tf.reshape(filename, [])), [])
        found = tf.debugging.Assert(i >= 0, [
            f"load_proposals: image not in the proposal cache {npz} ({dataset} split {split!r}, "
            f"{len(cache.filenames)} images); make it again with `{command}`. Image:", filename])
        with tf.control_dependencies([found]):
            i = tf.maximum(i, 0)
        n = tf.minimum(counts[i], max_proposals)
        props = tf.cast(boxes[offsets[i]: offsets[i] + n], tf.float32)
        shape = tf.shape(image)
        limit = tf.cast(tf.stack([shape[-3], shape[-2], shape[-3], shape[-2]]), tf.float32)
        inside = tf.debugging.Assert(tf.reduce_all(props <= limit), [
            f"load_proposals: proposals of the cache {npz} reach outside their image (made for other images?); "
            f"make it again with `{command}`. Image, its height and width:", filename, shape[-3], shape[-2]])
        with tf.control_dependencies([inside]):
            props = tf.pad(props, [[0, max_proposals - n], [0, 0]])
        out = dict(features)
        out["proposals"] = tf.ensure_shape(props, [max_proposals, 4])
        out["proposal_mask"] = tf.range(max_proposals, dtype=tf.int64) < n
        return out

    return fn
