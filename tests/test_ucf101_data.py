"""UCF101 through TFDS's ucf101 builder, with no network: what is missing is said before a preparation starts,
the files placed by hand are found by TFDS's own download manager, and mock_data feeds the video pipeline.

The end-to-end test prepares TFDS's real ucf101 builder offline from two fake zips placed in the manual
directory (their sizes and SHA-256 registered in place of the official ones) and a fake ``ffmpeg`` on PATH that
writes known JPEG frames for every video: it proves the file names and places the errors tell users.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from convnets.data import pipeline
from convnets.data import ucf101 as ucf101_files
from experiments import default

VIDEOS, SPLITS = ucf101_files.FILES
VIDEOS_URL = "https://storage.googleapis.com/thumos14_files/UCF101_videos.zip"
SPLITS_URL = "https://www.crcv.ucf.edu/data/UCF101/UCF101TrainTestSplits-RecognitionTask.zip"
TRAIN_VIDEOS = ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", "YoYo/v_YoYo_g09_c02.avi")
TEST_VIDEOS = ("Archery/v_Archery_g01_c01.avi",)
FRAMES = np.random.default_rng(0).integers(0, 256, (3, 8, 10, 3)).astype(np.uint8)


@pytest.fixture
def offline(monkeypatch):
    """Any download attempt fails the test (the tests must never touch the network)."""
    from tensorflow_datasets.core.download import downloader

    def refuse(self, url, *args, **kwargs):
        raise AssertionError(f"the test tried to download {url}")

    monkeypatch.setattr(downloader._Downloader, "download", refuse)


def _data(tmp_path, **fields):
    data = default.get_config().data
    data.update(dict(name="ucf101/ucf101_1", data_dir=str(tmp_path / "tfds"), download=True, prefetch=0))
    data.update(fields)
    return data


def _path_with(monkeypatch, tmp_path, ffmpeg: str | None) -> None:
    """PATH holds only an empty directory (no ffmpeg), or starts with one holding an executable ``ffmpeg`` script."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    if ffmpeg is not None:
        (bin_dir / "ffmpeg").write_text(ffmpeg)
        (bin_dir / "ffmpeg").chmod(0o755)
        monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    else:
        monkeypatch.setenv("PATH", str(bin_dir))


def test_missing_ffmpeg_is_named_before_any_download(tmp_path, monkeypatch, offline):
    _path_with(monkeypatch, tmp_path, ffmpeg=None)
    with pytest.raises(FileNotFoundError) as info:
        pipeline.get_builder(_data(tmp_path, manual_dir=str(tmp_path / "manual")))
    message = str(info.value)
    assert "ffmpeg binary is not on PATH" in message and "apt-get install ffmpeg" in message
    assert "conda install" in message and str(tmp_path / "manual") in message
    assert f"{VIDEOS} (6,960,400,115 bytes, from {VIDEOS_URL})" in message and f"{SPLITS} (113,943 bytes" in message


def test_not_prepared_without_download_names_the_files_and_manual_dir(tmp_path, offline):
    with pytest.raises(FileNotFoundError) as info:
        pipeline.get_builder(_data(tmp_path, download=False))
    message = str(info.value)
    assert "not prepared" in message and "data.download is False" in message
    for part in (
        VIDEOS,
        "6,960,400,115 bytes",
        SPLITS,
        "113,943 bytes",
        "ffmpeg",
        "--config.data.manual_dir",
        str(tmp_path / "tfds" / "downloads" / "manual"),
        "tens of GB",
    ):
        assert part in message


@pytest.mark.parametrize("name", [VIDEOS, SPLITS])
def test_manual_file_of_the_wrong_size(tmp_path, monkeypatch, offline, name):
    _path_with(monkeypatch, tmp_path, ffmpeg="#!/bin/sh\nexit 0\n")
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / name).write_bytes(b"cut short")
    with pytest.raises(ValueError, match=f"the UCF101 file {manual / name} has 9 bytes, but {name} from http"):
        pipeline.get_builder(_data(tmp_path, manual_dir=str(manual)))


def test_splits_zip_of_the_right_size_but_wrong_content(tmp_path, monkeypatch, offline):
    _path_with(monkeypatch, tmp_path, ffmpeg="#!/bin/sh\nexit 0\n")
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / SPLITS).write_bytes(b"\0" * 113_943)
    with pytest.raises(ValueError, match="right size but the wrong SHA-256.*not the official"):
        pipeline.get_builder(_data(tmp_path, manual_dir=str(manual)))


def _zip(path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)


def _fake_manual_dir(manual) -> None:
    """Zips laid out like the official two (trainlistNN lines carry a label number, testlistNN lines do not)."""
    manual.mkdir()
    videos = {
        f"UCF101/{os.path.basename(v)}": b"not decoded: the fake ffmpeg ignores it" for v in TRAIN_VIDEOS + TEST_VIDEOS
    }
    _zip(manual / VIDEOS, videos)
    lists = {}
    for k in (1, 2, 3):
        lists[f"ucfTrainTestlist/trainlist0{k}.txt"] = "".join(f"{v} {i + 1}\n" for i, v in enumerate(TRAIN_VIDEOS))
        lists[f"ucfTrainTestlist/testlist0{k}.txt"] = "".join(f"{v}\n" for v in TEST_VIDEOS)
    _zip(manual / SPLITS, lists)


def _fake_ffmpeg(tmp_path) -> str:
    """A shell script standing in for ffmpeg: copies FRAMES (as JPEG) to the output pattern, its last argument."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for t, frame in enumerate(FRAMES):
        (frames / f"{t}.jpeg").write_bytes(tf.io.encode_jpeg(frame, quality=100).numpy())
    return (
        "#!/bin/sh\nfor last; do :; done\n"
        f'for t in 0 1 2; do cp "{frames}/$t.jpeg" "$(printf "$last" $((t + 1)))"; done\n'
    )


@pytest.mark.slow  # prepares a TFDS dataset (~3 s)
def test_offline_preparation_from_the_manual_dir(tmp_path, monkeypatch, offline):
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.video import ucf101

    manual = tmp_path / "manual"
    _fake_manual_dir(manual)
    _path_with(monkeypatch, tmp_path, ffmpeg=_fake_ffmpeg(tmp_path))
    # The fake zips' sizes and SHA-256 in place of the official ones; TFDS registers no file name for the splits.
    infos = {}
    for url, name, registered in ((VIDEOS_URL, VIDEOS, VIDEOS), (SPLITS_URL, SPLITS, None)):
        info = checksums.compute_url_info(manual / name)
        infos[url] = checksums.UrlInfo(size=info.size, checksum=info.checksum, filename=registered)
    monkeypatch.setattr(ucf101.Ucf101, "url_infos", infos)
    data = _data(tmp_path, manual_dir=str(manual), batch_keys=("crops", "crop_mask", "label"))
    data.eval_preprocess = "rename('video', 'image')|video_clips(2, 3, 1)"
    builder = pipeline.get_builder(data)
    assert builder.is_prepared() and {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {
        "train": 2,
        "test": 1,
    }
    # The splits zip sits in TFDS's download cache under TFDS's name for its URL; the videos zip was read in place.
    assert os.path.exists(ucf101_files.cache_path(builder, data.data_dir, SPLITS_URL) + ".INFO")
    assert not os.path.exists(os.path.join(data.data_dir, "downloads", "ucf101", os.path.basename(VIDEOS_URL)))
    (batch,) = list(pipeline.eval_batches(data, global_batch_size=1))
    assert batch["label"].tolist() == [builder.info.features["label"].str2int("Archery")]
    assert batch["crops"].shape == (1, 3, 2, 8, 10, 3) and batch["crop_mask"].tolist() == [[1, 1, 0]]
    decoded = tf.io.decode_jpeg(tf.io.encode_jpeg(FRAMES[0], quality=100)).numpy()
    np.testing.assert_array_equal(batch["crops"][0, 0, 0], decoded)  # TFDS stored the frames ffmpeg wrote


@pytest.mark.slow  # ~2 s of tf.data on mock records
def test_mock_data_feeds_clip_specs(tmp_path):
    """The way experiment tests run ucf101: random videos of random sizes, shapes fixed by the specs."""
    data = _data(tmp_path, batch_keys=("crops", "crop_mask", "label"))
    data.eval_preprocess = "rename('video', 'image')|resize((16, 21))|center_crop(14)|video_clips(4, 3, 2)"
    data.train_preprocess = "rename('video', 'image')|random_temporal_crop(4)|resize((16, 21))|random_crop(14)|flip_lr"
    with tfds.testing.mock_data(num_examples=5):
        assert pipeline.num_classes(data) == 101 and pipeline.num_examples(data, "train") == 5
        (evals, _) = list(pipeline.eval_batches(data, global_batch_size=4))
        data.batch_keys = ("image", "label")
        train = next(pipeline.train_batches(data, global_batch_size=2, seed=0))
    assert evals["crops"].shape == (4, 3, 4, 14, 14, 3) and evals["crop_mask"].shape == (4, 3)
    assert evals["mask"].tolist() == [1, 1, 1, 1] and evals["crops"].max() > 0
    assert train["image"].shape == (2, 4, 14, 14, 3) and train["label"].dtype == np.int32
    assert all(0 <= label < 101 for label in train["label"])


def test_mock_detection_is_exact():
    with tfds.testing.mock_data(num_examples=1):
        assert ucf101_files.preparation_mocked()
    assert not ucf101_files.preparation_mocked()
