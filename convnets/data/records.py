"""Raw TFDS records and the per-example function that turns one into the features of a batch.

Raw records keep every feature of the TFDS record (nested ones such as VOC's ``objects`` too). Top-level
uint8 ``Image`` and ``Video`` features are read ENCODED (``tfds.decode.SkipDecoding``), so records that are
skipped (resumption) or dropped (other processes' rows) cost no decoding. ``example_fn`` then decodes each of
them with its declared channel count and checks its declared shape (so fixed-size datasets give static
shapes without a resize), runs the preprocessing spec, and keeps the features named by ``data.batch_keys``, cast
to the batch dtypes: floating and uint8 (pixels) -> float32, other integers -> int32, bool stays bool.

A prepared dataset whose record files are damaged (truncated, flipped bytes) fails while its batches are read;
``checked`` turns that failure into a ``DamagedDatasetError`` naming the dataset, its files and the fix
(delete the prepared directory and prepare it again).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence

import tensorflow as tf
import tensorflow_datasets as tfds

from convnets.data import ops


def encoded_features(builder: tfds.core.DatasetBuilder) -> dict[str, tfds.features.FeatureConnector]:
    """The top-level uint8 image and video features of ``builder``: read undecoded, decoded per example."""
    return {
        name: feature
        for name, feature in builder.info.features.items()
        if isinstance(feature, tfds.features.Image | tfds.features.Video) and feature.tf_dtype == tf.uint8
    }


# Salt of the device ops' seeds: independent of every host op's (those fold in their position, then a crc32).
DEVICE_SEED_SALT = 0x64657669


def no_autograph(fn: Callable) -> Callable:
    """``fn`` for tf.data as it is written, without AutoGraph's source rewriting (which tf.data applies to every
    mapped function by default). The ops and the pipeline's functions are plain TensorFlow that branches in Python
    only on static values; rewriting them cost ~1 s of CPU per pipeline at every start (quickstart: element spec
    1.23 -> 0.26 s) and changed nothing."""
    return tf.autograph.experimental.do_not_convert(fn)


def read(builder: tfds.core.DatasetBuilder, split, cache: bool) -> tuple[tf.data.Dataset, int]:
    """Returns the split's raw records (every feature; images and videos encoded) in file order, and their count."""
    decoders = {name: tfds.decode.SkipDecoding() for name in encoded_features(builder)}
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders=decoders or None,
        # We cache explicitly (data.cache); TFDS' auto-cache would cache partial reads.
        read_config=tfds.ReadConfig(try_autocache=False),
    )
    if cache:
        ds = ds.cache()
    n = int(ds.cardinality())
    if n < 0:
        n = builder.info.splits[split].num_examples
    return ds, n


def _missing(key: str, features: dict, spec: str, dataset: str, dataset_features) -> ValueError:
    writers = ops.producers(key)
    if key in dataset_features:
        hint = f"the dataset has {key!r}, but an op of the spec consumed it (e.g. objects_to_boxes, rename, keep)"
    elif writers:
        hint = f"add {' or '.join(writers)} to the spec (it writes {key!r})"
    else:
        hint = f"{key!r} must be a feature of the dataset or be written by an op of the spec (e.g. rename)"
    return ValueError(
        f"data.batch_keys names {key!r}, but preprocessing {spec!r} of dataset {dataset!r} yields only "
        f"{', '.join(sorted(features))}: {hint}, or drop {key!r} from data.batch_keys"
    )


def _batch_dtype(key: str, value: tf.Tensor) -> tf.Tensor:
    """The value cast to its batch dtype; ValueError for features a batch cannot hold."""
    if isinstance(value, dict):
        raise ValueError(
            f"data.batch_keys names {key!r}, a nested feature ({', '.join(sorted(value))}): batches hold tensors; "
            "convert it with an op (e.g. objects_to_boxes|pad_boxes(N) for detection objects)"
        )
    if value.dtype.is_floating or value.dtype == tf.uint8:
        # uint8 is the decoded pixel dtype: images are float32 in batches whether or not a value op ran.
        return tf.cast(value, tf.float32)
    if value.dtype.is_integer:
        return tf.cast(value, tf.int32)
    if value.dtype == tf.bool:
        return value
    raise ValueError(
        f"data.batch_keys names {key!r} of dtype {value.dtype.name}, which a batch cannot hold: decode it "
        f"(decode(key={key!r})) or convert it with an op, or drop it from data.batch_keys"
    )


def example_fn(
    builder: tfds.core.DatasetBuilder, spec: str, keys: Sequence[str], fuse_decode: bool = True,
    device_seed: bool = False,
) -> Callable:
    """Returns ``fn(record, seed[, mask]) -> {key: tensor for key in keys}`` (plus 'mask' when given).

    With ``device_seed``, each example also gets ``'device_seed'``: uint32[2] key data for the ops of
    ``data.device_preprocess`` (``convnets.data.device_ops``), drawn from the example's seed.

    With a mask (eval padding), rows with mask 0 have every key zeroed (False for bools), so nothing depends
    on which record padded. An image of variable size whose spec starts with a fused decode with its channel
    count (``'decode(3)|inception_crop(224)'``, see ``ops.parse``) is left encoded for that op to decode.
    """
    fused = ops.fused_decodes(spec, fuse_decode)
    decoders = [
        (name, ops.get("decode", feature.shape[-1], key=name), feature.shape)
        for name, feature in encoded_features(builder).items()
        if not (name in fused and fused[name] == feature.shape[-1] and feature.shape[:-1] == (None, None))
    ]
    chain = ops.parse(spec, fuse_decode)

    @no_autograph
    def fn(features, seed, mask=None):
        features = dict(features)
        for name, decode, shape in decoders:
            # Decode with the declared channel count first, so the spec sees a static channel dimension even
            # if it does not start with `decode` (then a no-op); the declared shape (e.g. (32, 32, 1), or
            # (None, None, 3) for ImageNet) is checked and made static.
            features = decode(features, seed)
            features[name] = tf.ensure_shape(features[name], shape)
        features = chain(features, seed)
        out = {}
        for key in keys:
            if key not in features:
                raise _missing(key, features, spec, builder.name, builder.info.features)
            out[key] = _batch_dtype(key, features[key])
        if device_seed:
            salted = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), DEVICE_SEED_SALT)
            out["device_seed"] = tf.random.stateless_uniform([2], salted, minval=None, maxval=None, dtype=tf.uint32)
        if mask is not None:
            out = {k: tf.where(mask > 0, v, tf.zeros_like(v)) for k, v in out.items()}
            out["mask"] = mask
        return out

    return fn


def trace(builder: tfds.core.DatasetBuilder, split, spec: str, keys: Sequence[str]) -> dict[str, tf.TensorSpec]:
    """Per-example TensorSpec of each key after preprocessing, from tracing ``example_fn`` (reads no record)."""
    raw, _ = read(builder, split, cache=False)
    seeded = raw.map(no_autograph(lambda x: (x, tf.zeros([2], tf.int64))))
    return seeded.map(example_fn(builder, spec, keys)).element_spec


class DamagedDatasetError(RuntimeError):
    """The record files of a prepared dataset are damaged; the message names them and how to re-prepare."""


class DataCheckError(ValueError):
    """A check inside a preprocessing op failed while the records were read (e.g. ``load_proposals``: an image the
    proposal cache lacks); the message is the op's own, which names the record and the fix."""


def data_check_error(error: tf.errors.OpError) -> DataCheckError | None:
    """The op's message of a failed ``tf.debugging`` check in ``error``, or None if it is another error."""
    message = getattr(error, "message", str(error))
    if not isinstance(error, tf.errors.InvalidArgumentError) or "assertion failed" not in message.lower():
        return None
    text = message.split("assertion failed:", 1)[-1].strip()
    text = re.sub(r"\s*\[\[\{\{node .*", "", text, flags=re.S)  # TF's graph-node trailer
    text = " ".join(part.strip("[]").strip() for part in re.split(r"\]\s*\[", text))
    return DataCheckError(text)


# A record that fails its checksum or ends early is DataLossError. InvalidArgumentError is also what a
# preprocessing or shape mistake raises, so it counts as damage only with these words (an undecodable image or
# unparsable record inside a record whose checksum passed: the source was damaged when the dataset was prepared).
_DAMAGE_WORDS = ("corrupted record", "truncated record", "could not parse example", "invalid jpeg data",
                 "unknown image file format", "invalid png data")
# Reading every record of the split's files to find the damaged ones is done only below this size (~seconds).
_SCAN_BYTES = 1 << 30


def _is_damage(error: tf.errors.OpError) -> bool:
    if isinstance(error, tf.errors.DataLossError):
        return True
    message = str(error).lower()
    return isinstance(error, tf.errors.InvalidArgumentError) and any(w in message for w in _DAMAGE_WORDS)


def _split_files(builder: tfds.core.DatasetBuilder, split) -> list[str]:
    try:
        return sorted({os.fspath(f.filename) for f in builder.info.splits[split].file_instructions})
    except Exception:  # Only words the message: never let it hide the original error.
        return []


def _unreadable(files: Sequence[str]) -> list[str]:
    """The files among ``files`` whose records cannot all be read (empty if they are too big to scan)."""
    if sum(os.path.getsize(f) for f in files if os.path.exists(f)) > _SCAN_BYTES:
        return []
    bad = []
    for f in files:
        try:
            for _ in tf.data.TFRecordDataset(f):
                pass
        except (tf.errors.OpError, OSError):
            bad.append(f)
    return bad


def damaged_dataset_error(builder: tfds.core.DatasetBuilder, split, error: Exception) -> DamagedDatasetError:
    """The error that says which prepared files of ``split`` are damaged and how to prepare them again."""
    directory = os.fspath(builder.data_dir)
    files = _split_files(builder, split)
    bad = _unreadable(files)
    if bad:
        where = f"damaged file{'s' if len(bad) > 1 else ''}: {', '.join(os.path.basename(f) for f in bad)}"
    elif files:
        where = f"one of its {len(files)} files ({os.path.basename(files[0])}, ...) is damaged"
    else:
        where = "one of its record files is damaged"
    # TF's message starts with an internal function name; its last part ("truncated record at 118456 ...") is
    # the useful one.
    detail = str(getattr(error, "message", error)).split("}}")[-1].split(" [Op:")[0].replace("'", "").strip()
    return DamagedDatasetError(
        f"the prepared dataset {builder.name!r} in {directory} cannot be read (split {split!r}; {where}; "
        f"{detail}). Its files are damaged (an interrupted copy, a full disk, a bad source file when it was "
        f"prepared). Delete {directory} and run again: the dataset is prepared again on first use "
        "(data.download=True; ImageNet from the same manual tar files)."
    )


def checked(batches: Iterator, builder: tfds.core.DatasetBuilder, split) -> Iterator:
    """``batches``, raising ``DamagedDatasetError`` (from TF's error) if reading the split's records fails."""
    try:
        yield from batches
    except tf.errors.OpError as e:
        if (check := data_check_error(e)) is not None:
            raise check from None
        if not _is_damage(e):
            raise
        raise damaged_dataset_error(builder, split, e) from e
