"""PASCAL VOC through TFDS's own voc builder, from the official tar files placed by hand (tests/fake_voc.py).

The prepared records must hold the objects of the XML (TFDS normalizes VOC's 1-based pixel indices as
``xmin / width``, ``xmax / width``), and the pipeline must turn them into fixed-shape batches whose boxes are
the annotated pixels. Missing, short and wrongly annotated files are errors that say what to do.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from ml_collections import ConfigDict

from convnets.data import builders, pipeline
from experiments import default
from tests import fake_voc

SPLITS = {"train": "train", "validation": "val", "test": "test"}


def _config(data_dir: str, manual_dir: str, name: str = "voc/2007") -> ConfigDict:
    return ConfigDict({"name": name, "data_dir": data_dir, "manual_dir": manual_dir, "download": True})


def test_prepared_voc_has_the_objects_of_the_xml(voc_dir):
    builder = pipeline.get_builder(_config(*voc_dir))
    names = builder.info.features["objects"]["label"].names
    for split, set_name in SPLITS.items():
        expected = {i: v for i, v in fake_voc.IMAGES.items() if v[0] == set_name}
        records = list(tfds.as_numpy(builder.as_dataset(split=split)))
        assert sorted(r["image/filename"].decode() for r in records) == sorted(f"{i}.jpg" for i in expected)
        for r in records:
            _, height, width, objects = expected[r["image/filename"].decode()[:-4]]
            assert r["image"].shape == (height, width, 3)
            got = r["objects"]
            assert [names[k] for k in got["label"]] == [o[0] for o in objects]
            boxes = np.array([[y0 / height, x0 / width, y1 / height, x1 / width] for _, x0, y0, x1, y1, *_ in objects])
            np.testing.assert_allclose(got["bbox"], boxes.reshape(-1, 4), atol=1e-6)
            assert got["is_difficult"].tolist() == [bool(o[5]) for o in objects]
            assert got["is_truncated"].tolist() == [bool(o[6]) for o in objects]


@pytest.mark.slow
def test_voc_batches_have_the_annotated_pixels(voc_dir):
    data_dir, manual_dir = voc_dir
    data = default.get_config().data
    data.update(dict(name="voc/2007", data_dir=data_dir, manual_dir=manual_dir, eval_split="test", prefetch=0))
    data.eval_preprocess = (
        "decode(3)|objects_to_boxes(voc_one_based=True)|resize_short_capped(96, 128)|pad_to(128)|pad_boxes(4)"
    )
    data.batch_keys = ("image", "boxes", "box_classes", "box_difficult", "box_mask", "image_scale", "image_size")
    (batch,) = list(pipeline.eval_batches(data, global_batch_size=3))
    assert batch["image"].shape == (3, 128, 128, 3) and batch["boxes"].shape == (3, 4, 4)
    files = sorted(i for i, v in fake_voc.IMAGES.items() if v[0] == "test")
    # eval_batches reads the split in file order: identify each row by its valid image size.
    by_size = {}
    for image_id in files:
        _, h, w, objects = fake_voc.IMAGES[image_id]
        by_size[(h, w)] = objects
    for image, boxes, mask, scale, size in zip(batch["image"], batch["boxes"], batch["box_mask"],
                                                batch["image_scale"], batch["image_size"], strict=True):
        original = (round(size[0] / scale[0]), round(size[1] / scale[1]))
        objects = by_size[original]
        assert mask.sum() == len(objects)
        # py-faster-rcnn's 0-based x1 = xmin - 1; as pixel edges the box is [xmin - 1, xmax].
        edges = np.array([[y0 - 1, x0 - 1, y1, x1] for _, x0, y0, x1, y1, *_ in objects], np.float32).reshape(-1, 4)
        np.testing.assert_allclose(boxes[: len(objects)], edges * np.tile(scale, 2), atol=1e-3)
        assert not image[size[0]:].any() and not image[:, size[1]:].any()


@pytest.mark.parametrize("present", [(), ("VOCtest_06-Nov-2007.tar",)])
def test_missing_voc_files_say_which_files_go_where(tmp_path, present):
    manual_dir = tmp_path / "manual"
    manual_dir.mkdir()
    for name in present:
        (manual_dir / name).touch()
    with pytest.raises(FileNotFoundError) as info:
        pipeline.get_builder(_config(str(tmp_path / "tfds"), str(manual_dir)))
    message = str(info.value)
    assert f"put VOCtrainval_06-Nov-2007.tar{'' if present else ' and VOCtest_06-Nov-2007.tar'} (of " in message
    assert f"into the directory {manual_dir}." in message
    assert "host.robots.ox.ac.uk/pascal/VOC/voc2007" in message and "--config.data.manual_dir" in message


def test_missing_voc2012_files_and_the_default_manual_dir(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        pipeline.get_builder(_config(str(tmp_path), None, name="voc/2012"))
    message = str(info.value)
    assert "put VOCtrainval_11-May-2012.tar and VOC2012test.tar (of " in message
    assert f"into the directory {tmp_path / 'downloads' / 'manual'}." in message


def test_a_short_voc_file_is_reported_before_preparing(tmp_path):
    manual_dir = str(tmp_path / "manual")
    fake_voc.write_manual_dir(manual_dir)  # Not registered: they are not the official files' sizes.
    with pytest.raises(ValueError, match=r"VOCtrainval_06-Nov-2007.tar has [\d,]+ bytes, but the official "
                                         r"VOCtrainval_06-Nov-2007.tar has 460,032,000"):
        pipeline.get_builder(_config(str(tmp_path / "tfds"), manual_dir))


def test_bad_annotations_name_the_xml_file_and_the_object(tmp_path):
    manual_dir = str(tmp_path / "manual")
    images = dict(fake_voc.IMAGES)
    images["000007"] = ("train", 48, 64, [("car", 10, 5, 30, 20, 0, 0), ("unicorn", 1, 1, 9, 9, 0, 0),
                                          ("car", 30, 5, 20, 20, 0, 0)])
    images["000012"] = ("val", 40, 40, [("tvmonitor", 11, 11, 45, 30, 0, 0)])
    fake_voc.write_manual_dir(manual_dir, images)
    with fake_voc.registered(manual_dir), pytest.raises(ValueError) as info:
        pipeline.get_builder(_config(str(tmp_path / "tfds"), manual_dir))
    message = str(info.value)
    xml = "VOCtrainval_06-Nov-2007.tar:VOCdevkit/VOC2007/Annotations/"
    assert f"{xml}000007.xml: object 1 ('unicorn', xmin=1 ymin=1 xmax=9 ymax=9): class name not one of" in message
    assert f"{xml}000007.xml: object 2 ('car', xmin=30 ymin=5 xmax=20 ymax=20): max < min" in message
    assert f"{xml}000012.xml: object 0 ('tvmonitor', xmin=11 ymin=11 xmax=45 ymax=30): outside the image" in message
    assert "cannot store 3 annotated object(s)" in message


def test_voc_manual_files_come_from_tfds_own_config():
    builder = tfds.builder("voc/2012", data_dir=os.devnull)
    assert builders.voc_manual_files(builder) == ("VOCtrainval_11-May-2012.tar", "VOC2012test.tar")
