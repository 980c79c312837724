"""What every R-CNN experiment shares (Girshick, Donahue, Darrell, Malik 2014, "Rich feature hierarchies for accurate
object detection and semantic segmentation"): the 'rcnn' task, its warping section, the detection sampling set to
R-CNN's fine-tuning rule and the 'rcnn_svm' evaluator entry with the authors' SVM / regressor settings.

Facts (paper sections; rbgirshick/rcnn files):
  warping          227x227 after dilating the box for p = 16 pixels of warped context (sec. 2.1, appendix A;
                   rcnn_im_crop.m, Caffe WindowDataLayer context_pad 16, crop_mode 'warp').
  fine-tuning      (N+1)-way softmax; IoU >= 0.5 with a gt box positive, the rest background; batches of 128 =
                   32 positives + 96 background (sec. 2.3); mirror p = 0.5; lr 0.001, momentum 0.9, weight decay
                   5e-4, x0.1 every 20k iterations (finetuning/voc_2007_prototxt/pascal_finetune_solver.prototxt;
                   the released model is 'finetune_voc_2007_trainval_iter_70k', rcnn_train.m).
  SVMs             positives gt boxes only, negatives IoU < 0.3 (appendix B), hard negative mining, liblinear
                   -s 3 -c 0.001 -w1 2 -B 10, features scaled to a mean norm of 20 (rcnn_train.m,
                   rcnn_scale_features.m).
  box regression   ridge, lambda 1000, pool5 features, regions with IoU > 0.6 (appendix C;
                   rcnn_train_bbox_regressor.m).
  test             every proposal scored by every SVM, per class NMS at IoU 0.3 (sec. 2.2; rcnn_test.m).

Fields of `config.rcnn` (convnets/tasks/rcnn.py): warp_size (227), context_pad (16), warp_mode ('warp' | 'square'
| 'square_no_context': appendix A's variants), flip (mirror each region with p = 0.5).
"""

from ml_collections import config_dict

from experiments import detection


def rcnn_svm_eval(*, layer: str = 'fc7', classifiers: tuple[str, ...] = ('svm', 'softmax'), bbox_reg: bool = True,
                  train_split: str = 'train', results_key: str = 'eval', method: str = '11point'
                  ) -> config_dict.ConfigDict:
    """An 'rcnn_svm' evaluator entry (convnets/evaluate/rcnn_svm.py) with the authors' settings."""
    ev = config_dict.ConfigDict()
    ev.type = 'rcnn_svm'
    ev.every = ''
    ev.at_end = True
    ev.results_key = results_key
    ev.split = ''
    ev.net = 'model'
    ev.method = method
    ev.train_split = train_split
    ev.train_preprocess = ''  # the SVM training pass's spec ('': data.eval_preprocess; VOC: trainval's proposals)
    ev.max_train_images = 0  # 0: every training image (the authors' one pass over VOC 2007 trainval)
    ev.layer = layer
    ev.classifiers = classifiers
    ev.bbox_reg = bbox_reg
    ev.bbox_layer = 'pool5'
    ev.bbox_min_iou = 0.6
    ev.bbox_lambda = 1000.0
    ev.use_difficult = True  # roidb_from_voc.m keeps every annotated object (difficult ones too) as ground truth
    ev.svm_C = 1e-3
    ev.svm_pos_weight = 2.0
    ev.svm_bias_mult = 10.0
    ev.svm_neg_iou = 0.3
    ev.hard_thresh = -1.0001
    ev.evict_thresh = -1.2
    ev.retrain_limit = 2000
    ev.norm_images = 200
    ev.norm_regions = 200
    ev.top_k = 100
    ev.nms_iou = 0.3
    ev.region_chunk = 256
    ev.write_devkit = True
    return ev


VOC_CANVAS = 500  # VOC images are at most 500 px on their longer side


def voc07_data(c: config_dict.ConfigDict, value_ops: str, max_proposals: int = 2000) -> None:
    """VOC 2007 trainval / test with cached selective search proposals (experiments/detection.py's `voc_data`) at
    the original image size (a 500 px canvas: scale 1 for images whose longer side is 500, as nearly all VOC images;
    R-CNN warps regions of the original image), no image flips (R-CNN mirrors the warped regions instead), and the
    SVM training pass reading trainval's proposals with the test-time spec."""
    detection.voc_data(c, '2007', max_proposals=max_proposals, scales=VOC_CANVAS, max_size=VOC_CANVAS,
                       test_scale=VOC_CANVAS, test_max_size=VOC_CANVAS, value_ops=value_ops, flip=False)
    c.evals.val.train_split = c.data.get_ref('train_split')
    c.evals.val.train_preprocess = detection.voc_spec(c, 'train_split', scales=VOC_CANVAS, max_size=VOC_CANVAS,
                                                      flip=False, value_ops=value_ops)  # data.max_proposals


def get_config() -> config_dict.ConfigDict:
    c = detection.get_config()
    c.task = 'rcnn'
    c.model = config_dict.ConfigDict()
    c.model.name = 'alexnet'
    c.model.num_classes = 21  # 20 VOC classes + background
    c.model.input_size = 227
    c.rcnn = config_dict.ConfigDict()
    c.rcnn.warp_size = 227
    c.rcnn.context_pad = 16
    c.rcnn.warp_mode = 'warp'
    c.rcnn.flip = True
    d = c.detection
    d.rois_per_image = 64  # 128 windows over 2 images (the authors: 128 windows from random images)
    d.fg_fraction = 0.25  # 32 of 128
    d.fg_iou = 0.5
    d.bg_iou_low = 0.0  # "the rest as negatives"
    d.bg_iou_high = 0.5
    d.include_gt_rois = True  # the window file lists the gt boxes (rcnn_make_window_file.m)
    c.evals = config_dict.ConfigDict()
    c.evals.val = rcnn_svm_eval()
    c.optimizer.learning_rate = 0.001
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = 'step'
    c.optimizer.boundary_unit = 'steps'
    c.optimizer.decay_factor = 0.1
    c.optimizer.plateau_metric = ''
    return c
