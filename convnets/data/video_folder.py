"""``convnets_video_folder``: a TFDS video dataset prepared from your own folders of decoded frames.

For video datasets TFDS has no builder for, e.g. Sports-1M (Karpathy et al. 2014; C3D's pre-training set). The
layout, under the manual directory (``--config.data.manual_dir``)::

    <manual_dir>/<split>/<class_name>/<video_id>/<frames>

``<split>`` is a TFDS split name (``train``, ``test``, ``validation``, ...: letters, digits, ``_``); the frames are
``.jpg`` / ``.jpeg`` / ``.png`` files in temporal order when sorted by name (zero-padded numbers), all of one
size within a video. The classes are the sorted class folder names of the ``train`` split (of the first split in
sorted order if there is no ``train``); every split uses that list, and a class folder of another split that is
not in it is an error. Hidden files (``.*``) are ignored. Each example is ``{'video': [T, H, W, 3] frames,
'label': class index, 'video_id': '<class_name>/<video_id>'}``; the frame files are stored as they are (JPEGs
are not re-encoded) and checked to decode when the dataset is prepared; no ffmpeg is needed.

Extracting frames from video files (e.g. Sports-1M's YouTube videos), 25 frames per second as in the papers'
clips, with ffmpeg::

    mkdir -p frames/train/juggling/video0001
    ffmpeg -i video0001.mp4 -vf fps=25 -q:v 2 frames/train/juggling/video0001/%06d.jpg

(``-vf fps=25,scale=171:128`` also scales the frames to C3D's 128x171, which saves disk and decoding time.)

Two ways to plug in a video dataset:

1. This builder: ``--config.data.name=convnets_video_folder --config.data.manual_dir=/path/to/frames`` (with
   ``--config.data.download=True`` for the first run, which prepares it). Every folder dataset has this one TFDS
   name, so give each its own ``--config.data.data_dir``: a data directory holds one prepared folder dataset,
   and once prepared it is reused whatever ``manual_dir`` says (delete ``<data_dir>/convnets_video_folder`` to
   prepare it again from changed folders).
2. Your own TFDS builder with the features ``{'video': tfds.features.Video([None, H, W, 3]), 'label':
   tfds.features.ClassLabel(...)}`` (the layout of TFDS's ``ucf101``), in a module imported before the run
   (e.g. from your experiment file); then ``--config.data.name=<its name>``.

Either way the video sits under 'video': the specs start with ``rename('video', 'image')`` (see
``convnets.data.ops.video``).
"""

from __future__ import annotations

import os
import re

import tensorflow_datasets as tfds

NAME = "convnets_video_folder"
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
_SPLIT_NAME = re.compile(r"\w+")


def _entries(path: str) -> list[str]:
    """Sorted names in the directory ``path``, hidden ones left out."""
    return sorted(name for name in os.listdir(path) if not name.startswith("."))


def _folders(path: str, what: str) -> list[str]:
    """The sub-folders of ``path``; any other (non-hidden) file there is an error naming it."""
    names = _entries(path)
    files = [name for name in names if not os.path.isdir(os.path.join(path, name))]
    if files:
        raise ValueError(
            f"{NAME}: {os.path.join(path, files[0])} is a file, but {path} must hold only {what} folders "
            "(layout <manual_dir>/<split>/<class_name>/<video_id>/<frames>)"
        )
    return names


def splits_and_classes(root: str) -> tuple[list[str], list[str]]:
    """(split names, class names) of the frame tree at ``root``, with clear errors for a bad tree."""
    if not os.path.isdir(root):
        raise ValueError(
            f"{NAME}: the manual directory {root} does not exist. Put the frames there as "
            "<split>/<class_name>/<video_id>/<frames .jpg/.png>, or point --config.data.manual_dir at them."
        )
    splits = _folders(root, "split")
    if not splits:
        raise ValueError(
            f"{NAME}: the manual directory {root} is empty. Put the frames there as "
            "<split>/<class_name>/<video_id>/<frames .jpg/.png> (e.g. train/juggling/video0001/000001.jpg)."
        )
    bad = [s for s in splits if not _SPLIT_NAME.fullmatch(s)]
    if bad:
        raise ValueError(f"{NAME}: {os.path.join(root, bad[0])}: split folder names must be letters, digits or _")
    first = "train" if "train" in splits else splits[0]
    classes = _folders(os.path.join(root, first), "class")
    if not classes:
        raise ValueError(f"{NAME}: the split folder {os.path.join(root, first)} has no class folders")
    for split in splits:
        unknown = [c for c in _folders(os.path.join(root, split), "class") if c not in classes]
        if unknown:
            raise ValueError(
                f"{NAME}: class folder {os.path.join(root, split, unknown[0])} is not a class of the {first!r} "
                f"split ({', '.join(classes)}): every split must use the classes of {first!r}; rename or remove it"
            )
    return splits, classes


def _frame_size(path: str) -> tuple[int, int]:
    """(width, height) of the frame file at ``path``, decoding it fully; ValueError naming it if it cannot."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
            return image.size
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises OSError (UnidentifiedImageError) for bad files.
        raise ValueError(
            f"{NAME}: the frame {path} cannot be read as an image ({type(e).__name__}: {e}); replace or remove it "
            "(e.g. extract the frames again)"
        ) from e


def video_frames(video_dir: str) -> list[str]:
    """Paths of the frames of one video folder in temporal (name) order, each checked to decode, all one size."""
    names = [n for n in _entries(video_dir) if n.lower().endswith(FRAME_SUFFIXES)]
    if not names:
        raise ValueError(
            f"{NAME}: the video folder {video_dir} has no frames (files ending in {', '.join(FRAME_SUFFIXES)}); "
            "extract them (e.g. ffmpeg -i video.mp4 -vf fps=25 <video_folder>/%06d.jpg) or remove the folder"
        )
    paths = [os.path.join(video_dir, n) for n in names]
    size = _frame_size(paths[0])
    for path in paths[1:]:
        if (other := _frame_size(path)) != size:
            raise ValueError(
                f"{NAME}: the frame {path} is {other[0]}x{other[1]} but {paths[0]} is {size[0]}x{size[1]}: the "
                "frames of one video must have one size"
            )
    return paths


class ConvnetsVideoFolder(tfds.core.GeneratorBasedBuilder):
    """Videos as folders of frames under the manual directory (see the module docstring)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = "Frames as <manual_dir>/<split>/<class_name>/<video_id>/<frames .jpg/.png>."

    def _info(self) -> tfds.core.DatasetInfo:
        # The class names are only known from the folders: set in _split_generators, stored with the dataset.
        features = {
            "video": tfds.features.Video(shape=(None, None, None, 3)),
            "label": tfds.features.ClassLabel(),
            "video_id": tfds.features.Text(),
        }
        return tfds.core.DatasetInfo(
            builder=self,
            description=__doc__.split("\n\n", 1)[0],
            features=tfds.features.FeaturesDict(features),
            supervised_keys=("video", "label"),
        )

    def _split_generators(self, dl_manager: tfds.download.DownloadManager) -> dict:
        # dl_manager.manual_dir asserts the directory exists and is not empty; say what is wrong first.
        root = os.fspath(getattr(dl_manager, "_manual_dir", None) or dl_manager.manual_dir)
        splits, classes = splits_and_classes(root)
        self.info.features["label"].names = classes
        return {split: self._generate_examples(os.path.join(root, split)) for split in splits}

    def _generate_examples(self, split_dir: str):
        for class_name in _folders(split_dir, "class"):
            class_dir = os.path.join(split_dir, class_name)
            for video in _folders(class_dir, "video"):
                video_id = f"{class_name}/{video}"
                frames = video_frames(os.path.join(class_dir, video))
                yield video_id, {"video": frames, "label": class_name, "video_id": video_id}
