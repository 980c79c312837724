"""R-CNN with VGG16 on PASCAL VOC 2007 (Girshick et al. 2014, Table 3 "O-Net": Simonyan and Zisserman's 16-layer
network in place of AlexNet).

Reproduces: experiments/rcnn_alexnet_voc07.py with the ImageNet VGG16 (torchvision's, imported: RGB normalised by
the ImageNet mean and std, so the out-of-image context is again the mean) fine-tuned on 224x224 warps (VGG16's
input; rbgirshick/rcnn's VGG16 model uses a 224 crop) with the same solver, SVMs on fc7 and box regression from
pool5 (7x7x512).

Paper results (VOC 2007 test mAP, Table 3):
  O-Net (VGG16) R-CNN            62.2   (`svm/mAP`)
  O-Net (VGG16) R-CNN + BB       66.0   (`mAP` = `svm_bbox_reg/mAP`)
  T-Net (AlexNet), for reference 54.2 / 58.5 (experiments/rcnn_alexnet_voc07.py)
The paper notes the 16-layer network's forward pass is about 7 times slower than AlexNet's. Not run here (a GPU
and the VOC 2007 tars are needed); WORKSPACE.md lists it with this command.

Run (one-off steps as in experiments/rcnn_alexnet_voc07.py; the VGG16 weights imported once):
  python -m convnets.weights.import --from=torchvision --model=vgg16 --file=vgg16-397923af.pth --workdir=/tmp/vgg16_in
  python -m convnets.main --config=experiments/rcnn_vgg16_voc07.py --workdir=/tmp/rcnn_vgg16_voc07
with the ImageNet weights and the proposals given by
  --config.init_from=/tmp/vgg16_in --config.data.proposals_dir=/tmp/voc_proposals
"""

from convnets.models import vgg
from experiments import detection, rcnn


def get_config():
    c = rcnn.get_config()
    c.model.name = 'vgg16'
    c.model.num_classes = 21
    c.model.input_size = 224
    c.model.stage_widths = vgg.STAGE_WIDTHS  # the ImageNet network's (64, 128, 256, 512, 512) and fc 4096
    c.model.fc_features = 4096
    c.rcnn.warp_size = 224
    rcnn.voc07_data(c, detection.VGG16_VALUE_OPS)
    c.init_from = ''  # the imported VGG16 (required: --config.init_from=DIR)
    c.init_from_skip = ('params/fc8_layer/',)
    c.batch_size = 2
    c.eval_batch_size = 2
    c.num_train_steps = 70_000
    c.optimizer.boundaries = (20_000, 40_000, 60_000)
    c.optimizer.weight_decay_on = 'kernels'
    c.optimizer.bias_lr_multiplier = 2.0
    c.log_every = '1000 steps'
    c.checkpoint_every = '10000 steps'
    return c
