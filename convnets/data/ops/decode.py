"""The ``decode`` op: encoded image bytes (or a clip's encoded frames) to uint8 pixels."""

from __future__ import annotations

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
