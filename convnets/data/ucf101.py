"""UCF101 through TFDS's ``ucf101`` builder: what a preparation needs, said before it starts.

UCF101 (``ucf101/ucf101_1`` .. ``ucf101_3``: the three official train/test splits, ``ucf101_1_256``: split 1 with
frames scaled to 256x256) comes through TFDS's ``ucf101`` builder, which downloads the videos zip (6.5 GiB) and
the splits zip and decodes every .avi with the ``ffmpeg`` binary, so ffmpeg must be on PATH (checked first). On
a machine without internet the two zips can be placed by hand in the manual directory under their own names
(``FILES``): the videos zip is used by TFDS from there (its name is registered for its URL, like VOC's
tars); the splits zip has no registered name, so TFDS's manual directory does not see it, and it is copied
(size and SHA-256 checked) into TFDS's download cache under the name TFDS gives that URL
(``<data_dir>/downloads/ucf101/<tfds.core.download.resource.get_dl_fname(url, sha256)>`` plus its ``.INFO``
file), where TFDS's download manager finds it as an earlier download. The checks are skipped under
``tfds.testing.mock_data`` (no preparation runs there).
"""

from __future__ import annotations

import os
import shutil

import tensorflow_datasets as tfds

NAME = "ucf101"
# The two files TFDS's ucf101 builder downloads, as named in the manual directory (the videos zip by the name
# TFDS registered for its URL, the splits zip by the last part of its URL); their URLs and sizes come from TFDS.
FILES = ("UCF101_videos.zip", "UCF101TrainTestSplits-RecognitionTask.zip")
HOMEPAGE = "https://www.crcv.ucf.edu/data-sets/ucf101/"
# UCF101 paper (Soomro et al. 2012, Table 1): 13,320 clips, 1,600 minutes at 25 fps, 320x240. TFDS stores every
# frame as a JPEG in each config's records; not measured here (no ffmpeg), hence only a lower bound on disk.
_DISK = (
    "about 14 GB for the zip and its extraction (downloads/ and downloads/extracted/ of the data directory), "
    "plus the prepared records: every one of the ~2.4 million frames as a JPEG, tens of GB for each config "
    "(ucf101_1, ucf101_2 and ucf101_3 are prepared separately and each holds all 13,320 videos; ucf101_1_256 "
    "scales the frames to 256x256)"
)


def preparation_mocked() -> bool:
    """Whether ``tfds.testing.mock_data`` is active: then download_and_prepare does nothing (and needs nothing)."""
    return tfds.core.DatasetBuilder.download_and_prepare.__module__ == "tensorflow_datasets.testing.mocking"


def sources(builder: tfds.core.DatasetBuilder) -> dict[str, tuple[str, int]]:
    """Manual file name -> (URL, size in bytes) of the files TFDS's ucf101 builder downloads (UCF101_FILES)."""
    return {
        info.filename or url.rsplit("/", 1)[-1]: (url, int(info.size)) for url, info in builder.url_infos.items()
    }


def cache_path(builder: tfds.core.DatasetBuilder, root: str, url: str) -> str:
    """Where TFDS's download manager looks for an earlier download of ``url`` (with a registered checksum)."""
    from tensorflow_datasets.core.download import resource

    name = resource.get_dl_fname(url, builder.url_infos[url].checksum)
    return os.path.join(root, "downloads", builder.name, name)


def hint(builder: tfds.core.DatasetBuilder, root: str, manual_dir: str) -> str:
    """What a preparation of ucf101 needs: ffmpeg, the two files (for machines without internet), the disk."""
    files = " and ".join(f"{name} ({size:,} bytes, from {url})" for name, (url, size) in sources(builder).items())
    return (
        f"TFDS's ucf101 builder needs the ffmpeg binary on PATH to decode the videos (apt-get install ffmpeg, or "
        f"conda install -c conda-forge ffmpeg). It downloads {files}; without internet, download them elsewhere and "
        f"put them, keeping these names, into the manual directory {manual_dir} (--config.data.manual_dir), then run "
        f"with --config.data.download=True. Disk needed in {root}: {_DISK}. See {HOMEPAGE}."
    )


def _missing_ffmpeg(builder: tfds.core.DatasetBuilder, root: str, manual_dir: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"cannot prepare {builder.info.full_name.rsplit('/', 1)[0]}: the ffmpeg binary is not on PATH "
        f"(PATH={os.environ.get('PATH', '')}). " + hint(builder, root, manual_dir)
    )


def _use_manual_files(builder: tfds.core.DatasetBuilder, root: str, manual_dir: str) -> None:
    """Checks the UCF101 files placed in ``manual_dir`` and puts the splits zip where TFDS's download manager
    finds it (the videos zip TFDS takes from ``manual_dir`` itself). Files not placed are downloaded by TFDS."""
    from etils import epath
    from tensorflow_datasets.core.download import checksums, resource

    for name, (url, size) in sources(builder).items():
        path = os.path.join(manual_dir, name)
        if not os.path.exists(path):
            continue
        if (found := os.path.getsize(path)) != size:
            raise ValueError(
                f"the UCF101 file {path} has {found:,} bytes, but {name} from {url} has {size:,} (TFDS checks its "
                "SHA-256 too). Download it again; a partial download or a full disk leaves a short file."
            )
        expected = builder.url_infos[url]
        if expected.filename:  # TFDS reads this one from manual_dir (and checks its SHA-256).
            continue
        cached = cache_path(builder, root, url)
        if resource.is_locally_cached(epath.Path(cached)):
            continue
        info = checksums.compute_url_info(path)
        if info.checksum != expected.checksum:
            raise ValueError(
                f"the UCF101 file {path} has the right size but the wrong SHA-256 ({info.checksum}, expected "
                f"{expected.checksum}): it is not the official {name}. Download it again from {url}."
            )
        os.makedirs(os.path.dirname(cached), exist_ok=True)
        shutil.copyfile(path, cached)
        resource.write_info_file(url, epath.Path(cached), builder.name, name, expected)


def check_and_place_files(builder: tfds.core.DatasetBuilder, root: str, manual_dir: str) -> None:
    """Before a preparation: ffmpeg on PATH (else FileNotFoundError with the whole hint), then the files placed by
    hand checked and the splits zip put where TFDS's download manager finds it."""
    if shutil.which("ffmpeg") is None:
        raise _missing_ffmpeg(builder, root, manual_dir)
    _use_manual_files(builder, root, manual_dir)
