"""Faster R-CNN quickstart: a small Faster R-CNN (Ren et al. 2015) trained from scratch on the embedded digit scenes.

Reproduces: the Region Proposal Network end to end on data that needs no download: anchors of several scales and
ratios at every feature position, the 256-anchor minibatch (IoU >= 0.7 / best anchor positive, < 0.3 negative,
boundary anchors ignored), eq. 1's loss, proposals by NMS 0.7, and the Fast R-CNN head on those proposals, trained
together by approximate joint training (sec. 3.2); tested with the RPN's proposals, per-class NMS 0.3 and VOC 2007
11-point mAP on held-out scenes. The Fast R-CNN quickstart (experiments/fast_rcnn_quickstart.py) is the same
detector on fixed grid proposals: the pair shows what learned proposals change.
Deviations for a CPU: the quickstart Fast R-CNN body (VGG-A-shaped, 3 stages of 32-64-128 maps, stride 4, from
scratch with He initialisation, 256-wide fc layers without dropout, 5x5 RoIs); anchors sized for digits (12-46 px,
ratios 1 and 1.6) instead of 128-512 px; a 128-wide RPN conv; fewer proposals (2000 / 300 pre / post NMS in
training, 1000 / 100 at test) for 128 px images; min_size 4 px. The run also writes the RPN's proposal recall (Fig. 4)
for 10 / 50 / 100 proposals per scene.

Run:
  python -m convnets.main --config=experiments/faster_rcnn_quickstart.py --workdir=/tmp/faster_rcnn_quickstart
The 4-step alternating training instead (sec. 3.2; four stages of 750 steps, the RPN's proposals of every scene
cached between steps 1 and 2):
  python -m convnets.main --config=experiments/faster_rcnn_quickstart.py:alternating --workdir=/tmp/frcnn_qs_4step
Hardware/time and the measured mAP: WORKSPACE.md.
"""

from experiments import detection, fast_rcnn_quickstart, faster_rcnn


def get_config(variant: str = ''):
    """`variant`: '' (approximate joint training) or 'alternating' (the 4-step scheme, 750 steps per stage)."""
    if variant not in ('', 'alternating'):
        raise ValueError(f"unknown variant {variant!r} of the Faster R-CNN quickstart: use '' or 'alternating'")
    c = fast_rcnn_quickstart.get_config()
    c.task = 'faster_rcnn'
    c.model.name = 'faster_rcnn'
    c.model.rpn_channels = 128
    c.model.anchor_sizes = (12.0, 17.0, 24.0, 34.0, 46.0)  # the scenes' digit sizes (the grid proposals' sizes)
    c.model.anchor_ratios = (1.0, 1.6)  # height : width, as the grid proposals
    c.detection.proposals = 'rpn'
    c.detection.bg_iou_low = 0.0
    c.rpn = faster_rcnn.rpn_config()
    c.rpn.min_size = 4.0
    c.rpn.train_pre_nms_top_n = 2000
    c.rpn.train_post_nms_top_n = 300
    c.rpn.test_pre_nms_top_n = 1000
    c.rpn.test_post_nms_top_n = 100
    # Fig. 4 on the held-out scenes: recall vs IoU of the RPN's 10 / 50 / 100 best proposals (plots under
    # <workdir>/proposals/proposals/).
    c.evals.proposals = detection.proposal_recall_eval('rpn')
    c.evals.proposals.counts = (10, 50, 100)
    c.evals.proposals.pre_nms_top_n = 0  # rpn.test_pre_nms_top_n
    c.evals.proposals.post_nms_top_n = 300
    if variant == 'alternating':
        c.data.proposals_dir = ''
        c.data.max_proposals = 300

        def spec(split_field: str) -> str:
            return ('decode(3)|objects_to_boxes|' + detection.proposals_op(c, split_field)
                    + f'|pad_to(128)|pad_boxes({fast_rcnn_quickstart.DIGITS_MAX})|value_range(-1, 1)')

        # Same number of steps per stage as the joint run has in all; the lr drop near each stage's end.
        faster_rcnn.alternating(c, rpn_steps=(625, 750), frcn_steps=(625, 750),
                                train_split_preprocess=c.data.eval_preprocess,
                                frcn_train_preprocess=spec('train_split'), frcn_eval_preprocess=spec('eval_split'),
                                frcn_batch_keys=(*c.data.batch_keys, 'proposals', 'proposal_mask'))
    return c
