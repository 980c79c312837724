"""`--mode=detect`: the latest checkpoint of a detection run on a user's own JPEG / PNG files.

    python -m convnets.main --config=experiments/fast_rcnn_quickstart.py --workdir=/tmp/fast_rcnn_quickstart \\
        --mode=detect --images='photos/*.jpg' [--detect_out=DIR]

Each image goes through the config's `data.eval_preprocess`, the very op spec the evaluation runs on the test
records (decode, resize_short_capped, pad_to, ...), fed a record of the dataset's layout with no objects; then the
detection evaluator's own prediction function (`convnets.evaluate.detection.predict_detections`: per-class NMS,
score threshold and at most max_detections per image, Fast R-CNN sec. 3 / py-faster-rcnn test_net), with the
score_threshold, nms_iou and max_detections of the config's detection evaluator entry (flags override the first
and last). Boxes are mapped back to the ORIGINAL pixels through the scale the preprocessing applied
(`image_scale` of resize_short_capped; otherwise the ratio of the preprocessed to the original size).

Proposals: 'grid' and Faster R-CNN ('rpn') configs need nothing more. 'batch' configs read cached selective search
boxes in their spec (`load_proposals`), and a user's image is in no cache: selective search in R-CNN's fast mode
(`convnets.data.proposals.selective_search`, as `python -m convnets.data.make_proposals` makes caches) runs on the
image and its boxes take the place of `load_proposals` (the first `max_proposals` of them, as the op keeps), so
the ops after it move them with the image exactly as in the evaluation.

A spec without a resize that pads to a fixed canvas (the quickstart's pad_to(128)) cannot take an image larger
than the canvas: such an image is first shrunk to fit it (aspect kept; recorded as `fitted` and in the scale), with
a warning, since the model only ever saw that canvas.

Writes to `--detect_out` (default `<workdir>/detect/`): `detections.json` (per image: the file, its original
width and height, the scale, and the detections {class, class_id, score, box [x1, y1, x2, y2]} sorted by score,
boxes as pixel EDGES of the original image: (0, 0) is the top-left corner of the top-left pixel, so the devkit's
1-based inclusive x1 is ours + 1) and one picture per image, at its original size, with the detections scoring at
least `draw_threshold` drawn as labelled boxes, one colour per class (convnets.visualize.detections).
"""

from __future__ import annotations

import ast
import functools
import glob
import inspect
import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from absl import logging
from ml_collections import ConfigDict

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png')
_CANVAS_ERROR = 'pad_to: the image is larger than the canvas'


def find_images(patterns: str | Sequence[str]) -> list[str]:
    """The files of ``patterns`` (each a directory: its *.jpg / *.jpeg / *.png files; a file; or a glob pattern,
    ``**`` for subdirectories), in sorted order without duplicates. FileNotFoundError when nothing matches."""
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    found: list[str] = []
    for pattern in patterns:
        pattern = os.path.expanduser(pattern)
        if os.path.isdir(pattern):
            files = [os.path.join(pattern, f) for f in os.listdir(pattern)
                     if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(pattern, f))]
        else:
            files = [f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f)]
        found += sorted(files)
    unique = list(dict.fromkeys(found))
    if not unique:
        shown = ', '.join(repr(p) for p in patterns) or "''"
        raise FileNotFoundError(
            f'--images={shown} matches no image file. Give a directory (its *.jpg, *.jpeg and *.png files are '
            f'read), a file, or a glob pattern in quotes such as --images="photos/*.jpg".')
    return unique


def read_image(path: str, channels: int = 3) -> np.ndarray:
    """The decoded uint8 [H, W, channels] pixels of a JPEG / PNG (/ GIF / BMP) file; ValueError naming the file
    if it cannot be read or decoded."""
    import tensorflow as tf

    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f'{path}: cannot be read ({e.strerror or e}).') from None
    try:
        image = tf.io.decode_image(data, channels=channels, dtype=tf.uint8, expand_animations=False)
    except (tf.errors.InvalidArgumentError, ValueError) as e:
        detail = str(getattr(e, 'message', e)).split(' [Op:')[0].strip()
        raise ValueError(f'{path}: not a readable JPEG or PNG image ({len(data)} bytes; {detail}). Remove it or '
                         f'narrow --images.') from None
    return image.numpy()


DETECTOR_TASKS = ('detection', 'faster_rcnn')


def split_at_proposals(spec: str) -> tuple[str, int | None, str]:
    """(the ops before `load_proposals`, its max_proposals, the ops after) of an op spec; (spec, None, '') when
    it has no load_proposals. The eval ops draw nothing at random, so running the two parts as two chains (other
    per-op seeds) changes nothing."""
    from convnets.data.ops import proposals as proposal_ops

    source = spec.strip()
    if 'load_proposals' not in source:
        return spec, None, ''
    nodes, todo = [], [ast.parse(source, mode='eval').body]
    while todo:  # the left-nested `a | b | c` tree, flattened in order
        node = todo.pop()
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            todo += [node.right, node.left]
        else:
            nodes.append(node)
    for i, node in enumerate(nodes):
        if isinstance(node, ast.Call) and getattr(node.func, 'id', '') == 'load_proposals':
            bound = inspect.signature(proposal_ops.load_proposals).bind(
                *(ast.literal_eval(a) for a in node.args), **{k.arg: ast.literal_eval(k.value) for k in node.keywords})
            bound.apply_defaults()
            text = lambda part: '|'.join(ast.get_source_segment(source, n) for n in part)  # noqa: E731
            return text(nodes[:i]), int(bound.arguments['max_proposals']), text(nodes[i + 1:])
    return spec, None, ''


def selective_search_proposals(image: np.ndarray, max_proposals: int) -> tuple[np.ndarray, np.ndarray]:
    """What `load_proposals` adds, for an image in no cache: the first ``max_proposals`` selective search boxes
    (R-CNN fast mode) [max_proposals, 4] float32 edge boxes of ``image``, zero-padded, and their mask."""
    from convnets.data import proposals as proposal_cache

    boxes = proposal_cache.selective_search(np.asarray(image, np.uint8))[:max_proposals].astype(np.float32)
    padded = np.zeros((max_proposals, 4), np.float32)
    padded[:len(boxes)] = boxes
    return padded, np.arange(max_proposals) < len(boxes)


def preprocess(spec: str, image: np.ndarray, canvas: tuple[int, int] | Callable[[], tuple[int, int]], *,
               index: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, bool]:
    """Runs the eval op ``spec`` on one decoded image, as the pipeline runs it on a record without objects
    (selective search in place of `load_proposals`, see `split_at_proposals`).

    Returns (the spec's features as numpy, the per-axis scale (sy, sx) from the ORIGINAL image to the
    preprocessed one, whether the image had to be shrunk first to fit the ``canvas`` (h, w) of a pad_to; a
    callable is asked only then).
    """
    import tensorflow as tf

    from convnets.data import ops
    from convnets.data.pipeline import EVAL_SEED

    before, max_proposals, after = split_at_proposals(spec)
    first, then = ops.parse(before), ops.parse(after)
    seed = tf.constant([EVAL_SEED, index], tf.int64)
    original = np.asarray(image.shape[:2], np.float64)

    def run(pixels: tf.Tensor) -> dict[str, Any]:
        # A record of the detection datasets' layout with no objects: objects_to_boxes / pad_boxes then run as on
        # an image without annotations (box_mask all False), and nothing else differs from the evaluation.
        objects = {'bbox': tf.zeros([0, 4], tf.float32), 'label': tf.zeros([0], tf.int64),
                   'is_difficult': tf.zeros([0], tf.bool)}
        out = first({'image': pixels, 'objects': objects}, seed)
        if max_proposals is not None:
            boxes, mask = selective_search_proposals(tf.cast(out['image'], tf.uint8).numpy(), max_proposals)
            out = {**out, 'proposals': tf.constant(boxes), 'proposal_mask': tf.constant(mask)}
        out = then(out, seed)
        return {k: v.numpy() for k, v in out.items() if isinstance(v, tf.Tensor)}

    fed = tf.constant(image)
    fitted = False
    try:
        out = run(fed)
    except tf.errors.InvalidArgumentError as e:
        if _CANVAS_ERROR not in str(e):
            raise
        canvas = canvas() if callable(canvas) else canvas
        f = min(canvas[0] / original[0], canvas[1] / original[1])
        size = [max(1, min(canvas[0], int(original[0] * f))), max(1, min(canvas[1], int(original[1] * f)))]
        fed = tf.cast(tf.round(tf.image.resize(fed, size, antialias=True)), tf.uint8)
        fitted = True
        out = run(fed)
    fed_size = np.asarray(fed.shape[:2], np.float64)
    if 'image_scale' in out:  # resize_short_capped: the exact ratio it scaled the image (and boxes) by
        spec_scale = np.asarray(out['image_scale'], np.float64)
    else:
        real = out['image_size'] if 'image_size' in out else out['image'].shape[:2]
        spec_scale = np.asarray(real, np.float64) / fed_size
    return out, spec_scale * fed_size / original, fitted


def detection_entry(config: ConfigDict, score_threshold: float | None = None, max_detections: int | None = None
                    ) -> tuple[str, ConfigDict]:
    """(name, copy) of the config's first detection evaluator entry, with the given overrides."""
    for name, ev in config.evals.items():
        if ev.get('type') == 'detection':
            ev = ConfigDict(ev.to_dict())
            if score_threshold is not None:
                ev.score_threshold = float(score_threshold)
            if max_detections is not None:
                if max_detections < 1:
                    raise ValueError(f'--detect_max_detections={max_detections}: give at least 1.')
                ev.max_detections = int(max_detections)
            return name, ev
    raise ValueError("--mode=detect reads score_threshold, nms_iou and max_detections from the config's detection "
                     "evaluator, and config.evals has none: add one (experiments.detection.detection_eval()).")


def to_original(out: dict[str, np.ndarray], scale: np.ndarray, height: int, width: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The detections of image 0 of `predict_detections`'s ``out`` as (edge boxes (ymin, xmin, ymax, xmax) [D, 4]
    in the ORIGINAL image's pixels, clipped to it; scores [D]; 0-based classes [D]), best score first. ``scale``:
    (sy, sx) from the original to the model input (`preprocess`)."""
    n = int(out['det_count'][0])
    boxes = np.asarray(out['det_boxes'][0][:n], np.float64) / np.array([scale[0], scale[1]] * 2)
    boxes = np.clip(boxes, 0.0, [height, width, height, width])
    scores = np.asarray(out['det_scores'][0][:n], np.float64)
    classes = np.asarray(out['det_classes'][0][:n], np.int64)
    order = np.argsort(-scores, kind='stable')
    return boxes[order], scores[order], classes[order]


def _check_config(config: ConfigDict) -> None:
    if config.task not in DETECTOR_TASKS:
        raise ValueError(f"--mode=detect runs a detector, but this config's task is {config.task!r}: use a "
                         f"detection config (task in {DETECTOR_TASKS}, e.g. experiments/fast_rcnn_quickstart.py).")
    if config.detection.proposals == 'rpn':
        return  # Faster R-CNN: the network proposes
    if config.detection.proposals != 'grid' and split_at_proposals(config.data.eval_preprocess)[1] is None:
        raise ValueError(f"--mode=detect makes the proposals of an image itself (grid windows, or selective search "
                         f"where data.eval_preprocess has load_proposals), but detection.proposals="
                         f"{config.detection.proposals!r} and the eval spec {config.data.eval_preprocess!r} reads "
                         f"them from another feature of the dataset's records.")


def _picture_names(paths: Sequence[str]) -> list[str]:
    """'<stem>.png' per input, '<stem>_2.png' ... where stems repeat (a.jpg and a.png, or two folders)."""
    names, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f'{stem}.png' if seen[stem] == 1 else f'{stem}_{seen[stem]}.png')
    return names


def detect_images(config: ConfigDict, workdir: str, images: str | Sequence[str], *, out_dir: str | None = None,
                  score_threshold: float | None = None, max_detections: int | None = None,
                  draw_threshold: float | None = None) -> dict[str, Any]:
    """Detects objects in ``images`` (see `find_images`) with the latest checkpoint in ``workdir``; writes
    `detections.json` and the pictures to ``out_dir`` (default ``<workdir>/detect``). Returns the JSON's dict."""
    _check_config(config)
    ev_name, ev = detection_entry(config, score_threshold, max_detections)
    paths = find_images(images)
    for path in paths:  # every file checked before the (slow) restore and compile
        read_image(path, channels=0)
    out_dir = out_dir or os.path.join(workdir, 'detect')
    picture_names = _picture_names(paths)
    inputs = {os.path.realpath(p) for p in paths}
    if clash := [n for n in picture_names if os.path.realpath(os.path.join(out_dir, n)) in inputs]:
        raise ValueError(f'--detect_out={out_dir} would overwrite input images with their pictures ({clash[0]}): '
                         f'write the pictures to another directory.')

    import jax

    from convnets.data import pipeline
    from convnets.evaluate.detection import class_names, predict_detections
    from convnets.train import loop
    from convnets.visualize import detections as pictures
    from convnets.visualize import images as im

    nets, state = loop.restore_for_inference(config, workdir, devices=jax.local_devices()[:1])
    model, variables = nets['model'], state.nets['model'].eval_variables
    if ranks := tuple(int(r) for r in ev.get('truncated_svd', ()) or ()):  # the evaluator's test-time SVD option
        from convnets.models.detection import svd
        model = model.clone(svd_ranks=ranks)
        variables = {**variables, 'params': svd.compress_params(jax.device_get(variables['params']), ranks)}
    step = int(jax.device_get(state.step))
    names = class_names(config.data)
    builder_channels = pipeline.get_builder(config.data).info.features['image'].shape[-1] or 3

    @functools.cache
    def canvas() -> tuple[int, int]:  # traced only if an image needs it (a spec with load_proposals needs a cache)
        return pipeline.element_spec(config.data, train=False)['image'][0][:2]

    keys = [k for k in ('image', 'image_size', 'proposals', 'proposal_mask') if k in config.data.batch_keys]
    predict = jax.jit(lambda variables, batch: predict_detections(config, model, variables, batch, ev))
    os.makedirs(out_dir, exist_ok=True)
    draw_threshold = pictures.DEFAULT_MIN_SCORE if draw_threshold is None else float(draw_threshold)

    records = []
    for index, (path, picture) in enumerate(zip(paths, picture_names, strict=True)):
        pixels = read_image(path, channels=builder_channels)
        features, scale, fitted = preprocess(config.data.eval_preprocess, pixels, canvas, index=index)
        if fitted:
            logging.warning('detect: %s (%dx%d) is larger than the %dx%d canvas of data.eval_preprocess, which does '
                            'not resize: shrunk by %.3f to fit it.', path, pixels.shape[1], pixels.shape[0],
                            *canvas()[::-1], float(scale.min()))
        types = {'image_size': np.int32, 'proposal_mask': bool}
        batch = {k: np.asarray(features[k], types.get(k, np.float32))[None] for k in keys}
        out = jax.device_get(predict(variables, batch))
        h, w = pixels.shape[:2]
        boxes, scores, classes = to_original(out, scale, h, w)
        detections = [{'class': names[c], 'class_id': int(c), 'score': round(float(s), 5),
                       'box': [round(float(b[1]), 2), round(float(b[0]), 2), round(float(b[3]), 2),
                               round(float(b[2]), 2)]}
                      for b, s, c in zip(boxes, scores, classes, strict=True)]
        shown = scores >= draw_threshold
        im.save_png(os.path.join(out_dir, picture), pictures.draw_boxes(
            pixels, boxes[shown], classes[shown], names, scores[shown]))
        records.append({'file': os.path.abspath(path), 'width': int(w), 'height': int(h), 'picture': picture,
                        'scale': [float(scale[0]), float(scale[1])], 'fitted': fitted, 'detections': detections})
        logging.info('detect: %s: %d detections (%d drawn)', path, len(scores), int(shown.sum()))

    result = {'step': step, 'workdir': os.path.abspath(workdir), 'evaluator': ev_name,
              'score_threshold': float(ev.score_threshold), 'nms_iou': float(ev.nms_iou),
              'max_detections': int(ev.max_detections), 'draw_threshold': draw_threshold,
              'box_format': 'x1 y1 x2 y2, pixel edges of the original image ((0, 0) = top-left corner)',
              'images': records}
    path = os.path.join(out_dir, 'detections.json')
    with open(path + '.tmp', 'w') as f:
        json.dump(result, f, indent=2)
    os.replace(path + '.tmp', path)
    result['json'] = path
    return result
