"""Faster R-CNN, VGG16, PASCAL VOC 2007 (Ren et al. 2015): trained on VOC 2007 trainval, tested on VOC 2007 test.

Reproduces (sec. 3, 4.1): an RPN (3x3 conv of 512 maps, 2k scores + 4k offsets, k = 9 anchors of 128^2, 256^2, 512^2
x 1:2, 1:1, 2:1 at stride 16) on VGG16's conv5_3 shared with a Fast R-CNN head (7x7 RoI pooling, fc6 / fc7, K+1
softmax and class-specific boxes); VGG16 from ImageNet weights (conv1_x / conv2_x fixed, as py-faster-rcnn), new
layers N(0, 0.01) (box regressors 0.001); 256 anchors per image up to 1:1 (IoU >= 0.7 or best positive, < 0.3
negative, boundary-crossing anchors ignored), eq. 1 with N_cls = 256, N_reg = the anchor locations (~2400),
lambda = 10; proposals: NMS 0.7, 12000 / 2000 before / after NMS in training, 6000 / 300 at test; Fast R-CNN on
them: 128 RoIs per image, 25% foreground; one image per mini-batch, shorter side 600 (longer <= 1000), flips;
SGD momentum 0.9, weight decay 5e-4, lr 0.001 for 60k then 0.0001 for 20k mini-batches (sec. 3.1.3); per-class
NMS 0.3 and VOC 2007 11-point mAP on 300 proposals per image.
Paper result: 69.9 mAP (Table 3, "RPN+VGG, shared", 07 trainval, 4-step training: the ':alternating' variant).

Variants: '' approximate joint training (sec. 3.2 (ii): one network, one loss sum, no gradient through the
proposal coordinates; "produces close results" with 25-50% less training time); ':alternating' the 4-step
alternating training (sec. 3.2, the paper's numbers) as four stages of one run: rpn1, frcn1, rpn2, frcn2
(experiments/faster_rcnn.py `alternating`; rpn1 writes its proposals into <workdir>/rpn1/proposals; --stage=NAME
picks a stage for --mode=eval / detect).

Ablation switches (VOC 2007 test mAP of VGG16 in the paper):
  anchors (Table 8): --config.model.anchor_sizes="(128.0,)" --config.model.anchor_ratios="(1.0,)" gives 65.8;
      "(256.0,)" with "(1.0,)": 66.7; "(128.0,)" with 3 ratios: 68.8; "(256.0,)" with 3 ratios: 67.9;
      3 sizes with --config.model.anchor_ratios="(1.0,)": 69.8; 3 sizes x 3 ratios (default): 69.9
  lambda (Table 9): --config.rpn.loss_weight=0.1 gives 67.2; 1: 68.9; 10 (default): 69.9; 100: 69.1
  proposals at test (Table 2 on ZF): --config.rpn.test_post_nms_top_n=100 / 300 / 1000
  RPN without its cls layer at test (random proposals, Table 2): --config.rpn.test_objectness=False
  RPN without its reg layer at test (the anchors, Table 2): --config.rpn.test_regression=False
  no NMS at test (Table 2: 6000 proposals): --config.rpn.test_nms_iou=1.0 --config.rpn.test_post_nms_top_n=6000
Deviations: the ImageNet VGG16 is torchvision's (imported) rather than the authors' Caffe model; images padded to a
1000 x 1000 canvas; the RPN's smooth L1 is Fast R-CNN's (beta 1) with the paper's 1/256 and 1/N_reg weights
(py-faster-rcnn: sigma 3 and 1/256 weights; --config.rpn.smooth_l1_beta=0.1111 --config.rpn.reg_normaliser=256 with
--config.rpn.loss_weight=1.0 is that choice).

Run (VOC's tars placed by hand in <data_dir>/downloads/manual, see experiments/detection.py; the ImageNet weights
first):
  python -m convnets.weights.import --from=torchvision --model=vgg16 --file=vgg16-397923af.pth --workdir=/tmp/vgg16_in
  python -m convnets.main --config=experiments/faster_rcnn_vgg16_voc07.py --workdir=/tmp/faster_rcnn_voc07
  python -m convnets.main --config=experiments/faster_rcnn_vgg16_voc07.py:alternating --workdir=/tmp/frcnn07_4step
with the ImageNet weights given by --config.init_from=/tmp/vgg16_in.
Proposal recall (Fig. 4) of a trained run: add an evaluator entry of experiments/detection.py
`proposal_recall_eval` or read <workdir>/rpn2/proposals (4-step). Hardware/time: not run here (no VOC, no GPU).
Sweeps: 'anchors' (Table 8), 'lambda' (Table 9), 'scheme' (joint vs 4-step training); each table from
`python -m launch.report ROOT` once its runs finish:
  python -m launch.sweep --config=experiments/faster_rcnn_vgg16_voc07.py --sweep=anchors --workdir=/tmp/frcnn_anchors
"""

from convnets import sweeps
from experiments import faster_rcnn


def get_config(variant: str = ''):
    """`variant`: '' (approximate joint training) or 'alternating' (the 4-step scheme)."""
    return faster_rcnn.voc_experiment('2007', 'vgg16', variant or 'joint')


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """Tables 8 and 9 (anchor settings, lambda) and the training scheme, as rows of this recipe."""
    mAP = sweeps.Column('mAP', 'eval.mAP')
    three_sizes, three_ratios = (128.0, 256.0, 512.0), (0.5, 1.0, 2.0)
    anchors = (('128^2, 1:1', (128.0,), (1.0,), 65.8), ('256^2, 1:1', (256.0,), (1.0,), 66.7),
               ('128^2, 3 ratios', (128.0,), three_ratios, 68.8), ('256^2, 3 ratios', (256.0,), three_ratios, 67.9),
               ('3 scales, 1:1', three_sizes, (1.0,), 69.8), ('3 scales, 3 ratios', three_sizes, three_ratios, 69.9))
    return {
        'anchors': sweeps.Sweep(
            title='Detection mAP (%) on VOC 2007 test by anchor settings (VGG16, 07 trainval)',
            source='Ren et al. 2015, Table 8', columns=(mAP,),
            runs=tuple(sweeps.Run(label, {'model.anchor_sizes': sizes, 'model.anchor_ratios': ratios},
                                  paper={'mAP': paper}) for label, sizes, ratios, paper in anchors),
            notes='The paper trained these with its 4-step scheme; rows here use the recipe\'s approximate joint '
                  'training (add --config=...:alternating runs for the 4-step numbers).'),
        'lambda': sweeps.Sweep(
            title='Detection mAP (%) on VOC 2007 test by the RPN loss weight lambda (VGG16, 07 trainval)',
            source='Ren et al. 2015, Table 9', columns=(mAP,),
            runs=tuple(sweeps.Run(f'lambda = {w:g}', {'rpn.loss_weight': w}, paper={'mAP': paper})
                       for w, paper in ((0.1, 67.2), (1.0, 68.9), (10.0, 69.9), (100.0, 69.1)))),
        'scheme': sweeps.Sweep(
            title='Detection mAP (%) on VOC 2007 test by training scheme (VGG16, 07 trainval)',
            source='Ren et al. 2015, Table 3 (4-step) and sec. 3.2 (approximate joint: no number printed)',
            columns=(mAP,),
            runs=(sweeps.Run('approximate joint training', {}),
                  sweeps.Run('4-step alternating training', {}, variant='alternating', paper={'mAP': 69.9}))),
    }
