"""Fast R-CNN, VGG16, PASCAL VOC 2007 (Girshick 2015): trained on VOC 2007 trainval, tested on VOC 2007 test.

Reproduces (sec. 2.3, 3, 4): VGG16 initialised from ImageNet (sec. 2.2; fc8 replaced by the (K+1)-way softmax
N(0, 0.01) and the 4K box regressors N(0, 0.001)); conv1_x and conv2_x frozen, conv3_1 and up fine-tuned (sec.
4.5); mini-batches of N = 2 images x R / N = 64 RoIs, 25% foreground (IoU >= 0.5), background IoU in [0.1, 0.5),
horizontal flips p = 0.5 (sec. 2.3); multi-task loss, lambda = 1, smooth L1 on targets normalised by (0.1, 0.1,
0.2, 0.2); SGD momentum 0.9, weight decay 5e-4, lr 0.001 for 30k iterations then 0.0001 for 10k, biases at 2x the
rate (the authors' prototxts, lr_mult 2); single scale: shorter side 600, longer <= 1000 (sec. 5.2); selective
search "fast mode" proposals, 2000 per image at test (sec. 4: the R-CNN cache; here `convnets.data.make_proposals`);
test: class-specific boxes, per-class NMS 0.3, VOC 2007 11-point mAP (sec. 3).
Paper result: 66.9 mAP on VOC 2007 test (Table 1, "FRCN [ours]", 07 trainval).

Ablation switches (VOC 2007 test mAP of VGG16 in the paper):
  --config.optimizer.frozen="('^conv',)"   fine-tune fc6 and up only, SPPnet's setting: 61.4 (Table 5, sec. 4.5)
  --config.optimizer.frozen="('^conv1_',)"  fine-tune conv2_1 and up: 67.2 (Table 5; 1.3x slower training)
  --config.evals.val.truncated_svd="(1024, 256)"  truncated SVD of fc6 / fc7 at test: 66.6, >30% faster (sec. 3.1)
  --config.data.max_proposals=1000         proposals per image (sec. 5.5, Fig. 3: more is not always better)
  --config=experiments/fast_rcnn_vgg16_voc07.py:multiscale   the 5-scale pyramid (sec. 5.2): training draws one
                                          of {480, 576, 688, 864, 1200} per image (longer side <= 2000, 2000x2000
                                          canvas), testing pools each RoI from the level closest to 224^2; the
                                          paper ran it for the smaller nets only (Table 7), VGG16 single-scale
  --config=experiments/fast_rcnn_vgg16_voc07.py:svm   SVMs on fc7 instead of the softmax: 66.8 (Table 8, sec. 5.4);
                                          the 'svm' results beside the softmax's 'eval' of the same run
Deviations: the ImageNet VGG16 is torchvision's (imported, RGB normalised by the ImageNet mean and std) instead of
the authors' Caffe model (BGR minus the mean); images are padded to a 1000x1000 canvas (py-faster-rcnn pads a
blob to its largest image); OpenCV's selective search with R-CNN's fast-mode settings instead of the authors'
MATLAB cache (their published voc_2007_*.mat files can be converted with --from_mat).

Run (VOC's tars placed by hand in <data_dir>/downloads/manual, see experiments/detection.py; one-off steps first):
  python -m convnets.weights.import --from=torchvision --model=vgg16 --file=vgg16-397923af.pth --workdir=/tmp/vgg16_in
  python -m convnets.data.make_proposals --data=voc/2007 --split=train+validation --out=/tmp/voc_proposals --workers=16
  python -m convnets.data.make_proposals --data=voc/2007 --split=test --out=/tmp/voc_proposals --workers=16
  python -m convnets.main --config=experiments/fast_rcnn_vgg16_voc07.py --workdir=/tmp/fast_rcnn_voc07
with the ImageNet weights and the proposals given by
  --config.init_from=/tmp/vgg16_in --config.data.proposals_dir=/tmp/voc_proposals
(--from_mat=selective_search_data/voc_2007_trainval.mat converts the authors' proposals instead of recomputing them.)
Hardware/time: 9.5 h of training on one K40 in the paper (Table 4); not run here.
Sweeps 'table5' (layers fine-tuned) and 'table8' (softmax vs SVMs); the table: `python -m launch.report ROOT`:
  python -m launch.sweep --config=experiments/fast_rcnn_vgg16_voc07.py --sweep=table5 --workdir=/tmp/frcn_table5
"""

from convnets import sweeps
from convnets.models import vgg
from experiments import detection, rcnn

INIT_FROM_SKIP = ('params/fc8_layer/', 'params/cls_score_layer/', 'params/bbox_pred_layer/')
PYRAMID = (480, 576, 688, 864, 1200)  # sec. 5.2 (after SPPnet), longer side <= 2000
VARIANTS = ('', 'multiscale', 'svm')


def get_config(variant: str = ''):
    """`variant`: '' (single scale, the paper's VGG16), 'multiscale' (the 5-scale pyramid, sec. 5.2) or 'svm' (the
    softmax's ranking replaced by R-CNN's SVMs on fc7 afterwards, Table 8)."""
    return build('2007', steps=40_000, lr_drop=30_000, variant=variant)


def build(year: str, steps: int, lr_drop: int, variant: str = ''):
    """The recipe on VOC `year` ('2007' or '07+12'): `steps` iterations, lr / 10 after `lr_drop`."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r} of the Fast R-CNN VOC experiments: use one of {VARIANTS}')
    c = detection.get_config()
    c.model.name = 'fast_rcnn_vgg16'
    c.model.num_classes = 20
    c.model.vgg_config = 'D'  # VGG16 (the paper's model L)
    c.model.stage_widths = vgg.STAGE_WIDTHS
    c.model.num_pools = 4  # conv5_3 at stride 16
    c.model.roi_size = 7  # sec. 2.1: H = W = 7 for VGG16
    c.model.fc_features = 4096
    c.model.dropout_rate = 0.5
    if variant == 'multiscale':
        detection.voc_data(c, year, proposals_dir='', max_proposals=2000, scales=PYRAMID, max_size=2000)
        c.evals.val.scales = PYRAMID
        c.evals.val.max_size = 2000
    else:
        detection.voc_data(c, year, proposals_dir='', max_proposals=2000)
    c.init_from = ''  # the ImageNet VGG16 workdir (see Run:); fc8 is left out, the two heads start fresh
    c.init_from_skip = INIT_FROM_SKIP
    c.batch_size = 2  # N = 2 images x 64 RoIs
    c.eval_batch_size = 2
    detection.voc_sgd(c, steps, lr_drop)
    c.optimizer.frozen = ('^conv1_', '^conv2_')  # sec. 4.5: conv3_1 and up are fine-tuned
    c.log_every = '20 steps'
    c.checkpoint_every = '5000 steps'
    c.evals.val.every = ''  # VOC 2007 test once, at the end
    # The selective search proposals' recall (Faster R-CNN Fig. 4's "SS" curves), plots under
    # <workdir>/proposals/proposals/ (--mode=eval draws them for any trained run).
    c.evals.proposals = detection.proposal_recall_eval('batch')
    if variant == 'svm':
        # Table 8 / sec. 5.4: per-class linear SVMs trained on the fine-tuned network's fc7 features with R-CNN's
        # hard negative mining (the authors' tools/train_svms.py), scoring the network's own class-specific boxes;
        # gt boxes without difficult ones, as their pascal_voc roidb. Results under 'svm' beside the softmax's.
        c.evals.svm = rcnn.rcnn_svm_eval(layer='fc7', classifiers=('svm',), results_key='svm')
        c.evals.svm.use_difficult = False
        c.evals.svm.train_split = c.data.get_ref('train_split')
        c.evals.svm.train_preprocess = detection.voc_spec(c, 'train_split', flip=False)
    return c


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """Table 5 (which layers are fine-tuned) and Table 8 (softmax vs SVMs: one run gives both)."""
    mAP = sweeps.Column('mAP', 'eval.mAP')
    return {
        'table5': sweeps.Sweep(
            title='Detection mAP (%) on VOC 2007 test by the layers fine-tuned (VGG16, 07 trainval)',
            source='Girshick 2015, Table 5', columns=(mAP,),
            runs=(sweeps.Run('fc6 and up (SPPnet)', {'optimizer.frozen': ('^conv',)}, paper={'mAP': 61.4}),
                  sweeps.Run('conv3_1 and up', {}, paper={'mAP': 66.9}),
                  sweeps.Run('conv2_1 and up', {'optimizer.frozen': ('^conv1_',)}, paper={'mAP': 67.2}))),
        'table8': sweeps.Sweep(
            title='Detection mAP (%) on VOC 2007 test, softmax vs post-hoc SVMs (VGG16, 07 trainval)',
            source='Girshick 2015, Table 8', columns=(sweeps.Column('softmax', 'eval.mAP'),
                                                    sweeps.Column('SVM', 'svm.mAP')),
            runs=(sweeps.Run('VGG16 (L)', {}, variant='svm', paper={'softmax': 66.9, 'SVM': 66.8}),)),
    }
