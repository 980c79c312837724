"""Fast R-CNN, VGG16, trained on PASCAL VOC 2007 + 2012 trainval ("07+12", 16,551 images), tested on VOC 2007 test.

Reproduces: experiments/fast_rcnn_vgg16_voc07.py (the recipe, its sources and switches) on the larger training set
of sec. 5.3 ("Do we need more training data?"): 60k mini-batch iterations instead of 40k. The paper does not say
where the rate drops for 60k; we keep the VOC 2007 recipe's last 10k iterations at 0.0001 (drop at 50k).
The data: `convnets_voc0712` (convnets/data/voc0712.py), made from the three official tars VOCtrainval_06-Nov-2007,
VOCtest_06-Nov-2007 and VOCtrainval_11-May-2012 placed in <data_dir>/downloads/manual (VOC 2012's test tar is not
needed).
Paper result: 70.0 mAP on VOC 2007 test (Table 1, "FRCN [ours]", 07+12), from 66.9 with 07 alone.

Run:
  python -m convnets.weights.import --from=torchvision --model=vgg16 --file=vgg16-397923af.pth --workdir=/tmp/vgg16_in
  python -m convnets.data.make_proposals --data=convnets_voc0712 --split=trainval --out=/tmp/voc_proposals --workers=16
  python -m convnets.data.make_proposals --data=convnets_voc0712 --split=test --out=/tmp/voc_proposals --workers=16
  python -m convnets.main --config=experiments/fast_rcnn_vgg16_voc0712.py --workdir=/tmp/fast_rcnn_voc0712
with the ImageNet weights and the proposals given by
  --config.init_from=/tmp/vgg16_in --config.data.proposals_dir=/tmp/voc_proposals
(The authors' proposals: --from_mat=selective_search_data/voc_2007_trainval.mat
--from_mat=selective_search_data/voc_2012_trainval.mat for the trainval split, voc_2007_test.mat for test.)
Hardware/time: not run here (about 1.5x the VOC 2007 run).
"""

from experiments import fast_rcnn_vgg16_voc07


def get_config(variant: str = ''):
    """`variant`: as experiments/fast_rcnn_vgg16_voc07.py ('' or 'multiscale')."""
    return fast_rcnn_vgg16_voc07.build('07+12', steps=60_000, lr_drop=50_000, variant=variant)
