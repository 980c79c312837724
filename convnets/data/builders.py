"""Finding and preparing the TFDS builder a config names (embedded digits, downloads, ImageNet's manual tars)."""

from __future__ import annotations

import difflib
import functools
import os

import tensorflow as tf
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

DEFAULT_NAME = "convnets_digits"
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")


@functools.cache
def tf_cpu_only() -> None:
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

    Reads ``data.name``, ``data_dir``, ``manual_dir`` and ``download``. Raises ValueError for unknown names
    (with close matches), FileNotFoundError if the dataset is not prepared and ``data.download`` is False or
    ImageNet's manual files are missing, RuntimeError (chained) if downloading or preparing fails, e.g. offline.
    """
    tf_cpu_only()
    from convnets.data import digits  # noqa: F401  (registers the embedded `convnets_digits`)

    name = data.name
    base = name.split(":")[0].split("/")[0]
    known = _known_names()
    if base not in known and base not in tfds.list_builders(with_community_datasets=False):
        close = difflib.get_close_matches(base, known, n=5, cutoff=0.6)
        hint = f" Closest matches: {', '.join(close)}." if close else ""
        raise ValueError(
            f"unknown dataset {name!r}: use {DEFAULT_NAME!r} (embedded, no download) or a TFDS name "
            f"such as mnist, cifar10, imagenet2012.{hint}"
        )
    builder = tfds.builder(name, data_dir=data.data_dir or None)
    if builder.is_prepared():
        return builder

    root = os.fspath(builder.data_dir_root)
    manual_dir = data.manual_dir or os.path.join(root, "downloads", "manual")
    if base == "imagenet2012":
        # Check before anything else: TFDS only notices after setting up a download.
        _check_imagenet_manual_files(manual_dir)
    if not data.download:
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
