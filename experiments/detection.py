"""What every detection experiment shares (Fast R-CNN, Girshick 2015): the 'detection' task, its config section
(proposals, RoI sampling, loss) and the VOC mAP evaluator entry.

Fields of `config.detection` (convnets/tasks/detection.py):
  proposals         'grid' (fixed windows: grid_sizes, grid_ratios (height:width), grid_stride) or 'batch'
                    (precomputed 'proposals' / 'proposal_mask' batch keys, e.g. cached selective search).
  rois_per_image    RoIs sampled per image (Fast R-CNN sec. 2.3: R = 128 over N = 2 images, i.e. 64).
  fg_fraction       at most this share foreground (25%), IoU >= fg_iou (0.5); background IoU in [bg_iou_low,
                    bg_iou_high) = [0.1, 0.5).
  box_weights       target normalisation (10, 10, 5, 5): py-faster-rcnn's BBOX_NORMALIZE_STDS (0.1, 0.1, 0.2, 0.2).
  box_loss_weight   lambda of eq. 1 (1).
  include_gt_rois   the ground-truth boxes are RoIs too (py-faster-rcnn's roidb appends them).

PASCAL VOC with cached selective search proposals: `voc_data(c, year, proposals_dir, max_proposals)` (R-CNN and
Fast R-CNN experiments share it). It adds `data.proposals_dir` (the cache of `python -m convnets.data.make_proposals`)
and `data.max_proposals`, and writes specs that read them through references (with `data.name` and the split
fields), so a command-line override of `data.proposals_dir`, `data.max_proposals` or a split reaches the
`load_proposals` op of both specs (the VOC experiment files show the switches).
"""

from ml_collections import config_dict

from convnets.weights import sources
from experiments import default

# data.name, train split, eval split. TFDS's voc builder has 'train' and 'validation' (VOC's train / val sets), so
# VOC's trainval is 'train+validation'; 'convnets_voc0712' (convnets/data/voc0712.py) is VOC 2007 + 2012 trainval
# ('trainval') and VOC 2007 test ('test').
VOC_DATASETS = {
    '2007': ('voc/2007', 'train+validation', 'test'),
    '07+12': ('convnets_voc0712', 'trainval', 'test'),
}
VOC_MAX_BOXES = 64  # objects kept per image (VOC 2007 / 2012 images hold at most 42 / 56)
# image_scale: the evaluators map boxes back to VOC's own pixels with it (devkit result files).
VOC_BATCH_KEYS = ('image', 'boxes', 'box_classes', 'box_difficult', 'box_mask', 'image_size', 'image_scale',
                  'proposals', 'proposal_mask')
# How the project's VGG16 ImageNet weights are fed: the torchvision import (experiments/pretrained.py,
# `python -m convnets.weights.import --from=torchvision --model=vgg16`) expects torchvision's normalisation; a VGG16
# trained here (experiments/vgg16.py) expects `imagenet.subtract_mean()`; the authors' Caffe VGG16 took BGR minus
# the mean (py-faster-rcnn PIXEL_MEANS), i.e. sources.CAFFE_BGR.value_ops.
VGG16_VALUE_OPS = sources.TORCHVISION.value_ops


def proposals_op(c: config_dict.ConfigDict, split_field: str, max_proposals: int | None = None):
    """`load_proposals('<dir>', '<name>', '<split>', N)` as a lazy string that follows later changes of
    data.proposals_dir, data.name, data.<split_field> and (unless `max_proposals` is given) data.max_proposals,
    command-line overrides included."""
    q = "'"
    count = str(int(max_proposals)) if max_proposals is not None else c.data.get_ref('max_proposals').to_str()
    return ('load_proposals(' + q + c.data.get_ref('proposals_dir') + q + ', ' + q + c.data.get_ref('name') + q
            + ', ' + q + c.data.get_ref(split_field) + q + ', ' + count + ')')


def voc_spec(c: config_dict.ConfigDict, split_field: str, *, scales: int | tuple[int, ...] = 600,
             max_size: int = 1000, flip: bool = False, max_proposals: int | None = None,
             value_ops: str = VGG16_VALUE_OPS, max_boxes: int = VOC_MAX_BOXES, proposals: bool = True):
    """One VOC spec (a lazy string, see `proposals_op`): VOC's 1-based boxes as pixel edges, the cached proposals,
    Fast R-CNN's scaling (shorter side `scales` (one drawn per image if several), longer side <= `max_size`; sec.
    2.3 / 5.2), a flip with p = 0.5 if `flip`, a `max_size` square canvas, `max_boxes` gt rows, `value_ops`.
    `max_proposals` None: data.max_proposals (set by voc_data). `proposals` False: no proposals (Faster R-CNN)."""
    scale = tuple(scales) if isinstance(scales, list | tuple) else int(scales)
    flip_op = '|flip_lr' if flip else ''
    head = 'decode(3)|objects_to_boxes(voc_one_based=True)|'
    if not proposals:
        return head + (f'resize_short_capped({scale}, {max_size}){flip_op}|pad_to({max_size})|pad_boxes({max_boxes})'
                       f'|{value_ops}')
    return (head + proposals_op(c, split_field, max_proposals)
            + f'|resize_short_capped({scale}, {max_size}){flip_op}|pad_to({max_size})|pad_boxes({max_boxes})'
            f'|{value_ops}')


def voc_data(c: config_dict.ConfigDict, year: str = '2007', proposals_dir: str = '', max_proposals: int = 2000,
             *, scales: int | tuple[int, ...] = 600, max_size: int = 1000, test_scale: int = 600,
             test_max_size: int = 1000, value_ops: str = VGG16_VALUE_OPS, flip: bool = True,
             proposals: bool = True) -> None:
    """Points `c.data` at PASCAL VOC (`year` '2007' or '07+12', see VOC_DATASETS) with selective search proposals
    from the cache in `proposals_dir` (`data.proposals_dir`), at most `max_proposals` per image.

    Train: `voc_spec(scales, max_size, flip)`; test: single scale `test_scale` / `test_max_size` (Fast R-CNN
    sec. 3: 600 / 1000), no flip. Batch keys: VOC_BATCH_KEYS. `value_ops` must match the ImageNet weights the
    detector starts from (VGG16_VALUE_OPS: the torchvision import). `proposals` False: no proposal keys or op (a
    Faster R-CNN makes its own; data.proposals_dir / max_proposals are still set for stages that read a cache)."""
    if year not in VOC_DATASETS:
        raise ValueError(f'voc_data: year must be one of {tuple(VOC_DATASETS)}, got {year!r}')
    c.data.name, c.data.train_split, c.data.eval_split = VOC_DATASETS[year]
    c.data.proposals_dir = proposals_dir
    c.data.max_proposals = int(max_proposals)  # per image, the first in ranked order (Fast R-CNN tests on 2000)
    c.data.cache = False  # thousands of full-size JPEGs: read from the record files each epoch
    c.data.batch_keys = VOC_BATCH_KEYS if proposals else tuple(k for k in VOC_BATCH_KEYS if 'proposal' not in k)
    c.data.train_preprocess = voc_spec(c, 'train_split', scales=scales, max_size=max_size, flip=flip,
                                       value_ops=value_ops, proposals=proposals)
    c.data.eval_preprocess = voc_spec(c, 'eval_split', scales=test_scale, max_size=test_max_size, value_ops=value_ops,
                                      proposals=proposals)


def voc_sgd(c: config_dict.ConfigDict, steps: int, lr_drop: int) -> None:
    """The VOC fine-tuning schedule of Fast and Faster R-CNN (Girshick 2015 sec. 2.3 / 4; Ren et al. 2015 sec.
    3.1.3): `steps` mini-batches of SGD, momentum 0.9, weight decay 5e-4, lr 0.001 then / 10 after `lr_drop`, biases
    at twice the rate (the authors' prototxts: lr_mult 2)."""
    c.num_train_steps = steps
    c.optimizer.learning_rate = 0.001
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = 'step'
    c.optimizer.boundary_unit = 'steps'
    c.optimizer.boundaries = (lr_drop,)
    c.optimizer.decay_factor = 0.1
    c.optimizer.bias_lr_multiplier = 2.0


def detection_eval(*, every: str = '', results_key: str = 'eval', method: str = '11point') -> config_dict.ConfigDict:
    """A 'detection' evaluator entry: VOC mAP (`method` '11point' for VOC 2007, 'area' for VOC 2010+), test-time
    NMS 0.3 per class, at most 100 detections per image (Fast R-CNN sec. 3; py-faster-rcnn TEST.NMS, test_net)."""
    ev = config_dict.ConfigDict()
    ev.type = 'detection'
    ev.every = every
    ev.at_end = True
    ev.results_key = results_key
    ev.split = ''
    ev.net = 'model'
    ev.method = method
    ev.nms_iou = 0.3
    ev.score_threshold = 0.05
    ev.max_detections = 100
    ev.write_devkit = True
    ev.proposals = ''  # '' = config.detection.proposals; 'rpn': a Faster R-CNN's own RPN (tasks/faster_rcnn.py)
    ev.truncated_svd = ()  # (fc6, fc7) ranks, e.g. (1024, 256): Fast R-CNN sec. 3.1 (convnets/evaluate/detection.py)
    ev.scales = ()  # test image pyramid, e.g. (480, 576, 688, 864, 1200) (sec. 5.2); () = the data's single scale
    ev.max_size = 2000  # the pyramid's longer-side cap (the authors' multiscale.yml)
    ev.data_scale = 600  # the shorter side the data pipeline resized images to
    return ev


def get_config() -> config_dict.ConfigDict:
    c = default.get_config()
    c.task = 'detection'
    c.resources.accelerators_per_node = 1  # one or two images per mini-batch: the authors' one GPU
    c.model.name = 'fast_rcnn_vgg16'
    c.model.num_classes = 20
    c.data.batch_keys = ('image', 'boxes', 'box_classes', 'box_difficult', 'box_mask', 'image_size')
    c.detection = config_dict.ConfigDict()
    d = c.detection
    d.proposals = 'batch'
    d.grid_sizes = (64, 128, 256)
    d.grid_ratios = (0.5, 1.0, 2.0)
    d.grid_stride = 16
    d.rois_per_image = 64
    d.fg_fraction = 0.25
    d.fg_iou = 0.5
    d.bg_iou_low = 0.1
    d.bg_iou_high = 0.5
    d.box_weights = (10.0, 10.0, 5.0, 5.0)
    d.box_loss_weight = 1.0
    d.include_gt_rois = True
    c.evals = config_dict.ConfigDict()
    c.evals.val = detection_eval()
    c.optimizer.plateau_metric = ''
    return c


def proposal_recall_eval(source: str = 'rpn', *, split: str = '', preprocess: str = '', write_cache: bool = False,
                         every: str = '', results_key: str = 'proposals') -> config_dict.ConfigDict:
    """A 'proposal_recall' evaluator entry (convnets/evaluate/proposal_recall.py): recall vs IoU for 300 / 1000 /
    2000 proposals and recall vs the number of proposals at IoU 0.5 / 0.7 (Faster R-CNN Fig. 4) of `source`
    ('rpn', 'batch': the cached proposals of the batch, 'grid'), with PNG plots and curves.json under
    <workdir>/proposals/<evaluator>/; `write_cache`: the split's proposals as a cache (`load_proposals` reads it),
    made as py-faster-rcnn's rpn_generate: no pre-NMS cut (-1), the 2000 best after NMS. For the training split
    give `split` and a no-flip `preprocess` of it (e.g. voc_spec(c, 'train_split', flip=False))."""
    ev = config_dict.ConfigDict()
    ev.type = 'proposal_recall'
    ev.every = every
    ev.at_end = True
    ev.results_key = results_key
    ev.net = 'model'
    ev.source = source
    ev.label = ''  # the legend's name of this run ('' = the source's, e.g. 'RPN')
    ev.split = split  # '' = data.eval_split
    ev.preprocess = preprocess  # '' = data.eval_preprocess
    ev.counts = (300, 1000, 2000)  # proposals per image of the recall-vs-IoU curves
    ev.iou_thresholds = tuple(round(0.5 + 0.05 * k, 2) for k in range(10))  # 0.5:0.05:0.95
    ev.proposal_ious = (0.5, 0.7)  # IoUs of the recall-vs-number-of-proposals curves
    ev.matching = 'best'  # 'best' IoU per gt box; 'one_to_one': py-faster-rcnn imdb.evaluate_recall's greedy
    ev.pre_nms_top_n = -1  # RPN: -1 all anchors, 0 = rpn.test_pre_nms_top_n
    ev.post_nms_top_n = 2000  # RPN: 0 = rpn.test_post_nms_top_n
    ev.write_cache = write_cache
    ev.cache_dir = ''  # '' = <workdir>/proposals
    ev.compare = ()  # curves.json files of other runs drawn dashed on the same axes
    return ev
