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

from convnets.models import vgg
from experiments import detection, imagenet

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
    # Test-time ablations of Table 2 (the detector as trained): NMS at test (1.0: none), the cls layer (False: N
    # random proposals, no ranking), the reg layer (False: the anchors themselves).
    r.test_nms_iou = 0.7
    r.test_objectness = True
    r.test_regression = True
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


# ImageNet checkpoints lack these: the new classifier, box regressors and RPN start fresh.
INIT_FROM_SKIP = ('params/fc8_layer/', 'params/cls_score_layer/', 'params/bbox_pred_layer/', 'params/rpn_')
SCHEMES = ('joint', 'alternating', 'selective_search')
SHARED_CONVS = ('^conv',)  # every conv layer of the backbone (VGG16 conv1_1..conv5_3, ZF conv1..conv5), not the RPN's
# The 4-step scheme (sec. 3.2; py-faster-rcnn tools/train_faster_rcnn_alt_opt.py): stage names in run order.
ALTERNATING_STAGES = ('rpn1', 'frcn1', 'rpn2', 'frcn2')


def voc(c: config_dict.ConfigDict, year: str, *, backbone: str, steps: int, lr_drop: int,
        proposals: bool = False) -> None:
    """The paper's VOC recipe on `c` (a Faster R-CNN config): `backbone` 'vgg16' or 'zf' from ImageNet weights
    (`init_from`), one image per step (sec. 3.1.3), shorter side 600 (longer <= 1000), flips, SGD momentum 0.9, weight
    decay 5e-4, lr 0.001 then 0.0001 after `lr_drop` of `steps` mini-batches, biases at twice the rate (the authors'
    prototxts: lr_mult 2), VOC 2007 11-point mAP at the end."""
    c.model.fc_features = 4096
    c.model.dropout_rate = 0.5
    if backbone == 'vgg16':
        c.model.name = 'faster_rcnn_vgg16'
        c.model.vgg_config = 'D'  # VGG16
        c.model.stage_widths = vgg.STAGE_WIDTHS
        c.model.num_pools = 4  # conv5_3 at stride 16
        c.model.roi_size = 7
        c.model.rpn_channels = 512
        value_ops = detection.VGG16_VALUE_OPS
        # py-faster-rcnn's VGG16 prototxts fix conv1_x and conv2_x (lr_mult 0), as Fast R-CNN sec. 4.5.
        c.optimizer.frozen = ('^conv1_', '^conv2_')
    elif backbone == 'zf':
        c.model.name = 'faster_rcnn_zf'
        c.model.backbone = 'zf'
        c.model.roi_size = 6
        c.model.rpn_channels = 256
        value_ops = imagenet.subtract_mean()  # a ZF Net trained here (experiments/zfnet.py)
        c.optimizer.frozen = ()  # py-faster-rcnn's ZF prototxts train every conv layer
    else:
        raise ValueError(f"backbone must be 'vgg16' or 'zf', got {backbone!r}")
    c.model.num_classes = 20
    # proposals: the selective search cache in the batches (data.proposals_dir), for a Fast R-CNN on them.
    detection.voc_data(c, year, proposals_dir='', max_proposals=2000, value_ops=value_ops, proposals=proposals)
    c.init_from = ''  # the ImageNet network's workdir (see Run: in the experiment files)
    c.init_from_skip = INIT_FROM_SKIP
    c.batch_size = 1  # one image per mini-batch (sec. 3.1.3); see convnets/tasks/faster_rcnn.py for devices
    c.eval_batch_size = 1
    detection.voc_sgd(c, steps, lr_drop)
    c.log_every = '20 steps'
    c.checkpoint_every = '5000 steps'
    c.evals.val.every = ''
    # Fig. 4: recall of the RPN's proposals on VOC 2007 test (py-faster-rcnn rpn_generate's settings: every anchor
    # before NMS, the 2000 best after), plots under <workdir>/proposals/proposals/.
    c.evals.proposals = detection.proposal_recall_eval('rpn')


def alternating(c: config_dict.ConfigDict, *, rpn_steps: tuple[int, int], frcn_steps: tuple[int, int],
                train_split_preprocess: str, frcn_train_preprocess: str, frcn_eval_preprocess: str,
                frcn_batch_keys: tuple[str, ...] = detection.VOC_BATCH_KEYS) -> None:
    """Turns the joint-training config `c` into the 4-step alternating scheme (sec. 3.2), one stage per step
    (`convnets.train.stages`; each resumes like any run):
      rpn1   the RPN from ImageNet weights (`init_from`), rpn.train='rpn'; at its end it writes its proposals of the
             train and test splits (py-faster-rcnn rpn_generate: no pre-NMS cut, 2000 after NMS; the settings of
             evals.proposals) into its workdir, and their recall (Fig. 4);
      frcn1  Fast R-CNN from ImageNet weights on those proposals (rpn.train='detector', detection.proposals='batch');
             its mAP (on rpn1's test proposals) is Table 2's "unshared" row;
      rpn2   the RPN re-initialised from frcn1 (its RPN layers fresh), shared convs frozen, RPN layers trained;
      frcn2  the Fast R-CNN layers fine-tuned from rpn2 with the shared convs (and RPN) frozen, on rpn2's own proposals
             computed in each step (the network is frozen there, so they equal a cache of them; py-faster-rcnn
             caches them with the test settings); tested with the RPN's proposals: the final Faster R-CNN.
    `rpn_steps` / `frcn_steps`: (lr drop, total) mini-batches of the RPN and Fast R-CNN stages (py-faster-rcnn:
    60k / 80k and 30k / 40k). The three preprocessing strings are the train split without flips (for rpn1's proposal
    file), and the Fast R-CNN specs that read the cache (load_proposals from data.proposals_dir), whose batches hold
    `frcn_batch_keys`."""
    c.stages = ALTERNATING_STAGES  # rpn1 and frcn1 start from the base config's init_from / init_from_skip
    shared = tuple(dict.fromkeys(tuple(c.optimizer.frozen) + SHARED_CONVS))

    def stage(train: str, steps: tuple[int, int], proposals: str = 'rpn') -> config_dict.ConfigDict:
        s = config_dict.ConfigDict()
        s.rpn = config_dict.ConfigDict({'train': train})
        s.detection = config_dict.ConfigDict({'proposals': proposals})
        s.num_train_steps = steps[1]
        s.optimizer = config_dict.ConfigDict({'boundaries': (steps[0],), 'boundary_unit': 'steps'})
        return s

    rpn1 = stage('rpn', rpn_steps)
    rpn1.evals = config_dict.ConfigDict()
    rpn1.evals.val = config_dict.ConfigDict({'at_end': False})  # an RPN alone detects nothing
    rpn1.evals.proposals = config_dict.ConfigDict({'write_cache': True})  # the test split's proposals and recall
    rpn1.evals.proposals_train = detection.proposal_recall_eval(
        'rpn', split=c.data.get_ref('train_split'), preprocess=train_split_preprocess, write_cache=True,
        results_key='proposals_train')
    rpn1.evals.proposals_train.pre_nms_top_n = c.evals.proposals.get_ref('pre_nms_top_n')
    rpn1.evals.proposals_train.post_nms_top_n = c.evals.proposals.get_ref('post_nms_top_n')
    frcn1 = stage('detector', frcn_steps, proposals='batch')
    frcn1.data = config_dict.ConfigDict({
        'proposals_dir': 'stage:rpn1/proposals', 'train_preprocess': frcn_train_preprocess,
        'eval_preprocess': frcn_eval_preprocess, 'batch_keys': frcn_batch_keys})
    frcn1.evals = config_dict.ConfigDict()
    frcn1.evals.proposals = config_dict.ConfigDict({'at_end': False})  # rpn1 measured its proposals already
    rpn2 = stage('rpn', rpn_steps)
    rpn2.init_from = 'stage:frcn1'
    rpn2.init_from_skip = ('params/rpn_',)  # "re-initialised": frcn1's RPN layers are fresh
    rpn2.optimizer.frozen = shared
    rpn2.evals = config_dict.ConfigDict()
    rpn2.evals.val = config_dict.ConfigDict({'at_end': False})
    frcn2 = stage('detector', frcn_steps)
    frcn2.init_from = 'stage:rpn2'
    frcn2.init_from_skip = ()
    frcn2.optimizer.frozen = shared
    c.stage_configs = config_dict.ConfigDict({'rpn1': rpn1, 'frcn1': frcn1, 'rpn2': rpn2, 'frcn2': frcn2})


def voc_experiment(year: str, backbone: str, scheme: str = 'joint') -> config_dict.ConfigDict:
    """A VOC Faster R-CNN experiment: `scheme` 'joint' (approximate joint training: 80k mini-batches, lr drop at
    60k, sec. 3.1.3), 'alternating' (the 4-step scheme: 80k / 60k for the RPN stages, 40k / 30k for the Fast R-CNN
    stages, py-faster-rcnn's alt-opt solvers) or 'selective_search' (no RPN: the network's Fast R-CNN part trained
    and tested on the selective search cache of `data.proposals_dir`, 40k / 30k; Table 2's baseline)."""
    if scheme not in SCHEMES:
        raise ValueError(f'unknown training scheme {scheme!r} of the Faster R-CNN VOC experiments: use one of '
                         f'{SCHEMES} (e.g. --config=experiments/faster_rcnn_zf_voc07.py:alternating)')
    c = get_config()
    if scheme == 'selective_search':  # Table 2's first row: the same network as a Fast R-CNN on selective search
        voc(c, year, backbone=backbone, steps=40_000, lr_drop=30_000, proposals=True)
        c.rpn.train = 'detector'
        c.detection.proposals = 'batch'
        c.evals.proposals.source = 'batch'
        return c
    voc(c, year, backbone=backbone, steps=80_000, lr_drop=60_000)
    if scheme == 'alternating':
        value_ops = detection.VGG16_VALUE_OPS if backbone == 'vgg16' else imagenet.subtract_mean()
        alternating(c, rpn_steps=(60_000, 80_000), frcn_steps=(30_000, 40_000),
                    train_split_preprocess=detection.voc_spec(c, 'train_split', value_ops=value_ops,
                                                              proposals=False),
                    frcn_train_preprocess=detection.voc_spec(c, 'train_split', flip=True, value_ops=value_ops),
                    frcn_eval_preprocess=detection.voc_spec(c, 'eval_split', value_ops=value_ops))
    return c
