"""``convnets_video_folder``: a dataset prepared from folders of frames, read back pixel for pixel; bad trees named."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from convnets.data import pipeline, records, video_folder
from experiments import default

CLASSES = ("juggling", "archery")  # sorted: archery = 0, juggling = 1
T, H, W = 5, 12, 16


def _frames(class_index: int, video: int) -> np.ndarray:
    return np.random.default_rng(10 * class_index + video).integers(0, 256, (T, H, W, 3)).astype(np.uint8)


def _write_video(folder, frames: np.ndarray) -> None:
    folder.mkdir(parents=True)
    for t, frame in enumerate(frames):
        (folder / f"{t + 1:06d}.png").write_bytes(tf.io.encode_png(frame).numpy())


def _tree(root, splits=("train", "test")) -> dict[str, np.ndarray]:
    """2 classes x 2 videos x 5 frames of 12x16 per split (PNG, lossless); video_id -> frames."""
    written = {}
    for split, (c, name), v in itertools.product(splits, enumerate(CLASSES), range(2)):
        frames = _frames(c, v + 2 * (split == "test"))
        _write_video(root / split / name / f"v{v}", frames)
        written[f"{split}:{name}/v{v}"] = frames
    (root / "train" / ".DS_Store").write_bytes(b"hidden files are ignored")
    return written


def _data(tmp_path, manual_dir, **fields):
    data = default.get_config().data
    data.update(dict(name=video_folder.NAME, data_dir=str(tmp_path / "tfds"), manual_dir=str(manual_dir)))
    data.update(dict(download=True, prefetch=0, shuffle_buffer=0, batch_keys=("image", "label")))
    data.update(fields)
    return data


@pytest.mark.slow  # prepares a TFDS dataset (~2 s)
def test_prepared_from_frames_and_read_back(tmp_path):
    written = _tree(tmp_path / "frames")
    data = _data(tmp_path, tmp_path / "frames")
    data.train_preprocess = "rename('video', 'image')|temporal_crop(5)"
    builder = pipeline.get_builder(data)
    assert builder.info.features["label"].names == sorted(CLASSES)
    assert {s: builder.info.splits[s].num_examples for s in ("train", "test")} == {"train": 4, "test": 4}
    assert set(records.encoded_features(builder)) == {"video"}
    # Every video, read through TFDS, has exactly the written pixels, the class of its folder and its id.
    for split in ("train", "test"):
        for x in builder.as_dataset(split=split).as_numpy_iterator():
            video_id = x["video_id"].decode()
            np.testing.assert_array_equal(x["video"], written[f"{split}:{video_id}"])
            assert builder.info.features["label"].int2str(x["label"]) == video_id.split("/")[0]
    # Through the pipeline: whole clips, the pixels again (batches in the dataset's file order, no shuffle).
    batch = next(pipeline.train_batches(data, global_batch_size=4, seed=0))
    assert batch["image"].shape == (4, T, H, W, 3) and sorted(batch["label"].tolist()) == [0, 0, 1, 1]
    train = {v.tobytes() for k, v in written.items() if k.startswith("train:")}
    assert {video.astype(np.uint8).tobytes() for video in batch["image"]} == train
    # A clip spec with a random temporal window and crop: the frames of a clip stay consecutive frames.
    data.train_preprocess = "rename('video', 'image')|random_temporal_crop(3)|random_crop((8, 10))"
    batch = next(pipeline.train_batches(data, global_batch_size=2, seed=1))
    assert batch["image"].shape == (2, 3, 8, 10, 3)
    # A second data_dir for a second folder dataset: its own classes, the first one untouched.
    _write_video(tmp_path / "other" / "train" / "zebra" / "z0", _frames(5, 0))
    other = pipeline.get_builder(_data(tmp_path, tmp_path / "other", data_dir=str(tmp_path / "tfds_other")))
    assert other.info.features["label"].names == ["zebra"] and other.info.splits["train"].num_examples == 1
    assert pipeline.get_builder(data).info.features["label"].names == sorted(CLASSES)


def _prepare_error(tmp_path, manual_dir) -> str:
    with pytest.raises(ValueError) as info:
        pipeline.get_builder(_data(tmp_path, manual_dir))
    return str(info.value)


def test_tree_errors(tmp_path):
    assert "does not exist" in _prepare_error(tmp_path, tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert f"the manual directory {tmp_path / 'empty'} is empty" in _prepare_error(tmp_path, tmp_path / "empty")
    root = tmp_path / "frames"
    _write_video(root / "train" / "archery" / "v0", _frames(0, 0)[:1])
    _write_video(root / "test" / "fencing" / "v0", _frames(0, 0)[:1])
    message = _prepare_error(tmp_path, root)
    assert f"class folder {root / 'test' / 'fencing'} is not a class of the 'train' split (archery)" in message
    (root / "test" / "fencing").rename(root / "test" / "archery")
    assert video_folder.splits_and_classes(str(root)) == (["test", "train"], ["archery"])
    (root / "train").rename(root / "val")  # no 'train' split: the classes of the first split in sorted order
    assert video_folder.splits_and_classes(str(root)) == (["test", "val"], ["archery"])
    _write_video(root / "val" / "badminton" / "v0", _frames(0, 0)[:1])
    assert "val/badminton is not a class of the 'test' split (archery)" in _prepare_error(tmp_path, root)
    (root / "val" / "badminton" / "v0" / "000001.png").unlink()
    (root / "val" / "badminton" / "v0").rmdir()
    (root / "val" / "badminton").rmdir()
    (root / "train-2").mkdir()
    assert "split folder names must be letters" in _prepare_error(tmp_path, root)


def test_video_errors(tmp_path):
    root = tmp_path / "frames"
    (root / "train" / "archery" / "v0").mkdir(parents=True)
    (root / "train" / "archery" / "v0" / "notes.txt").write_text("no frames here")
    assert f"the video folder {root / 'train' / 'archery' / 'v0'} has no frames" in _prepare_error(tmp_path, root)
    video = root / "train" / "archery" / "v1"
    _write_video(video, _frames(0, 1)[:2])
    assert [p.rsplit("/", 1)[1] for p in video_folder.video_frames(str(video))] == ["000001.png", "000002.png"]
    (video / "000003.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(ValueError, match=r"the frame .*v1/000003.jpg cannot be read as an image"):
        video_folder.video_frames(str(video))
    (video / "000003.jpg").write_bytes(tf.io.encode_jpeg(np.zeros((6, 16, 3), np.uint8)).numpy())
    with pytest.raises(ValueError, match=r"000003.jpg is 16x6 but .*000001.png is 16x12"):
        video_folder.video_frames(str(video))
    (root / "train" / "archery" / "stray.png").write_bytes(b"")
    with pytest.raises(ValueError, match=r"stray.png is a file, but .*archery must hold only video folders"):
        list(video_folder.ConvnetsVideoFolder._generate_examples(None, str(root / "train")))


def test_not_prepared_without_download_says_to_prepare_from_the_frames(tmp_path):
    """A folder dataset needs no internet: the error for data.download=False says so, not "download elsewhere"."""
    data = _data(tmp_path, tmp_path / "frames", download=False)
    with pytest.raises(FileNotFoundError, match="nothing is downloaded") as e:
        pipeline.get_builder(data)
    assert str(tmp_path / "frames") in str(e.value) and "internet access" not in str(e.value)
