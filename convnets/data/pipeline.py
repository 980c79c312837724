"""Deterministic, resumable tf.data input pipelines over TFDS datasets, for any features.

What a batch holds: ``config.data.batch_keys`` (default ``('image', 'label')``) names the features of an
example AFTER preprocessing (``data.train_preprocess`` / ``data.eval_preprocess``, see ``convnets.data.ops``);
a batch is a dict with exactly those keys (eval batches add ``'mask'``), each ``[B/P, *per-example shape]``
with dtype float32 (floating features and uint8 pixels), int32 (other integers) or bool. A key the
preprocessing does not yield is a ValueError naming the op that would write it. Every per-example shape
must be static: ``element_spec(data)`` returns them by tracing, e.g. ``{'image': ((224, 224, 3), float32),
'label': ((), int32)}``; detection needs ``pad_boxes(N)``, multi-view evaluation reads ``'crops'``.

Raw records keep every feature of the TFDS record; images and videos stay encoded until an example is
preprocessed (``convnets.data.records``). Iterating the batches of a prepared dataset whose record files are
damaged raises ``records.DamagedDatasetError``, which names the files and says to prepare the dataset again.

Training stream (``train_batches``), for a global batch B split over P processes:

* The raw split is read in file order with images left encoded, so skipping records costs no decoding.
* Epoch e = the split shuffled with a seed derived from (seed, e), then enumerated; the
  example at position i of epoch e gets the stateless seed ``[seed, e * N + i]`` (N =
  examples per epoch) that drives its augmentation (see ``convnets.data.ops``). Each
  epoch is cut into global batches of B, dropping its remainder, so every epoch has
  ``steps_per_epoch = N // B`` steps and an example appears at most once per epoch.
* Resuming at step s starts at epoch ``s // steps_per_epoch`` and skips the first
  ``(s % steps_per_epoch) * B`` raw (undecoded) records: batch s of a resumed run is
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

Speed (``benchmarks/input_pipeline.py`` measures it per ImageNet chain): records are read by TFDS (16 files
interleaved, in a fixed order, for datasets of many files), decoded and augmented by a parallel map whose
output order is the input order (``deterministic=True``), batched and prefetched; ``options`` sets the thread
pool (``data.threads``), the autotune memory budget (``data.ram_budget_gb``) and one thread per op. A spec that
starts with ``decode`` and a crop of the original image (``inception_crop``) decodes only the crop window of
each JPEG (``data.fuse_decode``, on by default; same pixels, see ``convnets.data.ops``).

Caveats: tf.data's ``shuffle`` combines its op seed with TF's global seed, so calling
``tf.random.set_seed`` elsewhere changes (deterministically) the order; shuffle order is
only guaranteed stable for one TF version. A ``shuffle_buffer`` smaller than N shuffles
within a sliding window, as usual with tf.data; 0 or 1 disables shuffling.

Every ``data`` field is read directly: the config comes from ``experiments/default.py``, which defines them
all (tests build theirs from ``default.get_config().data`` too).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from convnets.data import records
from convnets.data.builders import DEFAULT_NAME, IMAGENET_MANUAL_FILES, get_builder

__all__ = [
    "DEFAULT_NAME",
    "EVAL_SEED",
    "IMAGENET_MANUAL_FILES",
    "PROCESS_SPLITS",
    "element_spec",
    "element_spec_shape",
    "eval_batches",
    "get_builder",
    "num_classes",
    "num_examples",
    "options",
    "steps_per_epoch",
    "train_batches",
]

# Eval preprocessing is seeded with [EVAL_SEED, index]: independent of the training seed,
# so eval numbers of runs with different seeds see identical inputs.
EVAL_SEED = 0x5EED
PROCESS_SPLITS = ("global_order", "tfds_split")

Batch = dict[str, np.ndarray]


def num_examples(data: ConfigDict, split: str) -> int:
    """Number of examples of ``split`` (any TFDS split string, e.g. 'train[:90%]')."""
    builder = get_builder(data)
    try:
        return builder.info.splits[split].num_examples
    except KeyError:  # No split metadata (e.g. under tfds.testing.mock_data): count the records.
        return records.read(builder, split, cache=False)[1]


def num_classes(data: ConfigDict) -> int:
    """Number of classes of the dataset's ``label`` feature."""
    features = get_builder(data).info.features
    if "label" not in features:
        raise ValueError(
            f"dataset {data.name!r} has no 'label' feature (it has {', '.join(features)}): set the class "
            "count in the config (e.g. model.num_classes) instead of asking the dataset"
        )
    return features["label"].num_classes


def steps_per_epoch(data: ConfigDict, global_batch_size: int) -> int:
    """Training steps per epoch: ``num_examples(train_split) // global_batch_size``."""
    n = num_examples(data, data.train_split)
    if global_batch_size < 1 or n < global_batch_size:
        raise ValueError(f"global batch size {global_batch_size} must be in [1, {n}] (train split size)")
    return n // global_batch_size


def _keys(data: ConfigDict) -> tuple[str, ...]:
    keys = tuple(data.batch_keys)
    if not keys or not all(isinstance(k, str) and k for k in keys) or len(set(keys)) != len(keys):
        raise ValueError(f"data.batch_keys must be distinct feature names, e.g. ('image', 'label'); got {keys!r}")
    if "mask" in keys:
        raise ValueError("data.batch_keys must not name 'mask': eval_batches adds it (1: real example, 0: padding)")
    return keys


def _local_batch_size(global_batch_size: int, process_index: int, process_count: int) -> int:
    if process_count < 1 or not 0 <= process_index < process_count:
        raise ValueError(f"need 0 <= process_index ({process_index}) < process_count ({process_count})")
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} is not divisible by the process count "
            f"{process_count}: use a global batch size that is a multiple of {process_count}"
        )
    return global_batch_size // process_count


def device_spec(data: ConfigDict) -> str:
    """``data.device_preprocess`` ('' when unset or blank): whether training batches carry device seeds and are
    transformed on the devices (``convnets.data.device_ops``), decided in this one place."""
    return str(data.get("device_preprocess", "") or "").strip()


def _process_split(data: ConfigDict) -> str:
    mode = data.process_split
    if mode not in PROCESS_SPLITS:
        raise ValueError(f"data.process_split must be one of {PROCESS_SPLITS}, got {mode!r}")
    return mode


def _rows_of(process_index: int, local: int, read_batch: int) -> Callable:
    """Predicate on (position, ...) keeping rows [p * local, (p + 1) * local) of every batch of read_batch rows."""
    return records.no_autograph(lambda i, *rest: (i % read_batch) // local == process_index)


def options(data: ConfigDict) -> tf.data.Options:
    """The tf.data options of every pipeline: deterministic order, and the thread and memory settings of ``data``.

    ``data.threads`` > 0 gives the pipeline a private pool of that many threads (0: tf.data's shared pool, one
    thread per core), e.g. to leave cores to the training step on a CPU host; ``data.ram_budget_gb`` > 0 caps
    the memory that autotuned buffers may take (0: tf.data's default, half of the host's memory). Each op runs
    on one thread (``max_intra_op_parallelism = 1``): the parallelism is across examples, which is both faster for
    small per-example ops and does not change any value.
    """
    threads, budget = int(data.threads), float(data.ram_budget_gb)
    if threads < 0 or budget < 0:
        raise ValueError(
            f"data.threads ({threads}) and data.ram_budget_gb ({budget}) must be >= 0 (0: tf.data's default)"
        )
    opts = tf.data.Options()
    opts.deterministic = True
    opts.threading.max_intra_op_parallelism = 1
    if threads:
        opts.threading.private_threadpool_size = threads
    opts.autotune.enabled = True
    if budget:
        opts.autotune.ram_budget = int(budget * 2**30)
    return opts


def _finish(
    ds: tf.data.Dataset, fn: Callable, local_batch: int, data: ConfigDict, builder: tfds.core.DatasetBuilder, split
) -> Iterator[Batch]:
    """Decodes/augments records in parallel (order kept), batches, prefetches, yields numpy.

    Damaged record files of the prepared dataset raise ``records.DamagedDatasetError`` (naming them).
    """
    # deterministic=True: results come out in input order whichever thread finishes first (exact resume).
    ds = ds.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(local_batch, drop_remainder=True)
    if int(data.prefetch):
        ds = ds.prefetch(int(data.prefetch))
    return records.checked(ds.with_options(options(data)).as_numpy_iterator(), builder, split)


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

    Yields dicts with exactly the keys ``data.batch_keys``, e.g. ``{'image': float32 [B/P, H, W, C], 'label':
    int32 [B/P]}``. See the module docstring for the ordering, seeding and resumption guarantees.
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    keys = _keys(data)
    builder = get_builder(data)
    mode = _process_split(data)
    split = data.train_split
    if mode == "tfds_split" and process_count > 1:
        split = tfds.even_splits(split, process_count, drop_remainder=True)[process_index]
        read_batch, streams, stream = local, process_count, process_index
    else:
        read_batch, streams, stream = global_batch_size, 1, 0
    raw, n = records.read(builder, split, bool(data.cache))
    spe = n // read_batch
    if spe == 0:
        raise ValueError(
            f"split {split!r} has {n} examples per process stream, fewer than a batch ({read_batch})"
        )
    start_epoch, skip = divmod(int(start_step), spe)
    buffer = int(data.shuffle_buffer)
    seed_t = tf.constant(int(seed), tf.int64)
    slice_rows = mode == "global_order" and process_count > 1

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
        # Whole batches only (the remainder of the epoch is dropped), then, on resumption, skip the first
        # epoch's consumed records before any decoding.
        ds = ds.enumerate().take(spe * read_batch)
        ds = ds.skip(tf.where(e == start_epoch, tf.constant(skip * read_batch, tf.int64), 0))
        if slice_rows:
            ds = ds.filter(_rows_of(process_index, local, read_batch))
        return ds.map(records.no_autograph(lambda i, x: (x, tf.stack([seed_t, e_stream * n + i]))))

    ds = tf.data.Dataset.range(start_epoch, 2**62).flat_map(records.no_autograph(epoch))
    fn = records.example_fn(builder, data.train_preprocess, keys, bool(data.fuse_decode),
                            device_seed=bool(device_spec(data)))
    return _finish(ds, fn, local, data, builder, split)


def eval_batches(
    data: ConfigDict, *, global_batch_size: int, process_index: int = 0, process_count: int = 1
) -> Iterator[Batch]:
    """One pass over the eval split in file order, padded to whole batches.

    Yields dicts with the keys ``data.batch_keys`` plus ``'mask'`` (float32 [B/P]), mask 1 for real examples and
    0 for padding, whose rows are zero (False) in every key. With 'global_order' the global split is padded
    to a multiple of B and sliced like training, so the assembled global batches are
    the same for any P. With 'tfds_split', process p reads
    ``tfds.even_splits(split, P, drop_remainder=False)[p]``, padded so that all processes
    yield the same number of batches; every example is still seen exactly once.
    """
    local = _local_batch_size(global_batch_size, process_index, process_count)
    keys = _keys(data)
    builder = get_builder(data)
    split = data.eval_split
    if _process_split(data) == "tfds_split" and process_count > 1:
        parts = tfds.even_splits(split, process_count, drop_remainder=False)
        sizes = [builder.info.splits[part].num_examples for part in parts]
        split, offset, read_batch = parts[process_index], sum(sizes[:process_index]), local
        total = math.ceil(max(sizes) / local) * local
    else:
        offset, read_batch, total = 0, global_batch_size, None
    raw, n = records.read(builder, split, cache=False)
    if total is None:
        total = math.ceil(n / global_batch_size) * global_batch_size
    if n == 0:
        raise ValueError(f"eval split {split!r} is empty for process {process_index} of {process_count}")

    def tag(mask: float) -> Callable:
        return records.no_autograph(lambda i, x: (i, x, tf.stack([tf.constant(EVAL_SEED, tf.int64), offset + i]), mask))

    ds = raw.enumerate().map(tag(1.0))
    if total > n:
        # Padding rows reuse the first record (a valid encoded image); they are masked and zeroed.
        pad = raw.take(1).repeat(total - n).enumerate(start=n).map(tag(0.0))
        ds = ds.concatenate(pad)
    if read_batch != local:
        ds = ds.filter(_rows_of(process_index, local, read_batch))
    ds = ds.map(records.no_autograph(lambda i, x, seed, mask: (x, seed, mask)))
    fn = records.example_fn(builder, data.eval_preprocess, keys, bool(data.fuse_decode))
    return _finish(ds, fn, local, data, builder, split)


def _traced(data: ConfigDict, train: bool, keys: tuple[str, ...]) -> tuple[dict[str, tf.TensorSpec], str]:
    spec = data.train_preprocess if train else data.eval_preprocess
    split = data.train_split if train else data.eval_split
    return records.trace(get_builder(data), split, spec, keys), spec


def element_spec(data: ConfigDict, train: bool = True) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Per-example ``(shape, numpy dtype)`` of each key of ``data.batch_keys`` in train (or eval) batches, no 'mask'.

    Found by tracing the preprocessing, not by reading data. Raises ValueError if a shape is not static.
    """
    specs, spec = _traced(data, train, _keys(data))
    out = {}
    for key, tensor_spec in specs.items():
        if not tensor_spec.shape.is_fully_defined():
            raise ValueError(
                f"preprocessing {spec!r} of {data.name!r} yields {key!r} of shape {tensor_spec.shape}, not a "
                "fixed shape, so it cannot be batched: add ops that fix it, e.g. resize(224) or a crop for "
                "images, pad_boxes(50) for boxes, temporal_crop(16) for clips"
            )
        out[key] = (tuple(int(d) for d in tensor_spec.shape), np.dtype(tensor_spec.dtype.as_numpy_dtype))
    return out


def element_spec_shape(data: ConfigDict, train: bool = True) -> tuple[int, int, int]:
    """(H, W, C) of preprocessed images (train or eval spec), found by tracing, not reading.

    Looks at 'image' whatever ``data.batch_keys`` holds. Raises ValueError if the spec does not produce a fixed
    size (add a resize/crop op).
    """
    specs, spec = _traced(data, train, ("image",))
    shape = specs["image"].shape
    if not shape.is_fully_defined() or shape.rank != 3:
        raise ValueError(
            f"preprocessing {spec!r} of {data.name!r} yields images of shape {shape}: "
            "add ops that produce a fixed (H, W, C), e.g. resize(224)"
        )
    return tuple(int(d) for d in shape)
