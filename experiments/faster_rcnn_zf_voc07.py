"""Faster R-CNN, ZF Net, PASCAL VOC 2007 (Ren et al. 2015): trained on VOC 2007 trainval, tested on VOC 2007 test —
the network of the paper's ablations (Table 2).

Reproduces: experiments/faster_rcnn_vgg16_voc07.py's recipe with ZF Net's conv1-conv5 as the shared layers (stride
16, the project's ZF Net from ImageNet, all conv layers trained as py-faster-rcnn's ZF prototxts), a 256-wide RPN
conv and 6x6 RoI pooling (sec. 3.1, 4.1); variants '' (approximate joint training) and ':alternating' (4-step).
Paper results (Table 2, VOC 2007 test, 07 trainval): Fast R-CNN ZF on selective search 2000 / 2000: 58.7 (the
':selective_search' variant: the same network's Fast R-CNN part on the selective search cache, no RPN); RPN+ZF
shared (4-step), 300 proposals at test: 59.9; RPN+ZF unshared (4-step stopped after step 2): 58.7 — here the
':alternating' run's frcn1 stage result (`stages.frcn1.eval` in results.json).
Table 2's test-time ablations (on the shared or unshared detector):
  --config.rpn.test_post_nms_top_n=100 / 300 / 1000   proposals per image at test
  --config.rpn.test_objectness=False   no cls layer: N random proposals, no ranking
  --config.rpn.test_regression=False   no reg layer: the anchors as proposals
  --config.rpn.test_nms_iou=1.0 --config.rpn.test_post_nms_top_n=6000   no NMS
(run them with --mode=eval on a trained workdir: these fields only change testing).

Run (VOC placed by hand as in experiments/faster_rcnn_vgg16_voc07.py; a ZF Net trained on ImageNet first):
  python -m convnets.main --config=experiments/zfnet.py --workdir=/tmp/zfnet
  python -m convnets.main --config=experiments/faster_rcnn_zf_voc07.py --workdir=/tmp/faster_rcnn_zf
  python -m convnets.main --config=experiments/faster_rcnn_zf_voc07.py:alternating --workdir=/tmp/faster_rcnn_zf_4step
  python -m convnets.main --config=experiments/faster_rcnn_zf_voc07.py:selective_search --workdir=/tmp/frcn_zf_ss
with the ImageNet weights given by --config.init_from=/tmp/zfnet (and, for :selective_search, the cache of
`python -m convnets.data.make_proposals` given by --config.data.proposals_dir=/tmp/voc_proposals).
Hardware/time: not run here (no VOC, no ImageNet, no GPU).
Sweep 'table2' (Table 2's training rows; the table: `python -m launch.report ROOT`):
  python -m launch.sweep --config=experiments/faster_rcnn_zf_voc07.py --sweep=table2 --workdir=/tmp/frcnn_zf_table2
"""

from convnets import sweeps
from experiments import faster_rcnn


def get_config(variant: str = ''):
    """`variant`: '' (approximate joint training), 'alternating' (the 4-step scheme) or 'selective_search'."""
    return faster_rcnn.voc_experiment('2007', 'zf', variant or 'joint')


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """Table 2's training rows: selective search vs the RPN, shared and unshared (the 4-step run's step 2)."""
    unshared = sweeps.Column('mAP, unshared (step 2)', 'stages.frcn1.eval.mAP')
    return {'table2': sweeps.Sweep(
        title='Detection mAP (%) on VOC 2007 test, ZF Net, 07 trainval',
        source='Ren et al. 2015, Table 2 (training-time rows)', columns=(sweeps.Column('mAP', 'eval.mAP'), unshared),
        runs=(sweeps.Run('SS 2000 + Fast R-CNN', {}, variant='selective_search', paper={'mAP': 58.7}),
              sweeps.Run('RPN+ZF, 4-step', {}, variant='alternating',
                         paper={'mAP': 59.9, 'mAP, unshared (step 2)': 58.7}),
              sweeps.Run('RPN+ZF, approximate joint', {})),
        notes='Table 2\'s test-time rows (100 / 300 / 1000 proposals, no NMS, no cls or reg layer) change only '
              'testing: run them with --mode=eval on the 4-step workdir and the switches in this file\'s docstring.')}
