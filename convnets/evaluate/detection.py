"""The 'detection' evaluator: PASCAL VOC mean average precision of a region-based detector.

Test (Fast R-CNN sec. 3; py-faster-rcnn lib/fast_rcnn/test.py): every proposal of an image is scored in one pass,
class-specific offsets decode its box for every class, boxes are clipped to the image, then per class the boxes
scoring above `score_threshold` go through NMS at `nms_iou` (0.3) and the `max_detections` (100) best of the
image are kept — all with static shapes on the devices. The detections and the ground truth (difficult flags kept)
go to `convnets.evaluate.voc_map.VocEvaluator` on the host: per-class AP (VOC 2007's 11-point method, or the
2010+ area method), mAP, and the devkit result files (`comp4_det_test_<class>.txt`) under
`<workdir>/detections/<evaluator>/` so that any external evaluator can score them. Both use the dataset's own
image ids (the stem of 'image/filename': VOC's '000001') and pixels: boxes are mapped back through the batch key
'image_scale' (resize_short_capped's ratio) when the config has it (`VocImages`). The first images of each
evaluation, with their detections and ground truth drawn, go to TensorBoard as `detections/<evaluator>`
(`convnets.visualize.detections.DetectionPictures`).

Config entry fields (see `experiments.detection.detection_eval`): `method` ('11point' | 'area'), `nms_iou`,
`score_threshold`, `max_detections`, `write_devkit`, `proposals` ('' = `config.detection.proposals`; 'rpn' tests a
Faster R-CNN with its own RPN's proposals, `convnets.tasks.faster_rcnn.detect_outputs`, e.g. after a 4-step
stage that trained the head on cached ones), and two test-time options of Fast R-CNN:
- `truncated_svd` (t6, t7): fc6 / fc7 replaced by their rank-t truncated SVDs before testing (sec. 3.1; the paper's
  VGG16 uses (1024, 256)); computed on the host from the evaluated parameters at each evaluation, as the authors'
  tools/compress_net.py (`convnets.models.detection.svd`). Empty: the trained layers.
- `scales` (e.g. (480, 576, 688, 864, 1200)), `max_size` (2000), `data_scale` (600): multi-scale testing on an
  image pyramid, each RoI pooled from the level where it is closest to 224x224 pixels (sec. 2.4 / 5.2;
  `convnets.models.detection.pyramid`); `data_scale` is the shorter side the data pipeline resized images to.
  Empty `scales`: the single scale of the data.
Results: `mAP`, `AP/<class>`, `num_images`, `detections`.
"""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline
from convnets.evaluate.voc_map import VocEvaluator
from convnets.models.detection import boxes as box_ops
from convnets.models.detection import svd
from convnets.models.detection.nms import detect
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.precision import Policy
from convnets.train.state import TrainState
from convnets.visualize.detections import DetectionPictures

GT_KEYS = ('boxes', 'box_classes', 'box_difficult', 'box_mask')
# resize_short_capped's (sy, sx) (the model's pixels per original pixel) and the resized image's (h, w).
SCALE_KEY = ('image_scale', 'image_size')


def image_ids(data: ConfigDict) -> list[str] | None:
    """The id of each image of ``data.eval_split`` in the order the eval batches hold them (file order): the stem of
    'image/filename' (VOC: '000001'), as the devkit result files name images; None if the records have no name."""
    from convnets.data import records

    builder = pipeline.get_builder(data)
    if 'image/filename' not in builder.info.features:
        return None
    raw, _ = records.read(builder, data.eval_split, cache=False)
    names = raw.map(lambda x: x['image/filename'], deterministic=True).as_numpy_iterator()
    return [os.path.splitext(os.path.basename(name.decode()))[0] for name in names]


def original_pixels(im: dict[str, np.ndarray], boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray,
                    size: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """(gt boxes, gt classes, gt difficult, boxes, classes, scores) of one image for `VocEvaluator.add`, boxes in the
    ORIGINAL image's pixels: `im` holds its GT_KEYS and maybe 'image_scale' (resize_short_capped's ratio), which is
    undone; the detections are then clipped to the original image (`size`: the (h, w) the model saw; float32
    rounding must not put a devkit box past the image's border)."""
    gt = im['box_mask'].astype(bool)
    gt_boxes, boxes = im['boxes'][gt].astype(np.float64), np.asarray(boxes, np.float64)
    if 'image_scale' in im:
        scale = np.tile(np.asarray(im['image_scale'], np.float64), 2)
        gt_boxes, boxes = gt_boxes / scale, boxes / scale
        if size is not None:
            h, w = np.round(np.asarray(size, np.float64) / scale[:2])
            boxes = np.clip(boxes, 0, [h, w, h, w])
    return gt_boxes, im['box_classes'][gt], im['box_difficult'][gt].astype(bool), boxes, classes, scores


class VocImages:
    """Feeds a `VocEvaluator` image by image in the dataset's own ids and ORIGINAL pixels (`original_pixels`), so
    that its mAP and the devkit result files it writes are those of the dataset's annotations (VOC: the ids of
    ImageSets/Main/test.txt, boxes before `resize_short_capped`)."""

    def __init__(self, voc: VocEvaluator, ids: list[str] | None):
        self.voc, self.ids, self.count = voc, ids, 0

    def add(self, im: dict[str, np.ndarray], boxes: np.ndarray, classes: np.ndarray, scores: np.ndarray) -> None:
        """One image: `im` holds its GT_KEYS (and maybe 'image_scale', 'image_size'); detections in model pixels."""
        image_id = self.ids[self.count] if self.ids is not None else f'{self.count:06d}'
        self.voc.add(image_id, *original_pixels(im, boxes, classes, scores, im.get('image_size')))
        self.count += 1


def class_names(data: ConfigDict) -> list[str]:
    """The object class names of the dataset (its `objects/label` ClassLabel)."""
    info = pipeline.get_builder(data).info
    return list(info.features['objects']['label'].names)


def proposal_source(config: ConfigDict, ev: ConfigDict) -> str:
    """Where the tested boxes come from: the entry's `proposals` if set, else `config.detection.proposals`."""
    return ev.get('proposals') or config.detection.proposals


def predict_detections(config: ConfigDict, model, variables, batch: dict[str, jax.Array], ev: ConfigDict
                       ) -> dict[str, jax.Array]:
    """Per image of a device's slice: up to `max_detections` boxes [B, D, 4], scores, 0-based classes (-1 pad)."""
    from convnets.tasks import faster_rcnn  # the task modules import this one
    from convnets.tasks.detection import image_sizes, proposals

    size = image_sizes(batch)
    scales = tuple(int(s) for s in ev.get('scales', ()) or ())
    if proposal_source(config, ev) == 'rpn':  # Faster R-CNN: the RPN's proposals, one conv pass for both parts
        if scales:
            raise ValueError('multi-scale testing (evals.*.scales) is a Fast R-CNN option; Faster R-CNN tests at '
                             'the single scale of the data (Ren et al. sec. 4).')
        props, prop_mask, logits, deltas = faster_rcnn.detect_outputs(config, model, variables, batch)
    elif scales:
        props, prop_mask = proposals(config, batch)
        logits, deltas = Policy.from_config(config).apply(model, variables, batch['image'], size, props, scales,
                                                          int(ev.max_size), int(ev.data_scale), method='multiscale')
    else:
        props, prop_mask = proposals(config, batch)
        logits, deltas = Policy.from_config(config).apply(model, variables, batch['image'], props, train=False)
    scores = jax.nn.softmax(logits.astype(jnp.float32), axis=-1)
    boxes = box_ops.decode(deltas.astype(jnp.float32), props[:, :, None, :], tuple(config.detection.box_weights))
    boxes = box_ops.clip(boxes, size[:, None, 0:1], size[:, None, 1:2])  # components [B, R, K]
    # Background (class 0) has no offsets: give it the proposal itself so that [R, K+1, 4] lines up with scores.
    boxes = jnp.concatenate([props[:, :, None, :], boxes], axis=2)

    def one(boxes, scores, valid):
        d = detect(boxes, scores, iou_threshold=ev.nms_iou, max_detections=ev.max_detections,
                   score_threshold=ev.score_threshold, valid=valid)
        return {'det_boxes': d.boxes, 'det_scores': d.scores, 'det_classes': d.classes - 1, 'det_count': d.count}

    return jax.vmap(one)(boxes, scores, prop_mask)


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the VOC mAP evaluator of config entry `ev`."""
    config = ctx.config
    missing = [k for k in ('image', *GT_KEYS) if k not in config.data.batch_keys]
    if missing:
        raise ValueError(f'the detection evaluator needs data.batch_keys {missing} (objects_to_boxes, pad_boxes).')
    net_name = ev.net
    model = ctx.nets[net_name]
    ranks = tuple(int(r) for r in ev.get('truncated_svd', ()) or ())
    if ranks:
        if len(ranks) != 2 or min(ranks) < 0 or getattr(model, 'svd_ranks', ()) is not None:
            raise ValueError(f'evals.{ctx.name}.truncated_svd must be two ranks (fc6, fc7; 0 = keep the layer) of an '
                             f'uncompressed Fast R-CNN, got {ranks} for {type(model).__name__}')
        model = model.clone(svd_ranks=ranks)
    batch_size = config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'eval_batch_size')
    data = ConfigDict(config.data.to_dict())
    data.eval_split = ev.split or config.data.eval_split
    names = class_names(data)
    ids = image_ids(data)

    def predict_step(variables: dict[str, Any], batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        out = predict_detections(config, model, variables, batch, ev)
        return out | {k: batch[k] for k in (*GT_KEYS, 'mask', *SCALE_KEY) if k in batch}

    def test_variables(state: TrainState) -> dict[str, Any]:
        variables = state.nets[net_name].eval_variables
        if not ranks:
            return variables
        t = time.perf_counter()
        params = svd.compress_params(jax.device_get(variables['params']), ranks)
        logging.info('evals.%s: truncated SVD of fc6 / fc7 to ranks %s in %.1f s', ctx.name, ranks,
                     time.perf_counter() - t)
        return jax.device_put({**variables, 'params': params}, parallel.replicated(ctx.mesh))

    predict = parallel.compile_per_example(predict_step, ctx.mesh)
    shard = parallel.Parallel(ctx.mesh, 'shard_map').shard_batch

    gather = parallel.gather_to_host

    def evaluate(state: TrainState) -> dict[str, float]:
        voc = VocEvaluator(names, method=ev.method)
        images = VocImages(voc, ids)
        pictures = DetectionPictures(ctx.workdir, ctx.name, names) if ctx.workdir and jax.process_index() == 0 \
            else None
        variables = test_variables(state)
        detections = 0
        for local in pipeline.eval_batches(data, global_batch_size=batch_size, process_index=jax.process_index(),
                                           process_count=jax.process_count()):
            out = {k: gather(v) for k, v in predict(variables, shard(local)).items()}
            if pictures is not None and pictures.wants_more:
                pictures.add_batch(local, out)
            for i in range(out['mask'].shape[0]):
                if not out['mask'][i]:
                    continue  # padding of the last batch
                n = int(out['det_count'][i])
                images.add({k: v[i] for k, v in out.items()}, out['det_boxes'][i][:n], out['det_classes'][i][:n],
                           out['det_scores'][i][:n])
                detections += n
        if pictures is not None:
            pictures.write(int(state.step))
        result = voc.result()
        if ev.write_devkit and ctx.workdir and jax.process_index() == 0:
            directory = os.path.join(ctx.workdir, 'detections', ctx.name)
            voc.write_devkit(directory, 'comp4', 'test')
            logging.info('evals.%s: VOC devkit result files in %s', ctx.name, directory)
        return {**result.metrics(), 'num_images': images.count, 'detections': detections}

    return evaluate
