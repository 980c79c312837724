"""Ops that choose and name features: ``keep`` and ``rename``."""

from __future__ import annotations

import tensorflow as tf

from convnets.data.ops.core import Features, OpFn, read, register


@register("keep")
def keep(*keys: str) -> OpFn:
    """Keeps only the named features (e.g. ``keep('crops', 'label')``); a named feature missing is a ValueError."""
    if not keys or not all(isinstance(k, str) and k for k in keys):
        raise ValueError(f"keep: name the features to keep as strings, e.g. keep('image', 'label'); got {keys!r}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return {k: read(features, k, "keep") for k in keys}

    return fn


@register("rename")
def rename(old: str, new: str) -> OpFn:
    """Moves ``features[old]`` to ``features[new]`` (replacing any ``new``), e.g. ``rename('video', 'image')``."""
    if not (isinstance(old, str) and old and isinstance(new, str) and new):
        raise ValueError(f"rename: old and new must be feature names, got {old!r}, {new!r}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        value = read(features, old, "rename")
        out = {k: v for k, v in features.items() if k != old}
        out[new] = value
        return out

    return fn
