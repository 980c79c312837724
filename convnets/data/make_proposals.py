"""`python -m convnets.data.make_proposals`: the selective search proposal cache of a TFDS split, computed once.

  python -m convnets.data.make_proposals --data=voc/2007 --split=train+validation --data_dir=TFDS --out=DIR
  python -m convnets.data.make_proposals --data=voc/2007 --split=test --data_dir=TFDS --out=DIR --workers=16
  python -m convnets.data.make_proposals --data=voc/2007 --split=test --out=DIR \\
      --from_mat=selective_search_data/voc_2007_test.mat

Runs selective search (R-CNN's fast mode, `convnets.data.proposals`) on every image of the split at its original
size (R-CNN and Fast R-CNN cached their proposals per image the same way) and writes `DIR/<dataset>/<split>.npz`
plus the manifest `<split>.json`, keyed by the records' 'image/filename'. `--from_mat` converts the authors'
published proposal files instead (R-CNN's / Fast R-CNN's `selective_search_data/*.mat`; repeat the flag to
concatenate files, e.g. VOC 2007 and 2012 trainval for `convnets_voc0712`); with --data_dir the split's images are
checked against it. The dataset is prepared on first use as `python -m convnets.main` does (VOC from the
official tars in --manual_dir). Experiments read the cache with `--config.data.proposals_dir=DIR`.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import numpy as np
from absl import app, flags, logging

from convnets import cli_errors

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags (defined only when it runs, so that importing the module defines none)."""
    flags.DEFINE_string('data', None, 'TFDS dataset name, e.g. voc/2007, convnets_voc0712, convnets_digit_scenes.')
    flags.DEFINE_string('split', None, 'Split, e.g. train+validation (VOC trainval), test.')
    flags.DEFINE_string('out', None, 'Cache directory (the experiments\' data.proposals_dir).')
    flags.DEFINE_string('data_dir', None, 'TFDS data directory (default: TFDS\'s).')
    flags.DEFINE_string('manual_dir', None, 'VOC tars directory (default: <data_dir>/downloads/manual).')
    flags.DEFINE_integer('max_proposals', 0, 'Keep at most this many proposals per image (0: all; R-CNN kept all).')
    flags.DEFINE_enum('method', 'rcnn_fast', ['rcnn_fast', 'opencv_fast'], 'Selective search configuration.')
    flags.DEFINE_integer('min_side', 20, 'Drop boxes with a side under this many pixels (R-CNN: 20).')
    flags.DEFINE_integer('workers', 1, 'Processes running selective search in parallel.')
    flags.DEFINE_multi_string('from_mat', [], 'Convert published .mat proposal files instead of running selective '
                              'search (repeat to concatenate).')
    flags.DEFINE_bool('verbose_errors', False, 'Show the full traceback of every error (also: CONVNETS_TRACEBACK=1).')
    flags.mark_flags_as_required(['data', 'split', 'out'])


def _builder(dataset: str, data_dir: str | None, manual_dir: str | None):
    from ml_collections import ConfigDict

    from convnets.data import builders

    return builders.get_builder(ConfigDict({'name': dataset, 'data_dir': data_dir, 'manual_dir': manual_dir,
                                            'download': True}))


def _images(builder, split: str):
    """(file name, RGB uint8 image) of every record of the split, in file order."""
    import tensorflow_datasets as tfds

    features = builder.info.features
    if 'image/filename' not in features:
        raise ValueError(f'dataset {builder.name!r} has no image/filename feature, which the proposal cache is '
                         f'keyed by (it has {", ".join(features)})')
    ds = builder.as_dataset(split=split, shuffle_files=False, read_config=tfds.ReadConfig(try_autocache=False))
    for record in ds.as_numpy_iterator():
        yield record['image/filename'].decode(), record['image']


def _search(args: tuple[str, np.ndarray, str, int]) -> tuple[str, np.ndarray, float]:
    from convnets.data import proposals

    name, image, method, min_side = args
    start = time.perf_counter()
    boxes = proposals.selective_search(image, method=method, seed=0, min_side=min_side)
    return name, boxes, time.perf_counter() - start


def run_selective_search(dataset: str, split: str, out: str, *, data_dir: str | None = None,
                         manual_dir: str | None = None, max_proposals: int = 0, method: str = 'rcnn_fast',
                         min_side: int = 20, workers: int = 1) -> dict:
    """Writes the selective search cache of `dataset` / `split` into `out`; returns the manifest."""
    from convnets.data import proposals

    proposals._cv2()  # a missing OpenCV is reported before the dataset is read
    builder = _builder(dataset, data_dir, manual_dir)
    names, boxes, seconds = [], [], 0.0
    start = time.perf_counter()
    jobs = ((name, image, method, min_side) for name, image in _images(builder, split))
    pool = multiprocessing.get_context('spawn').Pool(workers) if workers > 1 else None
    try:
        results = pool.imap(_search, jobs, chunksize=4) if pool else map(_search, jobs)
        for name, b, t in results:
            names.append(name)
            boxes.append(b)
            seconds += t
            if len(names) % 100 == 0:
                logging.info('%d images, %.1f proposals/image, %.2f s/image', len(names),
                             np.mean([len(x) for x in boxes]), seconds / len(names))
    finally:
        if pool:
            pool.close()
    if not names:
        raise ValueError(f'split {split!r} of {dataset} has no images')
    wall = time.perf_counter() - start
    path = proposals.write(out, dataset, split, names, boxes, method, max_proposals,
                           min_side=min_side, seconds_per_image=round(seconds / len(names), 4),
                           wall_seconds=round(wall, 1), workers=workers)
    logging.info('Wrote %s', path)
    return proposals.read(out, dataset, split).manifest


def convert_mat(dataset: str, split: str, out: str, files: list[str], *, data_dir: str | None = None,
                manual_dir: str | None = None, max_proposals: int = 0) -> dict:
    """Writes the cache of `dataset` / `split` from published .mat files; with `data_dir`, every image of the
    split must be among them (ValueError naming the first missing ones)."""
    from convnets.data import proposals

    names, boxes = [], []
    for file in files:
        n, b = proposals.read_mat(file)
        names += n
        boxes += b
    if data_dir:
        import tensorflow_datasets as tfds

        builder = _builder(dataset, data_dir, manual_dir)
        ds = builder.as_dataset(split=split, shuffle_files=False, decoders={'image': tfds.decode.SkipDecoding()})
        wanted = [r['image/filename'].decode() for r in ds.as_numpy_iterator()]
        missing = sorted(set(wanted) - set(names))
        if missing:
            raise ValueError(f'{", ".join(files)} lack{"s" if len(files) == 1 else ""} {len(missing)} of the '
                             f'{len(wanted)} images of {dataset} {split} (e.g. {", ".join(missing[:3])}): is it the '
                             'proposal file of this split?')
    path = proposals.write(out, dataset, split, names, boxes, 'mat', max_proposals,
                           sources=[os.path.abspath(f) for f in files])
    logging.info('Wrote %s', path)
    return proposals.read(out, dataset, split).manifest


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f'Unexpected arguments: {argv[1:]}')

    def body() -> None:
        common = dict(data_dir=FLAGS.data_dir, manual_dir=FLAGS.manual_dir, max_proposals=FLAGS.max_proposals)
        if FLAGS.from_mat:
            manifest = convert_mat(FLAGS.data, FLAGS.split, FLAGS.out, FLAGS.from_mat, **common)
        else:
            manifest = run_selective_search(FLAGS.data, FLAGS.split, FLAGS.out, method=FLAGS.method,
                                            min_side=FLAGS.min_side, workers=FLAGS.workers, **common)
        print(json.dumps(manifest), flush=True)

    cli_errors.run_reporting_errors(body)


if __name__ == '__main__':
    define_flags()
    app.run(main, flags_parser=cli_errors.parse_flags)
