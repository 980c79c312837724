"""Temporal ops on clips ``[T, H, W, C]``: fixed-length windows of frames (C3D-style 16-frame clips).

Spatial ops work on clips as they are (``convnets.data.ops.geometry``: the same crop and flip for every frame),
so a C3D-like training spec is::

    decode|random_temporal_crop(16)|resize((128, 171))|random_crop(112)|flip_lr|subtract_mean(M)

with the clip under 'image' (``rename('video', 'image')`` first for TFDS video datasets, or pass
``key='video'`` to every op). Clips shorter than the window are looped (frame ``i`` of the window is frame
``(start + i * stride) mod T``), so every example yields ``num_frames`` frames.

Per-video evaluation takes every clip of a video at once: ``video_clips`` writes them to 'crops'
``[K, num_frames, H, W, C]`` with 'crop_mask' ``[K]`` (padding clips 0), batched with
``data.batch_keys=('crops', 'crop_mask', 'label')``; the evaluators average over the real clips. C3D (sec. 4,
16-frame clips with an 8-frame overlap, the long videos' clips subsampled evenly to a static K = 32)::

    rename('video', 'image')|resize((128, 171))|center_crop(112)|subtract_mean(M)|video_clips(16, 32, 8)

and ``video_clips(T, 20)`` gives the 20 evenly spaced clips per video of Karpathy et al.
(sec. 4.1). Spatial and value ops before ``video_clips`` act on the whole video once.
"""

from __future__ import annotations

import tensorflow as tf

from convnets.data.ops.core import Features, OpFn, non_negative_int, positive_int, read, register, replace


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


def _even(count: tf.Tensor, num: int) -> tf.Tensor:
    """``num`` indices into ``range(count)`` evenly spaced, first and last kept (rounded down); the middle one
    (rounded down) if ``num`` is 1."""
    if num == 1:
        return tf.reshape((count - 1) // 2, [1])
    return tf.range(num) * (count - 1) // (num - 1)


def _clip_starts(total: tf.Tensor, num_frames: int, num_clips: int, stride: int) -> tuple[tf.Tensor, tf.Tensor]:
    """(starts [num_clips] int32, mask [num_clips] float32) of the clips of a video of ``total`` frames."""
    slack = tf.maximum(total - num_frames, 0)
    if stride == 0:
        return _even(slack + 1, num_clips), tf.ones([num_clips], tf.float32)
    count = slack // stride + 1  # Starts 0, stride, ... with start + num_frames <= total (one if too short).
    k = tf.range(num_clips)
    starts = stride * tf.where(count >= num_clips, _even(count, num_clips), tf.where(k < count, k, 0))
    return starts, tf.cast(k < count, tf.float32)


@register("video_clips", produces=("crop_mask",))
def video_clips(
    num_frames: int, num_clips: int, stride: int = 0, *, key: str = "image", outkey: str = "crops",
    maskkey: str = "crop_mask",
) -> OpFn:
    """All the clips of a video for per-video evaluation: ``num_clips`` windows of ``num_frames`` frames.

    Writes ``outkey`` ``[num_clips, num_frames, H, W, C]`` (clips in temporal order) and ``maskkey``
    ``[num_clips]`` float32 (1: a real clip, 0: padding, a copy of clip 0); ``key`` is left as it was.

    * ``stride > 0``: clips start at 0, stride, 2 * stride, ... while start + num_frames <= T (C3D sec. 4:
      16-frame clips with an 8-frame overlap are stride 8); a video shorter than ``num_frames`` gives one clip,
      looped like ``temporal_crop``. More starts than ``num_clips``: ``num_clips`` of them evenly spaced (first
      and last kept; the middle one if num_clips is 1). Fewer: the rest is padding (mask 0).
    * ``stride == 0``: ``num_clips`` starts evenly spaced from 0 to T - num_frames (Karpathy et al. 2014
      sec. 4.1: 20 clips per video), all real; a short video loops.

    Spatial ops before it (resize, center_crop) act on every frame, so every clip gets them.
    """
    num_frames = positive_int(num_frames, "video_clips", "num_frames")
    num_clips = positive_int(num_clips, "video_clips", "num_clips")
    stride = non_negative_int(stride, "video_clips", "stride")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        clip = read(features, key, "video_clips")
        _check_clip(clip, "video_clips", key)
        total = tf.shape(clip)[0]
        starts, mask = _clip_starts(total, num_frames, num_clips, stride)
        index = (starts[:, None] + tf.range(num_frames)[None, :]) % total
        clips = tf.gather(clip, index)
        clips.set_shape([num_clips, num_frames, *clip.shape[1:]])
        mask.set_shape([num_clips])
        return {**features, outkey: clips, maskkey: mask}

    return fn
