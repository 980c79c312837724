"""The ``decode`` op: encoded image bytes (or a clip's encoded frames) to uint8 pixels; ``decode_window`` for
the ops that fuse decoding with a crop of the original image (``core.register_fused_decode``)."""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from convnets.data.ops.core import Features, OpFn, read, register, replace


def _decode_frame(encoded: tf.Tensor, channels: int | None) -> tf.Tensor:
    return tf.io.decode_image(encoded, channels=channels or 0, dtype=tf.uint8, expand_animations=False)


@register("decode")
def decode(channels: int | None = None, *, key: str = "image") -> OpFn:
    """Decodes PNG/JPEG/GIF/BMP bytes to uint8 ``[H, W, C]``; a no-op if ``features[key]`` is already decoded.

    A rank-1 string tensor is a clip's encoded frames (TFDS ``Video`` features read undecoded) and decodes to
    ``[T, H, W, C]`` (all frames must have the same size). ``channels=None`` keeps the encoded channel count
    (then only known statically if the image was already decoded, e.g. by the pipeline, which decodes every
    image and video feature with the dataset's declared channel count before running the spec).
    """

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = read(features, key, "decode")
        if image.dtype != tf.string:
            return dict(features)
        if image.shape.rank == 0:
            image = _decode_frame(image, channels)
            if channels:
                image.set_shape([None, None, channels])
        elif image.shape.rank == 1:
            image = tf.map_fn(
                lambda frame: _decode_frame(frame, channels),
                image,
                fn_output_signature=tf.TensorSpec([None, None, channels], tf.uint8),
            )
        else:
            raise ValueError(f"decode: features[{key!r}] must be one encoded image or a [T] vector of frames, "
                             f"got strings of shape {image.shape}")
        return replace(features, key, image)

    return fn


# Pixels decoded around a window on each side (see decode_window).
_MARGIN = 1


def decode_window(
    encoded: tf.Tensor, channels: int | None, window_of: Callable[[tf.Tensor], tf.Tensor]
) -> tuple[tf.Tensor, tf.Tensor]:
    """Decodes only a window of one encoded image: ``(pixels uint8 [h, w, C], window int32 [top, left, h, w])``.

    ``window_of`` maps the image's shape (int32 ``[H, W, ...]``, as ``tf.shape`` of the decoded image) to the
    window to keep. A JPEG is read by ``tf.io.decode_and_crop_jpeg`` (the window and a 1-pixel margin), which
    skips the IDCT, upsampling and colour conversion of the blocks left and right of it and stops after its last
    row; the pixels are those of ``decode`` then cropping, bit for bit (tests/test_ops_fused_decode.py checks
    it on 4:2:0, 4:2:2, 4:4:4, progressive and grayscale JPEGs). Other formats are decoded whole, then cropped.
    """

    def jpeg():
        shape = tf.io.extract_jpeg_shape(encoded)
        window = window_of(shape)
        top, left, height, width = tf.unstack(window)
        # libjpeg's fancy upsampling of subsampled chroma (4:2:0, 4:2:2) treats the edges of the decoded region
        # as image edges: the pixels of a window's first and last columns would differ from a full decode by up
        # to ~12 levels. Decoding one more pixel on every side (where the image has one) keeps the window's
        # pixels exactly those of the full decode.
        begin = tf.maximum(tf.stack([top, left]) - _MARGIN, 0)
        end = tf.minimum(tf.stack([top + height, left + width]) + _MARGIN, shape[:2])
        region = tf.io.decode_and_crop_jpeg(encoded, tf.concat([begin, end - begin], 0), channels=channels or 0)
        return tf.slice(region, tf.stack([top - begin[0], left - begin[1], 0]), tf.stack([height, width, -1])), window

    def other():
        image = _decode_frame(encoded, channels)
        window = window_of(tf.shape(image))
        begin, size = tf.stack([window[0], window[1], 0]), tf.stack([window[2], window[3], -1])
        return tf.slice(image, begin, size), window

    pixels, window = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
    pixels.set_shape([None, None, channels])
    return pixels, window
