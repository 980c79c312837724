"""Finding and preparing the TFDS builder a config names (embedded datasets, downloads, manual tars).

What stops a preparation is said before it starts where it can be: ImageNet's or VOC's tar files missing, empty,
not tar archives or cut short (checked from their first header and their end, not read through), and a data
directory that cannot be written.

PASCAL VOC (``voc/2007``, ``voc/2012``; ``convnets_voc0712``: 07+12 trainval, 07 test, ``convnets.data.voc0712``)
comes through TFDS's own ``voc`` builder from the official tar files
placed by hand in the manual directory (``data.manual_dir``, default ``<data_dir>/downloads/manual``):
TFDS's download manager uses a file of the manual directory in place of a download when its name is the one
TFDS registered for the URL (``url_checksums/voc.txt``), and verifies its size and SHA-256 as for a download.
TFDS would otherwise download them from a third-party mirror; here they are required by hand, like ImageNet's,
and the error says which files go where. An annotation TFDS cannot store (a class name not in VOC's 20, a box
with max < min or outside its image) fails the preparation: the error names the XML file and the object.

UCF101's checks and offline files: ``convnets.data.ucf101``.
"""

from __future__ import annotations

import difflib
import errno
import functools
import importlib.util
import os
import tarfile
import tempfile

import tensorflow as tf
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

DEFAULT_NAME = "convnets_digits"
IMAGENET_MANUAL_FILES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
_IMAGENET_SIZES = "about 138 GiB and 6.3 GiB"  # Of the two files above as image-net.org serves them.
_TAR_BLOCK = 512
_UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS)
VOC_HOMEPAGE = "http://host.robots.ox.ac.uk/pascal/VOC/"
# Where each official file comes from (TFDS's voc builder needs both files of its year: it prepares a test split).
_VOC_SOURCES = {
    "VOCtrainval_06-Nov-2007.tar": VOC_HOMEPAGE + "voc2007/ (training/validation data)",
    "VOCtest_06-Nov-2007.tar": VOC_HOMEPAGE + "voc2007/ (annotated test data)",
    "VOCtrainval_11-May-2012.tar": VOC_HOMEPAGE + "voc2012/ (training/validation data)",
    "VOC2012test.tar": "the VOC evaluation server http://host.robots.ox.ac.uk:8080/ (test images, no annotations; "
    "registration needed)",
}


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


def manual_files_hint(builder: tfds.core.DatasetBuilder, manual_dir: str) -> str:
    """For a dataset TFDS downloads from registered URLs (CelebA, LSUN, CIFAR-10, MNIST, ...): the files that can
    be placed by hand in the manual directory instead (TFDS uses a file there whose name is the one registered for
    its URL, and checks its size and SHA-256), or '' when the builder registers no file names."""
    try:
        infos = builder.url_infos or {}
    except Exception:  # noqa: BLE001 - a builder without checksums: nothing to suggest
        return ""
    named = [(info.filename, int(info.size), url) for url, info in infos.items() if info.filename]
    config = builder.builder_config.name if builder.builder_config else ""
    if config and any(config in name for name, _, _ in named):  # one config's files (lsun/bedroom: bedroom_*.zip)
        named = [row for row in named if config in row[0]]
    if not named:
        return ""
    shown = "; ".join(f"{name} ({size:,} bytes, from {url})" for name, size, url in named[:8])
    more = f"; and {len(named) - 8} more" if len(named) > 8 else ""
    return (
        f" Without internet, put the files TFDS would download into the manual directory {manual_dir} "
        f"(--config.data.manual_dir), keeping these names: {shown}{more}; then run with --config.data.download=True."
    )


def _prepare_hint(name: str, data_dir: str) -> str:
    """How to get a dataset that cannot be downloaded here (offline machines)."""
    return (
        f"To prepare it, run with --config.data.download=True on a machine with internet access "
        f"(or `tfds build {name} --data_dir={data_dir}`), then copy {data_dir} here and point "
        "--config.data.data_dir at it."
    )


def _redownload_hint(manual_dir: str, which: str = "it") -> str:
    return (
        f"Download {which} again from https://image-net.org/download-images into {manual_dir} and check its size "
        f"(the two files are {_IMAGENET_SIZES}); a partial download or a full disk leaves a short file."
    )


def tar_problem(path: str) -> str | None:
    """What makes the tar file at ``path`` unusable (empty, not a tar archive, cut short), or None.

    Reads the first header and the last two blocks only (an uncompressed tar ends with two zero blocks, so a
    file cut short by an interrupted download almost surely does not), so it is instant on ImageNet's 138 GiB.
    """
    size = os.path.getsize(path)
    if size == 0:
        return "is empty (0 bytes)"
    try:
        with tarfile.open(path, "r:"):
            pass
    except tarfile.TarError as e:
        return f"is not a tar archive ({size:,} bytes; {e})"
    with open(path, "rb") as f:
        f.seek(max(0, size - 2 * _TAR_BLOCK))
        end = f.read()
    if size % _TAR_BLOCK or end.count(0) != len(end):
        return f"is cut short ({size:,} bytes, no end-of-archive marker)"
    return None


def _check_imagenet_manual_files(manual_dir: str) -> None:
    missing = [f for f in IMAGENET_MANUAL_FILES if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
        raise FileNotFoundError(
            f"imagenet2012 must be prepared from manually downloaded files: put {' and '.join(missing)} "
            f"(of {' and '.join(IMAGENET_MANUAL_FILES)}) into the directory {manual_dir}. Get them from "
            "https://image-net.org/download-images (free registration, 'ILSVRC2012' training and "
            "validation images). To use another directory, pass --config.data.manual_dir=/path/to/dir."
        )
    for name in IMAGENET_MANUAL_FILES:
        path = os.path.join(manual_dir, name)
        if (problem := tar_problem(path)) is not None:
            raise ValueError(f"the ImageNet file {path} {problem}. " + _redownload_hint(manual_dir))


def _damaged_imagenet_tar(manual_dir: str, error: Exception) -> ValueError:
    """The error for a tar that broke while TFDS read it (damage inside, e.g. in one class's inner tar)."""
    paths = [os.path.join(manual_dir, name) for name in IMAGENET_MANUAL_FILES]
    sizes = ", ".join(f"{os.path.basename(p)} {os.path.getsize(p):,} bytes" for p in paths)
    return ValueError(
        f"reading the ImageNet tar files in {manual_dir} failed ({type(error).__name__}: {error}): one of them "
        f"is damaged ({sizes}). " + _redownload_hint(manual_dir, "the damaged one")
    )


def voc_manual_files(builder: tfds.core.DatasetBuilder) -> tuple[str, ...]:
    """The official tar files TFDS's voc builder of this year reads (trainval first), e.g. 2007's two; for
    ``convnets_voc0712`` VOC 2007's two and VOC 2012's trainval."""
    from convnets.data import voc0712

    if builder.name == voc0712.NAME:
        return voc0712.MANUAL_FILES
    filenames = builder.builder_config.filenames
    return tuple(filenames[k] for k in ("trainval", "test") if k in filenames)


def _registered_sizes() -> dict[str, int]:
    """File name -> size in bytes, as TFDS's checksum registry (the one its download manager checks) has them."""
    from tensorflow_datasets.core.download import checksums

    return {info.filename: int(info.size) for info in checksums.get_all_url_infos().values() if info.filename}


def _check_voc_manual_files(builder: tfds.core.DatasetBuilder, manual_dir: str) -> None:
    names = voc_manual_files(builder)
    missing = [f for f in names if not os.path.exists(os.path.join(manual_dir, f))]
    if missing:
        sources = "; ".join(f"{f} from {_VOC_SOURCES.get(f, VOC_HOMEPAGE)}" for f in missing)
        raise FileNotFoundError(
            f"{builder.info.full_name.rsplit('/', 1)[0]} is prepared from the official PASCAL VOC tar files placed "
            f"by hand: put {' and '.join(missing)} (of {' and '.join(names)}) into the directory {manual_dir}. "
            f"Get {sources}. Keep the file names and do not extract them. To use another directory, pass "
            "--config.data.manual_dir=/path/to/dir."
        )
    expected = _registered_sizes()
    for name in names:
        path = os.path.join(manual_dir, name)
        size = os.path.getsize(path)
        if name in expected and size != expected[name]:
            raise ValueError(
                f"the VOC file {path} has {size:,} bytes, but the official {name} has {expected[name]:,} (TFDS "
                f"checks its SHA-256 too). Download it again from {_VOC_SOURCES.get(name, VOC_HOMEPAGE)}; a partial "
                "download or a full disk leaves a short file."
            )
        if (problem := tar_problem(path)) is not None:
            raise ValueError(f"the VOC file {path} {problem}. Download it again.")


def _voc_object_problems(text: bytes, labels: set[str]) -> list[str]:
    """What TFDS's voc builder cannot store in one annotation XML (its checks: label, 0 <= min <= max <= size)."""
    import xml.etree.ElementTree as ElementTree

    root = ElementTree.fromstring(text)
    width, height = (float(root.find(f"size/{k}").text) for k in ("width", "height"))
    problems = []
    for k, obj in enumerate(root.findall("object")):
        name = obj.find("name").text.strip().lower()
        box = {c: float(obj.find(f"bndbox/{c}").text) for c in ("xmin", "ymin", "xmax", "ymax")}
        coordinates = " ".join(f"{c}={v:g}" for c, v in box.items())
        where = f"object {k} ({name!r}, {coordinates})"
        if name not in labels:
            problems.append(f"{where}: class name not one of VOC's 20")
        if box["xmax"] < box["xmin"] or box["ymax"] < box["ymin"]:
            problems.append(f"{where}: max < min")
        if min(box.values()) < 0 or box["xmax"] > width or box["ymax"] > height:
            problems.append(f"{where}: outside the image ({width:g} x {height:g})")
    return problems


def _voc_annotation_error(builder: tfds.core.DatasetBuilder, manual_dir: str, error: Exception) -> Exception:
    """The error naming the XML files and objects TFDS refused, or ``error`` itself if none are found."""
    labels = set(builder.info.features["objects"]["label"].names)
    found = []
    for name in voc_manual_files(builder):
        with tarfile.open(os.path.join(manual_dir, name)) as tar:
            for member in tar:
                if member.isfile() and "/Annotations/" in member.name and member.name.endswith(".xml"):
                    problems = _voc_object_problems(tar.extractfile(member).read(), labels)
                    found += [f"{name}:{member.name}: {p}" for p in problems]
    if not found:
        return error
    shown = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
    return ValueError(
        f"TFDS's voc builder cannot store {len(found)} annotated object(s) of the VOC files in {manual_dir} "
        f"({type(error).__name__}: {error}): {shown}. Fix or remove these objects in the XML files (the official "
        "annotations have none of these problems; py-faster-rcnn's loader fails on them as well)."
    )


def _unwritable(directory: str) -> str | None:
    """Why ``directory`` (created if missing) cannot hold a prepared dataset, or None if it can."""
    if "://" in directory:  # gs:// and other remote file systems: TFDS reports their own errors.
        return None
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as e:
        return e.strerror or str(e)
    return None


def _not_writable_message(name: str, directory: str, reason: str) -> str:
    return (
        f"cannot prepare dataset {name!r}: the data directory {directory} is not writable ({reason}). "
        "Point --config.data.data_dir at a directory you can write to (the dataset is prepared there on "
        f"first use), or prepare it elsewhere and copy it into {directory}."
    )


def _prepare_failure(name: str, root: str, error: OSError) -> str:
    if error.errno in _UNWRITABLE:
        return _not_writable_message(name, root, error.strerror or str(error))
    if error.errno == errno.ENOSPC:
        return (
            f"could not prepare dataset {name!r} into {root}: the disk is full ({error}). Free some space or "
            "point --config.data.data_dir at a larger disk."
        )
    return f"could not download/prepare dataset {name!r} into {root}: {error}. " + _prepare_hint(name, root)


def get_builder(data: ConfigDict) -> tfds.core.DatasetBuilder:
    """Returns the prepared TFDS builder named by ``data.name``, preparing it if allowed.

    Reads ``data.name``, ``data_dir``, ``manual_dir`` and ``download``. Raises ValueError for unknown names
    (with close matches), FileNotFoundError if the dataset is not prepared and ``data.download`` is False or
    ImageNet's or VOC's manual files are missing or (UCF101) ffmpeg is not on PATH, ValueError if one of them is
    damaged or (VOC) an annotation cannot be stored, PermissionError if the data
    directory is not writable, RuntimeError (chained) if downloading or preparing fails, e.g. offline.
    """
    tf_cpu_only()
    # Importing registers the embedded `convnets_digits`, `convnets_digit_scenes` and `convnets_moving_digits`,
    # `convnets_voc0712` and `convnets_video_folder` (users' own frame folders).
    from convnets.data import digit_scenes, digits, moving_digits, ucf101, video_folder, voc0712  # noqa: F401

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
    voc = base in ("voc", voc0712.NAME)
    if voc:
        _check_voc_manual_files(builder, manual_dir)
    is_ucf101 = base == ucf101.NAME and not ucf101.preparation_mocked()
    if not data.download and base == video_folder.NAME:  # prepared from local frames: no internet involved
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared in {root} and data.download is False. It is prepared from your "
            f"frames in {manual_dir} (<split>/<class_name>/<video_id>/<frames .jpg/.png>; --config.data.manual_dir): "
            "run once with --config.data.download=True (nothing is downloaded)."
        )
    special = base in ("imagenet2012", ucf101.NAME, video_folder.NAME) or voc
    files = "" if special else manual_files_hint(builder, manual_dir)
    if not data.download:
        raise FileNotFoundError(
            f"dataset {name!r} is not prepared in {root} and data.download is False. "
            + _prepare_hint(name, root)
            + (" " + ucf101.hint(builder, root, manual_dir) if is_ucf101 else files)
        )
    if (reason := _unwritable(root)) is not None:
        raise PermissionError(_not_writable_message(name, root, reason))
    if base == "lsun" and not ucf101.preparation_mocked() and importlib.util.find_spec("lmdb") is None:
        raise ModuleNotFoundError(
            f"preparing {name!r} needs the Python package lmdb (TFDS's lsun builder reads the LMDB databases of the "
            "zips): pip install lmdb." + files
        )
    if is_ucf101:
        ucf101.check_and_place_files(builder, root, manual_dir)
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except (tarfile.TarError, EOFError) as e:
        if base != "imagenet2012":
            raise
        raise _damaged_imagenet_tar(manual_dir, e) from e
    except (ValueError, KeyError, RuntimeError) as e:  # TFDS re-raises encoding errors as RuntimeError.
        if not voc or (named := _voc_annotation_error(builder, manual_dir, e)) is e:
            raise
        raise named from e
    except OSError as e:  # requests' ConnectionError and friends are OSErrors.
        hint = " " + ucf101.hint(builder, root, manual_dir) if is_ucf101 else files
        raise RuntimeError(_prepare_failure(name, root, e) + hint) from e
    return builder
