"""A tiny PASCAL VOC 2007 (and 2012 trainval) in the official tar layout, prepared through TFDS's own ``voc`` builder.

VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar hold ``VOCdevkit/VOC2007/JPEGImages/<id>.jpg``,
``Annotations/<id>.xml`` (VOC's XML: size, and per object name, pose, truncated, difficult and a 1-based
inclusive bndbox) and ``ImageSets/Main/{train,val,trainval,test}.txt``. ``IMAGES`` lists what they hold, so the
tests can compare the prepared records with it.

TFDS checks a manual file's size and SHA-256 against its registry (``url_checksums/voc.txt``); the fakes are not
the official files, so ``registered(manual_dir)`` registers THEIR checksums under the official URLs (in TFDS's
global registry and the voc builder's own) while the dataset is prepared (everything else, the download
manager's manual-file lookup included, is TFDS's own code).
"""

from __future__ import annotations

import contextlib
import io
import os
import tarfile

import numpy as np
from PIL import Image

TRAINVAL, TEST = "VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar"
TRAINVAL_2012 = "VOCtrainval_11-May-2012.tar"
# id -> (set, height, width, objects: (name, xmin, ymin, xmax, ymax, difficult, truncated), VOC's 1-based pixels).
IMAGES = {
    "000005": ("train", 60, 80, [("dog", 1, 1, 40, 30, 0, 0), ("chair", 50, 10, 80, 60, 1, 1)]),
    "000007": ("train", 48, 64, [("car", 10, 5, 30, 20, 0, 0)]),
    "000009": ("val", 72, 50, [("person", 5, 6, 45, 70, 0, 1), ("person", 20, 30, 30, 50, 1, 0),
                               ("horse", 1, 40, 50, 72, 0, 0)]),
    "000012": ("val", 40, 40, [("tvmonitor", 11, 11, 30, 30, 0, 0)]),
    "000001": ("test", 50, 70, [("cat", 3, 4, 60, 45, 0, 0), ("bottle", 62, 20, 70, 49, 1, 0)]),
    "000004": ("test", 64, 48, [("aeroplane", 2, 2, 47, 30, 0, 0)]),
    "000006": ("test", 30, 40, []),  # No objects (VOC always has some; other data may not).
}


# VOC 2012 trainval (for the 07+12 union, convnets_voc0712): ids as VOC 2012 names them.
IMAGES_2012 = {
    "2008_000008": ("train", 44, 66, [("horse", 5, 4, 50, 40, 0, 0), ("person", 30, 2, 60, 30, 0, 1)]),
    "2008_000015": ("val", 52, 40, [("bottle", 8, 10, 30, 50, 0, 0)]),
}


def _jpeg(height: int, width: int, objects: list, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = np.full((height, width, 3), 40, np.uint8)
    for _, x0, y0, x1, y1, *_ in objects:
        pixels[y0 - 1 : y1, x0 - 1 : x1] = rng.integers(80, 256, size=3)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def annotation_xml(image_id: str, height: int, width: int, objects: list) -> str:
    """VOC's annotation XML (the elements TFDS's voc builder and the VOC devkit read)."""
    parts = [f"<annotation><folder>VOC2007</folder><filename>{image_id}.jpg</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size><segmented>0</segmented>"]
    for name, x0, y0, x1, y1, difficult, truncated in objects:
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>{truncated}</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
            f"<ymax>{y1}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def write_manual_dir(manual_dir: str, images: dict | None = None, year: str = "2007") -> None:
    """Writes VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar of ``images`` (default IMAGES), or with
    ``year='2012'`` VOCtrainval_11-May-2012.tar (default IMAGES_2012; no test tar: the 07+12 union needs none)."""
    if year == "2012":
        images = IMAGES_2012 if images is None else images
        tars = ((TRAINVAL_2012, ("train", "val")),)
    else:
        images = IMAGES if images is None else images
        tars = ((TRAINVAL, ("train", "val")), (TEST, ("test",)))
    os.makedirs(manual_dir, exist_ok=True)
    root = f"VOCdevkit/VOC{year}"
    for tar_name, sets in tars:
        ids = {s: [i for i, v in sorted(images.items()) if v[0] == s] for s in sets}
        if tar_name in (TRAINVAL, TRAINVAL_2012):
            ids["trainval"] = sorted(ids["train"] + ids["val"])
        with tarfile.open(os.path.join(manual_dir, tar_name), "w") as tar:
            for set_name, members in ids.items():
                _add(tar, f"{root}/ImageSets/Main/{set_name}.txt", "".join(f"{i}\n" for i in members).encode())
            for image_id in sorted(set().union(*ids.values())):
                _, height, width, objects = images[image_id]
                _add(tar, f"{root}/JPEGImages/{image_id}.jpg", _jpeg(height, width, objects, int(image_id)))
                xml = annotation_xml(image_id, height, width, objects)
                _add(tar, f"{root}/Annotations/{image_id}.xml", xml.encode())


@contextlib.contextmanager
def registered(manual_dir: str):
    """While open, TFDS's checksum registry has the fake tars' sizes and SHA-256 under the official VOC URLs."""
    import pytest
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download import checksums

    official = checksums.get_all_url_infos()
    fakes = {}
    for url, info in official.items():
        path = os.path.join(manual_dir, info.filename or "")
        if info.filename and os.path.isfile(path) and info.filename.startswith("VOC"):
            fakes[url] = checksums.compute_url_info(path)
    voc = tfds.builder_cls("voc")
    with pytest.MonkeyPatch.context() as patch:
        # The download manager merges the global registry with the builder's own (url_checksums/voc.txt).
        patch.setattr(checksums, "get_all_url_infos", lambda: {**official, **fakes})
        patch.setattr(voc, "url_infos", {**(voc.url_infos or {}), **fakes})
        yield
