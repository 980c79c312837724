"""Temporal ops on clips ``[T, H, W, C]``: fixed-length windows of frames (C3D-style 16-frame clips).

Spatial ops work on clips as they are (``convnets.data.ops.geometry``: the same crop and flip for every frame),
so a C3D-like training spec is::

    decode|random_temporal_crop(16)|resize((128, 171))|random_crop(112)|flip_lr|subtract_mean(M)

with the clip under 'image' (``rename('video', 'image')`` first for TFDS video datasets, or pass
``key='video'`` to every op). Clips shorter than the window are looped (frame ``i`` of the window is frame
``(start + i * stride) mod T``), so every example yields ``num_frames`` frames.
"""

from __future__ import annotations

import tensorflow as tf

from convnets.data.ops.core import Features, OpFn, positive_int, read, register, replace


def _check_clip(clip: tf.Tensor, op: str, key: str) -> None:
    if clip.shape.rank != 4:
        raise ValueError(f"{op}: features[{key!r}] must be a clip [T, H, W, C], got shape {clip.shape}")


def _frames(clip: tf.Tensor, start: tf.Tensor, num_frames: int, stride: int) -> tf.Tensor:
    """Frames start, start + stride, ... (num_frames of them) modulo T, with a static frame count."""
    total = tf.shape(clip)[0]
    index = (start + stride * tf.range(num_frames)) % total
    out = tf.gather(clip, index)
    out.set_shape([num_frames, *clip.shape[1:]])
    return out


def _span(num_frames: int, stride: int) -> int:
    return (num_frames - 1) * stride + 1


def _temporal_crop(name: str, num_frames: int, stride: int, key: str, random: bool) -> OpFn:
    """A window of ``num_frames`` frames, every ``stride``-th: central (start rounds down), or at a uniformly
    random start drawn from the example's seed."""
    num_frames = positive_int(num_frames, name, "num_frames")
    stride = positive_int(stride, name, "stride")
    span = _span(num_frames, stride)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        clip = read(features, key, name)
        _check_clip(clip, name, key)
        slack = tf.maximum(tf.shape(clip)[0] - span, 0)
        start = (tf.random.stateless_uniform([], seed, minval=0, maxval=slack + 1, dtype=tf.int32) if random
                 else slack // 2)
        return replace(features, key, _frames(clip, start, num_frames, stride))

    return fn


@register("temporal_crop")
def temporal_crop(num_frames: int, stride: int = 1, *, key: str = "image") -> OpFn:
    """The central window of ``num_frames`` frames, every ``stride``-th (start rounds down); for evaluation."""
    return _temporal_crop("temporal_crop", num_frames, stride, key, random=False)


@register("random_temporal_crop")
def random_temporal_crop(num_frames: int, stride: int = 1, *, key: str = "image") -> OpFn:
    """A window of ``num_frames`` frames, every ``stride``-th, at a uniformly random start from the seed."""
    return _temporal_crop("random_temporal_crop", num_frames, stride, key, random=True)
