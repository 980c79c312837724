"""The 'rcnn_svm' evaluator: R-CNN's detector built and scored from a network's region features (Girshick et al.
2014, sec. 2.3-2.4, appendices B-C; rbgirshick/rcnn rcnn_train.m, rcnn_train_bbox_regressor.m, rcnn_test.m).

Given a state, on the devices (`convnets.evaluate.region_features`, static shapes, batches of images) and on the
host (`convnets.evaluate.rcnn_learners`):
1. feature statistics: the mean L2 norm of `layer` (and `bbox_layer`) over `norm_regions` random regions of each
   of the first `norm_images` training images (rcnn_feature_stats.m: 200 x 200), so that features are scaled to
   a mean norm of 20;
2. positives: the features of every ground-truth box of the training images (`use_difficult`: difficult ones too,
   as R-CNN's roidb_from_voc.m, which keeps every annotated object; they also keep proposals on them out of the
   negatives and give box-regression examples);
3. hard negative mining: one pass over the training images' regions (proposals and gt boxes) in order, with the
   authors' cache rules, training one linear SVM per class; the box-regression examples (IoU > 0.6) are collected
   in the same pass and the ridge regressors fitted at its end;
4. test: every proposal of the test images scored by every SVM (and/or by the network's own softmax, 'softmax'
   in `classifiers`: Table 2's "fine-tuned softmax" comparison), per class the 100 best, optionally moved by the
   class's box regressor, NMS 0.3, VOC AP (`convnets.evaluate.voc_map`) in the dataset's own image ids and
   pixels (the stem of 'image/filename'; 'image_scale' undoes a resize, as the 'detection' evaluator does).
Passes 1-3 are skipped when nothing needs training (softmax only, no box regression). For a Fast R-CNN (task
'detection': SVMs on its fc6 / fc7, Table 8's "SVM instead of softmax") `bbox_reg` means the network's own
class-specific box regressors, as its softmax path uses them, and no ridge regressor is trained. With `config.init_from`
and no training steps this evaluates features "without fine-tuning" (Table 2's ImageNet-only rows).

Config entry fields (see `experiments.rcnn.rcnn_svm_eval`): `split` (test), `train_split`, `max_train_images`
(0: all), `train_preprocess` (the spec of the training pass; '': data.eval_preprocess), `layer` ('pool5' | 'fc6' |
'fc7'), `classifiers` (('svm',), ('softmax',) or both: the first is the main result), `bbox_reg`, `bbox_layer`,
`bbox_min_iou`, `bbox_lambda`, `use_difficult`, `svm_C`, `svm_pos_weight`, `svm_bias_mult`, `svm_neg_iou`,
`hard_thresh`, `evict_thresh`, `retrain_limit`, `norm_images`, `norm_regions`, `top_k`, `nms_iou`, `region_chunk`
(regions per device call of the classifier), `method`, `write_devkit`.

Results: `mAP` and `AP/<class>` of the main variant (the first classifier, with box regression if `bbox_reg`),
`<variant>/mAP` for every variant computed (`svm`, `svm_bbox_reg`, `softmax`, `softmax_bbox_reg`), `num_images`,
`train_images`, `svm_retrainings`, `box_regressors`, `seconds`. The main variant's devkit files go to
`<workdir>/detections/<evaluator>/`, the others' to `<workdir>/detections/<evaluator>/<variant>/`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline
from convnets.evaluate import rcnn_learners as learners
from convnets.evaluate import region_features
from convnets.evaluate.detection import GT_KEYS, SCALE_KEY, class_names, image_ids, original_pixels
from convnets.evaluate.voc_map import VocEvaluator
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.state import TrainState

CLASSIFIERS = ('svm', 'softmax')


def _check(config: ConfigDict, ev: ConfigDict) -> tuple[str, ...]:
    """The feature layers to extract; ValueError for entries that cannot work."""
    detector = config.task == 'detection'
    allowed = region_features.DETECTOR_LAYERS if detector else region_features.CLASSIFIER_LAYERS
    missing = [k for k in ('image', *GT_KEYS) if k not in config.data.batch_keys]
    if missing:
        raise ValueError(f'the rcnn_svm evaluator needs data.batch_keys {missing} (objects_to_boxes, pad_boxes).')
    if not ev.classifiers or any(c not in CLASSIFIERS for c in ev.classifiers):
        raise ValueError(f'evals.*.classifiers={tuple(ev.classifiers)}: use a non-empty subset of {CLASSIFIERS}.')
    if detector and 'softmax' in ev.classifiers:
        raise ValueError("classifiers 'softmax' is the 'detection' evaluator's job for task='detection': use "
                         "classifiers=('svm',) here.")
    ridge = ev.bbox_reg and not detector  # a detector brings its own class-specific box regressors
    layers = {ev.layer} | ({ev.bbox_layer} if ridge else set())
    bad = sorted(layers - set(allowed))
    if bad:
        raise ValueError(f'evals.* layer / bbox_layer {bad}: task {config.task!r} gives {allowed}.')
    return tuple(sorted(layers))


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the R-CNN SVM / softmax evaluator of config entry `ev` (see the module docstring)."""
    config = ctx.config
    layers = _check(config, ev)
    network_boxes = config.task == 'detection' and ev.bbox_reg  # Fast R-CNN's own regressors (sec. 2.2)
    model = ctx.nets[ev.net]
    batch_size = config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'eval_batch_size')
    names = class_names(config.data)
    num_classes = len(names)
    softmax = 'softmax' in ev.classifiers
    train_needed = 'svm' in ev.classifiers or (ev.bbox_reg and not network_boxes)
    shard = parallel.Parallel(ctx.mesh, 'shard_map').shard_batch
    test_data = ConfigDict(config.data.to_dict())
    test_data.eval_split = ev.split or config.data.eval_split
    ids = image_ids(test_data)

    def compiled(with_proposals: bool, layers: tuple[str, ...], softmax: bool, class_boxes: bool = False
                 ) -> Callable:
        def fn(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
            out = region_features.extract(config, model, state.nets[ev.net].eval_variables, batch, layers=layers,
                                          softmax=softmax, num_classes=num_classes, chunk=ev.region_chunk,
                                          with_proposals=with_proposals, use_difficult=ev.use_difficult,
                                          class_boxes=class_boxes)
            h, w = batch['image'].shape[1:3]
            size = (batch['image_size'] if 'image_size' in batch else
                    jnp.tile(jnp.array([[h, w]]), (batch['image'].shape[0], 1)))
            return (out | {k: batch[k] for k in (*GT_KEYS, 'mask', *SCALE_KEY) if k in batch}
                    | {'size': size.astype(np.float32)})
        return parallel.compile_per_example(fn, ctx.mesh)

    gt_pass = compiled(False, (ev.layer,), False)
    train_pass = compiled(True, layers, False)
    test_pass = compiled(True, layers, softmax, network_boxes)

    gather = parallel.gather_to_host

    def images(fn: Callable, state: TrainState, split: str, limit: int = 0, preprocess: str = ''
               ) -> Iterator[dict[str, np.ndarray]]:
        """Per real image of `split` in file order (at most `limit`), the device outputs as numpy."""
        data = ConfigDict(config.data.to_dict())
        data.eval_split = split
        if preprocess:
            data.eval_preprocess = preprocess
        count = 0
        for local in pipeline.eval_batches(data, global_batch_size=batch_size, process_index=jax.process_index(),
                                           process_count=jax.process_count()):
            out = {k: gather(v) for k, v in fn(state, shard(local)).items()}
            for i in range(out['mask'].shape[0]):
                if not out['mask'][i]:
                    continue
                yield {k: v[i] for k, v in out.items()}
                count += 1
                if limit and count >= limit:
                    return

    def train(state: TrainState) -> tuple[dict[str, float], learners.HardNegativeSvms | None,
                                            learners.BoxRegressors | None, int]:
        split, limit, spec = ev.train_split, ev.max_train_images, ev.train_preprocess
        rng = np.random.default_rng(0)
        norms: dict[str, list[np.ndarray]] = {k: [] for k in layers}
        for im in images(train_pass, state, split, min(ev.norm_images, limit) if limit else ev.norm_images, spec):
            rows = np.flatnonzero(im['valid'])
            rows = rng.choice(rows, min(ev.norm_regions, len(rows)), replace=False)
            for k in layers:
                norms[k].append(np.linalg.norm(im[k][rows], axis=1))
        factor = {k: learners.scale_factor(np.concatenate(v)) for k, v in norms.items()}
        logging.info('evals.%s: feature scale to a mean norm of 20: %s', ctx.name, factor)
        svms = None
        if 'svm' in ev.classifiers:
            pos: list[list[np.ndarray]] = [[] for _ in range(num_classes)]
            for im in images(gt_pass, state, split, limit, spec):
                for f, c in zip(im[ev.layer][im['valid']], im['box_classes'][im['valid']], strict=True):
                    pos[int(c)].append(f[None] * factor[ev.layer])
            dim = next((p[0].shape[1] for p in pos if p), None)
            if dim is None:
                raise ValueError(f'evals.{ctx.name}: the {split!r} split has no usable ground-truth '
                                 f'box to train SVMs on; check data.train_split / max_train_images.')
            svms = learners.HardNegativeSvms([np.concatenate(p) if p else np.zeros((0, dim)) for p in pos], dim,
                                             learners.SvmSettings(
                                                 C=ev.svm_C, pos_weight=ev.svm_pos_weight, bias_mult=ev.svm_bias_mult,
                                                 neg_iou=ev.svm_neg_iou, hard_thresh=ev.hard_thresh,
                                                 evict_thresh=ev.evict_thresh, retrain_limit=ev.retrain_limit))
        ridge = ev.bbox_reg and not network_boxes
        boxreg = learners.BoxRegressors(num_classes, ev.bbox_min_iou, ev.bbox_lambda) if ridge else None
        count = 0
        for im in images(train_pass, state, split, limit, spec):
            v = im['valid']
            if svms is not None:
                svms.add_image(im[ev.layer][v] * factor[ev.layer], im['overlap'][v])
            if boxreg is not None:
                usable = im['box_mask'].astype(bool)
                if not ev.use_difficult:
                    usable &= ~im['box_difficult'].astype(bool)
                boxreg.add_image(im[ev.bbox_layer][v] * factor[ev.bbox_layer], im['regions'][v], im['boxes'][usable],
                                 im['box_classes'][usable].astype(np.int64))
            count += 1
            if count % 500 == 0:
                logging.info('evals.%s: hard negative mining, %d images', ctx.name, count)
        if svms is not None:
            svms.finish()
            logging.info('evals.%s: SVMs trained on %d images (%d updates); cache negatives per class: %s', ctx.name,
                         count, svms.retrainings, [len(n) for n in svms.neg])
        if boxreg is not None:
            logging.info('evals.%s: %d box regressors', ctx.name, boxreg.fit())
        return factor, svms, boxreg, count

    def evaluate(state: TrainState) -> dict[str, float]:
        start = time.time()
        factor, svms, boxreg, train_images = train(state) if train_needed else ({}, None, None, 0)
        variants = [c + suffix for c in ev.classifiers for suffix in (('_bbox_reg', '') if ev.bbox_reg else ('',))]
        vocs = {v: VocEvaluator(names, method=ev.method) for v in variants}
        index = detections = 0
        for im in images(test_pass, state, test_data.eval_split):
            v = im['valid'] & ~im['is_gt']  # rcnn_test.m scores proposals only (`~d.gt`)
            regions = im['regions'][v]
            scores = {}
            if svms is not None:
                scores['svm'] = svms.scores(im[ev.layer][v] * factor[ev.layer])
            if softmax:
                scores['softmax'] = im['probs'][v][:, 1:]
            regress = None
            if boxreg is not None:
                fb = im[ev.bbox_layer][v] * factor[ev.bbox_layer]
                regress = lambda j, rows, boxes, fb=fb: boxreg.predict(j, fb[rows], boxes)  # noqa: E731
            elif network_boxes:
                cb = im['class_boxes'][v]
                regress = lambda j, rows, boxes, cb=cb: cb[rows, j]  # noqa: E731
            for variant in vocs:
                det = learners.image_detections(regions, scores[variant.removesuffix('_bbox_reg')], top_k=ev.top_k,
                                                nms_iou=ev.nms_iou, size=tuple(im['size']),
                                                regress=regress if variant.endswith('_bbox_reg') else None)
                image_id = ids[index] if ids is not None else f'{index:06d}'
                vocs[variant].add(image_id, *original_pixels(im, *det, size=im['size']))
                if variant == variants[0]:
                    detections += len(det[0])
            index += 1
        results = {f'{v}/mAP': voc.result().metrics()['mAP'] for v, voc in vocs.items()}
        if ev.write_devkit and ctx.workdir and jax.process_index() == 0:
            for v, voc in vocs.items():
                parts = (ctx.workdir, 'detections', ctx.name) + (() if v == variants[0] else (v,))
                voc.write_devkit(os.path.join(*parts), 'comp4', 'test')
            logging.info('evals.%s: VOC devkit result files in %s', ctx.name,
                         os.path.join(ctx.workdir, 'detections', ctx.name))
        return {**vocs[variants[0]].result().metrics(), **results, 'num_images': index, 'detections': detections,
                'train_images': train_images, 'svm_retrainings': svms.retrainings if svms else 0,
                'box_regressors': sum(m is not None for m in boxreg.models) if boxreg else 0,
                'seconds': time.time() - start}

    return evaluate
