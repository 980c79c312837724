"""Faster R-CNN, VGG16, PASCAL VOC 2007 + 2012 (Ren et al. 2015): trained on VOC 2007 trainval + VOC 2012 trainval
("07+12", 16551 images), tested on VOC 2007 test.

Reproduces: experiments/faster_rcnn_vgg16_voc07.py's recipe (sec. 3, 4.1; variants '' joint and ':alternating' the
4-step scheme) on the union of the two trainval sets (`convnets_voc0712`, convnets/data/voc0712.py, from the three
official tars). The paper keeps the VOC 2007 schedule in iterations (lr 0.001 for 60k, 0.0001 for 20k).
Paper result: 73.2 mAP (Table 3, "RPN+VGG, shared", 07+12; 4-step training).

Run (the three tars placed by hand, see convnets/data/voc0712.py; the ImageNet weights as in
experiments/faster_rcnn_vgg16_voc07.py):
  python -m convnets.main --config=experiments/faster_rcnn_vgg16_voc0712.py --workdir=/tmp/faster_rcnn_voc0712
  python -m convnets.main --config=experiments/faster_rcnn_vgg16_voc0712.py:alternating --workdir=/tmp/frcnn0712_4step
with the ImageNet weights given by --config.init_from=/tmp/vgg16_in.
Hardware/time: not run here (no VOC, no GPU).
"""

from experiments import faster_rcnn


def get_config(variant: str = ''):
    """`variant`: '' (approximate joint training) or 'alternating' (the 4-step scheme)."""
    return faster_rcnn.voc_experiment('07+12', 'vgg16', variant or 'joint')
