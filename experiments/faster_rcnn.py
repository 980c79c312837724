"""What every Faster R-CNN experiment shares (Ren et al. 2015): the 'faster_rcnn' task, its `config.rpn` section and
the Fast R-CNN settings of its detection head.

Fields of `config.rpn` (convnets/tasks/faster_rcnn.py; paper values, py-faster-rcnn lib/fast_rcnn/config.py):
  train             'joint' (approximate joint training, sec. 3.2) | 'rpn' | 'detector' (one part: the 4-step
                    scheme's stages, see `alternating`)
  batch_size        anchors sampled per image (256), up to fg_fraction (0.5) positive (sec. 3.1.3)
  positive_iou      0.7; negative_iou 0.3; allowed_border 0 (boundary-crossing anchors ignored, sec. 3.3)
  loss_weight       lambda of eq. 1 (10; Table IX: 0.1 / 1 / 10 / 100 give 67.2 / 68.9 / 69.9 / 69.1 on VGG16)
  cls_normaliser    N_cls (256); reg_normaliser N_reg (0 = the image's anchor locations, ~2400)
  smooth_l1_beta    1 (Fast R-CNN's smooth L1; py-faster-rcnn's RPN uses sigma 3, i.e. 1/9)
  nms_iou           0.7; min_size 16 (original pixels)
  train_pre_nms_top_n / train_post_nms_top_n   12000 / 2000; test_pre_nms_top_n / test_post_nms_top_n 6000 / 300
Model fields (convnets/models/faster_rcnn.py): anchor_sizes (128, 256, 512) and anchor_ratios (0.5, 1, 2): Table
VIII's rows as switches, e.g. --config.model.anchor_sizes="(128.0, 256.0, 512.0)" --config.model.anchor_ratios="(1.0,)".

The detection head is Fast R-CNN's (experiments/detection.py's `config.detection`) on the RPN's proposals:
128 RoIs per image, 25% foreground, background IoU in [0, 0.5) (py-faster-rcnn experiments/cfgs/
faster_rcnn_end2end.yml: BATCH_SIZE 128, BG_THRESH_LO 0.0), the gt boxes among the candidates.
"""

from ml_collections import config_dict

from experiments import detection

# VOC batches without precomputed proposals: the RPN makes them.
VOC_BATCH_KEYS = tuple(k for k in detection.VOC_BATCH_KEYS if k not in ('proposals', 'proposal_mask'))
TRAIN_MODES = ('joint', 'rpn', 'detector')


def rpn_config() -> config_dict.ConfigDict:
    """`config.rpn` with the paper's values (see the module docstring)."""
    r = config_dict.ConfigDict()
    r.train = 'joint'
    r.batch_size = 256
    r.fg_fraction = 0.5
    r.positive_iou = 0.7
    r.negative_iou = 0.3
    r.allowed_border = 0.0
    r.loss_weight = 10.0
    r.cls_normaliser = 256.0
    r.reg_normaliser = 0.0
    r.smooth_l1_beta = 1.0
    r.nms_iou = 0.7
    r.min_size = 16.0
    r.train_pre_nms_top_n = 12000
    r.train_post_nms_top_n = 2000
    r.test_pre_nms_top_n = 6000
    r.test_post_nms_top_n = 300
    return r


def get_config() -> config_dict.ConfigDict:
    c = detection.get_config()
    c.task = 'faster_rcnn'
    c.model.name = 'faster_rcnn_vgg16'
    c.model.rpn_channels = 512
    c.model.anchor_sizes = (128.0, 256.0, 512.0)
    c.model.anchor_ratios = (0.5, 1.0, 2.0)
    c.detection.proposals = 'rpn'
    c.detection.rois_per_image = 128
    c.detection.bg_iou_low = 0.0
    c.rpn = rpn_config()
    return c
