"""Deterministic, resumable tf.data input pipelines over TFDS datasets.

Training stream (``train_batches``), for a global batch B split over P processes:

* The raw split is read in file order with images left encoded
  (``tfds.decode.SkipDecoding``), so skipping records costs no decoding.
* Epoch e = the split shuffled with a seed derived from (seed, e), then enumerated; the
  example at position i of epoch e gets the stateless seed ``[seed, e * N + i]`` (N =
  examples per epoch) that drives its augmentation (see ``convnets.data.ops``). Each
  epoch is cut into global batches of B, dropping its remainder, so every epoch has
  ``steps_per_epoch = N // B`` steps and an example appears at most once per epoch.
* Resuming at step s starts at epoch ``s // steps_per_epoch`` and skips
  ``s % steps_per_epoch`` raw (undecoded) global batches: batch s of a resumed run is
  bitwise equal to batch s of an uninterrupted one.
* ``process_split='global_order'`` (default): every process reads the same global
  stream of raw records and keeps rows ``[p * B/P, (p+1) * B/P)`` of each global batch,
  then decodes and augments only those. The concatenation over processes of the local
  batches is exactly the single-process global batch, so results do not depend on P.
  Every process reads (but does not decode) all records.
* ``process_split='tfds_split'``: process p reads only
  ``tfds.even_splits(split, P, drop_remainder=True)[p]`` and shuffles it on its own (less
  I/O for big datasets such as ImageNet), but which examples meet in a batch, their
  order and their augmentation seeds then depend on P; up to P-1 examples are dropped.

Caveats: tf.data's ``shuffle`` combines its op seed with TF's global seed, so calling
``tf.random.set_seed`` elsewhere changes (deterministically) the order; shuffle order is
only guaranteed stable for one TF version. A ``shuffle_buffer`` smaller than N shuffles
within a sliding window, as usual with tf.data; 0 or 1 disables shuffling.

Image shape for model init: ``element_spec_shape(data)`` returns the (H, W, C) that the
preprocessing produces without reading any data.
"""

from __future__ import annotations

import difflib
import functools
import math
import os
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from convnets.data import ops

DEFAULT_NAME = "convnets_digits"
# Eval preprocessing is seeded with [EVAL_SEED, index]: independent of the training seed,
# so eval numbers of runs with different seeds see identical inputs.
EVAL_SEED = 0x5EED
PROCESS_SPLITS = ("global_order", "tfds_split")
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")

Batch = dict[str, np.ndarray]


@functools.cache
def _tf_cpu_only() -> None:
    """Keeps tf.data (and any TF op) off the GPUs, which belong to JAX."""
    try:
        tf.config.set_visible_devices([], "GPU")
    except (RuntimeError, ValueError):
        # TF already initialized its devices (someone used TF first): nothing we can do.
        pass


@functools.cache
def _known_names() -> tuple[str, ...]:
    """Registered TFDS names (called after `convnets_digits` is registered; ~0.2 s, so cached)."""
    return tuple(tfds.list_builders(with_community_datasets=False))


def _data_dir(data: ConfigDict) -> str | None:
    return data.get("data_dir") or None


def _prepare_hint(name: str, data_dir: str) -> str:
    return (
        f"To prepare it, run with --config.data.download=True on a machine with internet access "
        f"(or `tfds build {name} --data_dir={data_dir}`), then copy {data_dir} here and point "
        "--config.data.data_dir at it."
    )


def _check_imagenet_manual_files(manual_dir: str) -> None:
    missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
        raise FileNotFoundError(
            f"imagenet2012 must be prepared from manually downloaded files: put {' and '.join(missing)} "
            f"(of {' and '.join(IMAGENET_MANUAL_FILES)}) into the directory {manual_dir}. Get them from "
            "https://image-net.org/download-images (free registration, 'ILSVRC2012' training and "
            "validation images). To use another directory, pass --config.data.manual_dir=/path/to/dir."
        )


def get_builder(data: ConfigDict) -> tfds.core.DatasetBuilder:
    """Returns the prepared TFDS builder named by ``data.name``, preparing it if allowed.

    Raises ValueError for unknown names (with close matches), FileNotFoundError if the
    dataset is not prepared and ``data.download`` is False or ImageNet's manual files are
    missing, RuntimeError (chained) if downloading or preparing fails, e.g. offline.
    """
    _tf_cpu_only()
    from convnets.data import digits  # noqa: F401  (registers the embedded `convnets_digits`)

    name = data.get("name") or DEFAULT_NAME
    base = name.split(":")[0].split("/")[0]
    known = _known_names()
    if base not in known:
        close = difflib.get_close_matches(base, known, n=5, cutoff=0.6)
        hint = f" Closest matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"unknown dataset {name!r}: use {DEFAULT_NAME!r} (embedded, no download) or a TFDS name "
            f"such as mnist, cifar10, imagenet2012.{hint}"
        )
    builder = tfds.builder(name, data_dir=_data_dir(data))
    if builder.is_prepared():
        return builder

    root = os.fspath(builder.data_dir_root)
    manual_dir = data.get("manual_dir") or os.path.join(root, "downloads", "manual")
    if base == "imagenet2012":
        # Check before anything else: TFDS only notices after setting up a download.
        _check_imagenet_manual_files(manual_dir)
    if not data.get("download", True):
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared in {root} and data.download is False. "
            + _prepare_hint(name, root)
        )
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except OSError as e:  # requests' ConnectionError and friends are OSErrors.
        raise RuntimeError(
            f"could not download/prepare dataset {name!r} into {root}: {e}. " + _prepare_hint(name, root)
        ) from e
    return builder


def num_examples(data: ConfigDict, split: str) -> int:
    """Number of examples of ``split`` (any TFDS split string, e.g. 'train[:90%]')."""
    builder = get_builder(data)
    try:
        return builder.info.splits[split].num_examples
    except KeyError:  # No split metadata (e.g. under tfds.testing.mock_data): count the records.
        return _raw(builder, split, cache=False)[1]


def num_classes(data: ConfigDict) -> int:
    """Number of classes of the dataset's ``label`` feature."""
    return get_builder(data).info.features["label"].num_classes


def steps_per_epoch(data: ConfigDict, global_batch_size: int) -> int:
    """Training steps per epoch: ``num_examples(train_split) // global_batch_size``."""
    n = num_examples(data, data.get("train_split", "train"))
    if global_batch_size < 1 or n < global_batch_size:
        raise ValueError(f"global batch size {global_batch_size} must be in [1, {n}] (train split size)")
    return n // global_batch_size


def _local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index ({process_index}) < process_count ({process_count})")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the process count "
            f"{process_count}: use a global batch size that is a multiple of {process_count}"
        )
    return global_batch_size // process_count


def _process_split(data: ConfigDict) -> str:
    mode = data.get("process_split", "global_order")
    if mode not in PROCESS_SPLITS:
        raise ValueError(f"data.process_split must be one of {PROCESS_SPLITS}, got {mode!r}")
    return mode


def _raw(builder: tfds.core.DatasetBuilder, split, cache: bool) -> tuple[tf.data.Dataset, int]:
    """Returns the split's raw records {'image': encoded bytes, 'label'} and their count."""
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(f"dataset {builder.name!r} needs 'image' and 'label' features, has {list(features)}")
    ds = builder.as_dataset(
        split=split,
        shuffle_files=False,
        decoders={"image": tfds.decode.SkipDecoding()},
        # We cache explicitly (data.cache); TFDS' auto-cache would cache partial reads.
        read_config=tfds.ReadConfig(try_autocache=False),
    )
    ds = ds.map(lambda x: {"image": x["image"], "label": x["label"]})
    if cache:
        ds = ds.cache()
    n = int(ds.cardinality())
    if n < 0:
        n = builder.info.splits[split].num_examples
    return ds, n


def _preprocess_fn(builder: tfds.core.DatasetBuilder, spec: str) -> Callable:
    """Returns fn((features, seed[, mask])) -> {'image': float32, 'label': int32[, 'mask']}."""
    # Decode with the declared channel count first, so the spec sees a static channel
    # dimension even if it does not start with `decode` (then a no-op).
    stored_shape = builder.info.features["image"].shape
    decode = ops.get("decode", channels=stored_shape[-1])
    chain = ops.parse(spec)

    def fn(features, seed, mask=None):
        features = decode(features, seed)
        # The declared shape (e.g. (32, 32, 1), or (None, None, 3) for ImageNet) is checked
        # and made static, so fixed-size datasets need no resize for a static output shape.
        features["image"] = tf.ensure_shape(features["image"], stored_shape)
        features = chain(features, seed)
        out = {"image": tf.cast(features["image"], tf.float32), "label": tf.cast(features["label"], tf.int32)}
        if mask is not None:
            # Padding examples carry zeros, so nothing depends on which record padded.
            out["image"] = out["image"] * mask
            out["label"] = out["label"] * tf.cast(mask, tf.int32)
            out["mask"] = mask
        return out

    return fn


def _finish(ds: tf.data.Dataset, fn: Callable, local_batch: int, prefetch: int) -> Iterator[Batch]:
    """Decodes/augments rows in parallel (order kept), batches, prefetches, yields numpy."""
    ds = ds.unbatch().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True)
    if prefetch:
        ds = ds.prefetch(prefetch)
    options = tf.data.Options()
    options.deterministic = True
    return ds.with_options(options).as_numpy_iterator()


def _take_rows(ds: tf.data.Dataset, start: int, size: int) -> tf.data.Dataset:
    """Keeps rows [start, start + size) of every batch of ``ds``."""
    return ds.map(lambda *xs: tf.nest.map_structure(lambda t: t[start : start + size], xs))


def train_batches(
    data: ConfigDict,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Iterator[Batch]:
    """Infinite iterator of process-local training batches, starting at ``start_step``.

    Yields ``{'image': float32 [B/P, H, W, C], 'label': int32 [B/P]}``. See the module
    docstring for the ordering, seeding and resumption guarantees.
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    builder = get_builder(data)
    mode = _process_split(data)
    split = data.get("train_split", "train")
    if mode == "tfds_split" and process_count > 1:
        split = tfds.even_splits(split, process_count, drop_remainder=True)[process_index]
        read_batch, streams, stream = local, process_count, process_index
    else:
        read_batch, streams, stream = global_batch_size, 1, 0
    raw, n = _raw(builder, split, bool(data.get("cache", False)))
    spe = n // read_batch
    if spe == 0:
        raise ValueError(
            f"split {split!r} has {n} examples per process stream, fewer than a batch ({read_batch})"
        )
    start_epoch, skip = divmod(int(start_step), spe)
    buffer = int(data.get("shuffle_buffer", 10_000))
    seed_t = tf.constant(int(seed), tf.int64)

    def epoch(e: tf.Tensor) -> tf.data.Dataset:
        # `stream` makes the shuffles and example seeds of tfds_split processes distinct;
        # for global_order it is 0 and everything is independent of the process count.
        e_stream = e * streams + stream
        ds = raw
        if buffer > 1:
            shuffle_seed = tf.random.stateless_uniform(
                [], seed=tf.stack([seed_t, e_stream]), minval=None, maxval=None, dtype=tf.int64
            )
            ds = ds.shuffle(buffer, seed=shuffle_seed, reshuffle_each_iteration=False)
        ds = ds.enumerate().map(lambda i, x: (x, tf.stack([seed_t, e_stream * n + i])))
        ds = ds.batch(read_batch, drop_remainder=True)
        # Resume: skip whole raw batches of the first epoch before any decoding.
        return ds.skip(tf.where(e == start_epoch, tf.constant(skip, tf.int64), 0))

    ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(epoch)
    if mode == "global_order" and process_count > 1:
        ds = _take_rows(ds, process_index * local, local)
    fn = _preprocess_fn(builder, data.get("train_preprocess", ""))
    return _finish(ds, fn, local, int(data.get("prefetch", 2)))


def eval_batches(
    data: ConfigDict, *, global_batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[Batch]:
    """One pass over the eval split in file order, padded to whole batches.

    Yields ``{'image', 'label', 'mask': float32 [B/P]}`` with mask 1 for real examples and
    0 (zero image, label 0) for padding. With 'global_order' the global split is padded
    to a multiple of B and sliced like training, so the assembled global batches are
    the same for any P. With 'tfds_split', process p reads
    ``tfds.even_splits(split, P, drop_remainder=False)[p]``, padded so that all processes
    yield the same number of batches; every example is still seen exactly once.
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    builder = get_builder(data)
    split = data.get("eval_split", "test")
    if _process_split(data) == "tfds_split" and process_count > 1:
        parts = tfds.even_splits(split, process_count, drop_remainder=False)
        sizes = [builder.info.splits[part].num_examples for part in parts]
        split, offset, read_batch = parts[process_index], sum(sizes[:process_index]), local
        total = math.ceil(max(sizes) / local) * local
    else:
        offset, read_batch, total = 0, global_batch_size, None
    raw, n = _raw(builder, split, cache=False)
    if total is None:
        total = math.ceil(n / global_batch_size) * global_batch_size
    if n == 0:
        raise ValueError(f"eval split {split!r} is empty for process {process_index} of {process_count}")

    def tag(mask: float) -> Callable:
        return lambda i, x: (x, tf.stack([tf.constant(EVAL_SEED, tf.int64), offset + i]), mask)

    ds = raw.enumerate().map(tag(1.0))
    if total > n:
        # Padding rows reuse the first record (a valid encoded image); they are masked and zeroed.
        pad = raw.take(1).repeat(total - n).enumerate(start=n).map(tag(0.0))
        ds = ds.concatenate(pad)
    ds = ds.batch(read_batch, drop_remainder=True)
    if read_batch != local:
        ds = _take_rows(ds, process_index * local, local)
    fn = _preprocess_fn(builder, data.get("eval_preprocess", ""))
    return _finish(ds, fn, local, int(data.get("prefetch", 2)))


def element_spec_shape(data: ConfigDict, train: bool = True) -> tuple[int, int, int]:
    """(H, W, C) of preprocessed images (train or eval spec), found by tracing, not reading.

    Raises ValueError if the spec does not produce a fixed size (add a resize/crop op).
    """
    builder = get_builder(data)
    split = data.get("train_split" if train else "eval_split", "train" if train else "test")
    raw, _ = _raw(builder, split, cache=False)
    spec = data.get("train_preprocess" if train else "eval_preprocess", "")
    seeded = raw.map(lambda x: (x, tf.zeros([2], tf.int64)))
    shape = seeded.map(_preprocess_fn(builder, spec)).element_spec["image"].shape
    if not shape.is_fully_defined() or shape.rank != 3:
        raise ValueError(
            f"preprocessing {spec!r} of {builder.name!r} yields images of shape {shape}: "
            "add ops that produce a fixed (H, W, C), e.g. resize(224)"
        )
    return tuple(int(d) for d in shape)
