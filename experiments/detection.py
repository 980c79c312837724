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
"""

from ml_collections import config_dict

from experiments import default


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
    return ev


def get_config() -> config_dict.ConfigDict:
    c = default.get_config()
    c.task = 'detection'
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
