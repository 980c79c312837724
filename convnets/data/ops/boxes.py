"""Bounding boxes: the convention, the transforms geometric ops apply to them, and the box ops.

Convention (every op of ``convnets.data.ops`` follows it):

* ``features['boxes']``: float32 ``[N, 4]``, rows ``(ymin, xmin, ymax, xmax)`` in PIXEL coordinates of the
  current image, measured at pixel EDGES: a box covering pixel rows 2..5 and columns 0..3 (inclusive) is
  ``(2, 0, 6, 4)``. Its area is ``(ymax - ymin) * (xmax - xmin)`` pixels, and the coordinates transform exactly
  like the pixel grid (resize by ``s``: multiply by ``s``; crop at ``(top, left)``: subtract; flip in a width
  ``W``: ``x -> W - x``).
* ``features['box_classes']``: int32 ``[N]``; ``features['box_difficult']``: bool ``[N]`` (VOC's "difficult"
  flag), row-aligned with ``boxes``.
* After ``pad_boxes(max_boxes)``: all three have ``max_boxes`` rows, plus ``features['box_mask']`` bool
  ``[max_boxes]``, True for real boxes. Masked rows (padding, boxes a crop emptied or cut below ``min_size``)
  are all zero/False.

Geometric ops (resize, resize_short, random_resize_short, pad, center_crop, random_crop, flip_lr, hflip,
inception_crop, random_ten_crop, resize_short_capped) transform ``features['boxes']`` and the region proposals
``features['proposals']`` (``load_proposals``, ``convnets.data.ops.proposals``) together with the image they
change, with the same random draw, when the keys are present. Which boxes follow which image: an op's
``boxes_key`` argument; its default (None) means ``'boxes'`` and ``'proposals'`` when the op works on
``key='image'`` and no boxes otherwise (views under ``'crops'`` have no boxes). Crops CLIP boxes to the new
image and never remove rows (so ``box_classes`` and ``proposal_mask`` stay aligned without the geometric ops
knowing about them): a box outside the crop becomes a zero-area box. It is
``pad_boxes`` (or ``drop_empty_boxes``) that drops zero-area boxes, and with ``min_size`` the slivers a crop
leaves. Multi-view ops leave ``'image'`` and its boxes untouched.

``objects_to_boxes`` converts TFDS detection records (VOC: ``features['objects']`` with normalized ``bbox``,
``label``, ``is_difficult``) to this convention. Typical detection spec::

    decode|objects_to_boxes|random_resize_short(480, 576)|random_crop(448)|flip_lr|to_float|pad_boxes(50, min_size=1)
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from convnets.data.ops.core import Features, OpFn, positive_int, read, register

BOX_KEYS = ("boxes", "box_classes", "box_difficult", "box_mask")
# Boxes in the pixels of 'image' that its geometric ops move with it: the ground truth and the region proposals
# (``load_proposals``; their ``proposal_mask`` is row-aligned and never changes).
IMAGE_BOX_KEYS = ("boxes", "proposals")


# ----------------------------------------------------------------------------- transforms used by geometric ops


def follow(key: str, boxes_key: str | None) -> tuple[str, ...]:
    """The box keys a geometric op on ``key`` transforms: ``boxes_key``, or by default those of 'image'
    (``IMAGE_BOX_KEYS``: the ground truth 'boxes' and the region 'proposals'); none for other keys."""
    if boxes_key is None:
        return IMAGE_BOX_KEYS if key == "image" else ()
    return (boxes_key,) if boxes_key else ()


def transform(
    features: Features, boxes_key: str | tuple[str, ...] | None, fn: Callable[[tf.Tensor], tf.Tensor]
) -> Features:
    """Returns ``features`` with ``fn`` applied to the boxes under each of ``boxes_key`` that is present.

    ``fn`` computes in float64 and the result is rounded once to float32: the boxes of an op are then the
    same whatever order TF's graph optimizer gives the arithmetic (eager and tf.data agree bitwise).
    """
    keys = (boxes_key,) if isinstance(boxes_key, str) else tuple(boxes_key or ())
    out = dict(features)
    for key in keys:
        if key in features:
            out[key] = tf.cast(fn(tf.cast(features[key], tf.float64)), tf.float32)
    return out


def _f64(x) -> tf.Tensor:
    return tf.cast(x, tf.float64)


def scale(boxes: tf.Tensor, sy, sx) -> tf.Tensor:
    """Boxes of an image resized by ``sy`` vertically and ``sx`` horizontally (new size / old size)."""
    return boxes * tf.stack([_f64(sy), _f64(sx), _f64(sy), _f64(sx)])


def resize(boxes: tf.Tensor, height, width, new_height, new_width) -> tf.Tensor:
    """Boxes of a ``height x width`` image resized to ``new_height x new_width``, clipped to it.

    The clip only removes float rounding (a box edge on the border of the image stays on it).
    """
    b = scale(boxes, _f64(new_height) / _f64(height), _f64(new_width) / _f64(width))
    return clip(b, new_height, new_width)


def shift(boxes: tf.Tensor, dy, dx) -> tf.Tensor:
    """Boxes moved by ``(dy, dx)``: padding by p is ``shift(p, p)``, cropping at (top, left) ``shift(-top, -left)``."""
    return boxes + tf.stack([_f64(dy), _f64(dx), _f64(dy), _f64(dx)])


def clip(boxes: tf.Tensor, height, width) -> tf.Tensor:
    """Boxes clipped to the image ``[0, height] x [0, width]``; boxes outside it get zero area."""
    limit = tf.stack([_f64(height), _f64(width), _f64(height), _f64(width)])
    return tf.clip_by_value(boxes, 0.0, limit)


def crop(boxes: tf.Tensor, top, left, height, width) -> tf.Tensor:
    """Boxes of the ``height x width`` window at ``(top, left)``, clipped to it."""
    return clip(shift(boxes, -_f64(top), -_f64(left)), height, width)


def flip_lr(boxes: tf.Tensor, width) -> tf.Tensor:
    """Boxes of the image mirrored left-right (``x -> width - x``; xmin and xmax swap roles)."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    width = _f64(width)
    return tf.stack([ymin, width - xmax, ymax, width - xmin], axis=-1)


def area(boxes: tf.Tensor) -> tf.Tensor:
    """Areas in pixels (zero for boxes emptied by a crop)."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.maximum(ymax - ymin, 0) * tf.maximum(xmax - xmin, 0)


# ----------------------------------------------------------------------------- ops


@register("objects_to_boxes", produces=("boxes", "box_classes", "box_difficult"))
def objects_to_boxes(*, inkey: str = "objects", image_key: str = "image", voc_one_based: bool = False) -> OpFn:
    """TFDS detection objects -> ``boxes`` (pixels), ``box_classes``, ``box_difficult``; drops ``inkey``.

    Reads ``features[inkey]['bbox']`` (float ``[N, 4]``, ``(ymin, xmin, ymax, xmax)`` normalized to [0, 1]
    as TFDS ``BBoxFeature`` stores them), ``['label']`` and, if present, ``['is_difficult']`` (else all False),
    and multiplies by the size of the DECODED ``features[image_key]`` (run ``decode`` first; the pipeline
    decodes 'image' before the spec). Boxes stored in pixel-edge coordinates (``convnets_digit_scenes``) come
    out exact.

    VOC: its XML gives 1-based inclusive pixel indices, so pixels ``xmin..xmax`` are the edges
    ``[xmin - 1, xmax]``. TFDS's ``voc`` builder (4.9) stores ``xmin / W`` and ``xmax / W``, i.e. edges
    ``[xmin, xmax]``: one pixel short at the top and left. ``voc_one_based=True`` moves ymin and xmin back by
    one pixel (clipped at 0), as py-faster-rcnn's ``pascal_voc._load_pascal_annotation`` makes VOC's indices
    0-based (``x1 = xmin - 1``; its boxes are then inclusive, width ``x2 - x1 + 1``). The default keeps the
    records as stored. The other object fields (VOC's pose, is_truncated) are dropped with ``features[inkey]``.
    """

    def fn(features: Features, seed: tf.Tensor) -> Features:
        objects = read(features, inkey, "objects_to_boxes")
        image = read(features, image_key, "objects_to_boxes")
        if image.dtype == tf.string:
            raise ValueError(f"objects_to_boxes needs the decoded features[{image_key!r}]: put decode before it")
        if not isinstance(objects, dict) or "bbox" not in objects or "label" not in objects:
            raise ValueError(f"objects_to_boxes: features[{inkey!r}] must be a dict with 'bbox' and 'label'")
        shape = tf.shape(image)
        height, width = shape[-3], shape[-2]
        boxes = scale(_f64(tf.reshape(objects["bbox"], [-1, 4])), height, width)
        if voc_one_based:
            boxes = tf.maximum(boxes - tf.constant([1.0, 1.0, 0.0, 0.0], tf.float64), 0.0)
        boxes = tf.cast(boxes, tf.float32)
        classes = tf.cast(objects["label"], tf.int32)
        difficult = objects.get("is_difficult")
        difficult = tf.zeros_like(classes, tf.bool) if difficult is None else tf.cast(difficult, tf.bool)
        out = {k: v for k, v in features.items() if k != inkey}
        out.update(boxes=tf.reshape(boxes, [-1, 4]), box_classes=classes, box_difficult=difficult)
        return out

    return fn


def _aligned(features: Features) -> list[str]:
    """The box keys present, 'boxes' first; ValueError if there are no boxes."""
    if "boxes" not in features:
        raise ValueError(
            f"no 'boxes' in the example (it has {', '.join(sorted(features))}): put objects_to_boxes earlier"
        )
    return [k for k in BOX_KEYS if k in features]


def _min_size(value, op: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"{op}: min_size must be a number of pixels >= 0, got {value!r}")
    return float(value)


def _kept(boxes: tf.Tensor, min_size: float) -> tf.Tensor:
    """Bool [N]: boxes with positive area and both sides at least ``min_size`` pixels."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return (area(boxes) > 0) & (ymax - ymin >= min_size) & (xmax - xmin >= min_size)


@register("pad_boxes", produces=("box_mask",))
def pad_boxes(max_boxes: int, min_size: float = 0) -> OpFn:
    """Gives the box keys a fixed length ``max_boxes`` and adds ``box_mask`` (bool, True for real boxes).

    Dropped first: zero-area boxes (emptied by a crop), boxes with a side shorter than ``min_size`` pixels
    (slivers left by a crop; with ``min_size=1`` every kept box covers at least one pixel centre), and rows
    already masked by an earlier ``pad_boxes``. Of the rest, the FIRST ``max_boxes`` in record order are kept
    and any further ones dropped. Masked rows are zero (boxes, classes) / False (difficult, mask), so nothing
    downstream depends on them.
    """
    max_boxes = positive_int(max_boxes, "pad_boxes", "max_boxes")
    min_size = _min_size(min_size, "pad_boxes")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        keys = _aligned(features)
        boxes = tf.cast(features["boxes"], tf.float32)
        valid = _kept(boxes, min_size)
        if "box_mask" in features:
            valid &= tf.cast(features["box_mask"], tf.bool)
        # Stable sort: valid boxes first, each group in record order.
        order = tf.argsort(tf.cast(~valid, tf.int32), stable=True)[:max_boxes]
        mask = tf.gather(valid, order)
        out = dict(features)
        for key in keys:
            if key == "box_mask":
                continue
            value = tf.gather(boxes if key == "boxes" else features[key], order)
            keep = tf.reshape(mask, [-1] + [1] * (value.shape.rank - 1))
            value = tf.where(keep, value, tf.zeros_like(value))
            pad = [[0, max_boxes - tf.shape(value)[0]]] + [[0, 0]] * (value.shape.rank - 1)
            value = tf.pad(value, pad)
            value.set_shape([max_boxes, *value.shape[1:]])
            out[key] = value
        out["box_mask"] = tf.ensure_shape(tf.pad(mask, [[0, max_boxes - tf.shape(mask)[0]]]), [max_boxes])
        return out

    return fn


@register("drop_empty_boxes")
def drop_empty_boxes(min_size: float = 0) -> OpFn:
    """Removes zero-area boxes (emptied by a crop) and boxes with a side shorter than ``min_size`` pixels,
    with their rows of the other box keys; N becomes dynamic.

    For variable-length uses; batches need ``pad_boxes``, which drops the same boxes.
    """
    min_size = _min_size(min_size, "drop_empty_boxes")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        keys = _aligned(features)
        valid = _kept(tf.cast(features["boxes"], tf.float32), min_size)
        out = dict(features)
        for key in keys:
            out[key] = tf.boolean_mask(features[key], valid)
        return out

    return fn


# Declares only num_bad_boxes: a batch missing 'box_mask' needs pad_boxes (fixed length), which the hint names.
@register("clean_boxes", produces=("num_bad_boxes",))
def clean_boxes(min_size: float = 0, *, image_key: str = "image") -> OpFn:
    """Clips the boxes to the image and masks out degenerate ones, counting them in ``num_bad_boxes``.

    For boxes that may be wrong (user annotations, proposals): a box reaching outside the image is clipped
    to ``[0, H] x [0, W]`` of ``features[image_key]``; a box with ``xmax <= xmin`` or ``ymax <= ymin`` (after
    clipping: also one entirely outside the image), or with a side shorter than ``min_size`` pixels, gets
    ``box_mask`` False (the mask is created if absent, all True), so ``pad_boxes`` drops it.
    ``num_bad_boxes`` (int32 scalar) counts them, so a task can report how many it dropped (put it in
    ``data.batch_keys``): a silent skip is never the only trace. An image without boxes stays valid: after
    ``pad_boxes`` it is all padding with ``box_mask`` all False.

    What the papers' code did: py-faster-rcnn (``datasets/pascal_voc.py``) subtracts 1 from VOC's 1-based
    coordinates and stores them as uint16, so a (wrong) ``xmin = 0`` wraps to 65535 and its
    ``append_flipped_images`` then fails ``assert (boxes[:, 2] >= boxes[:, 0]).all()``; it never clips
    (VOC's boxes are inside their images), and a class name not in ``_class_to_ind`` is a KeyError. Here
    TFDS records cannot hold those cases at all (``BBoxFeature`` refuses coordinates outside [0, 1] or
    min > max, ``ClassLabel`` unknown names): ``convnets.data.builders`` reports them at preparation, naming
    the annotation file and the object. What records can hold, zero-width boxes, is masked here.
    """
    min_size = _min_size(min_size, "clean_boxes")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        _aligned(features)
        image = read(features, image_key, "clean_boxes")
        shape = tf.shape(image)
        boxes = tf.cast(clip(_f64(features["boxes"]), shape[-3], shape[-2]), tf.float32)
        ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
        good = (ymax - ymin > 0) & (xmax - xmin > 0) & (ymax - ymin >= min_size) & (xmax - xmin >= min_size)
        mask = features.get("box_mask")
        mask = tf.ones_like(good) if mask is None else tf.cast(mask, tf.bool)
        out = dict(features)
        out["boxes"] = boxes
        out["box_mask"] = mask & good
        out["num_bad_boxes"] = tf.reduce_sum(tf.cast(mask & ~good, tf.int32))
        return out

    return fn
