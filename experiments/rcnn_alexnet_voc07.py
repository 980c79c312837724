"""R-CNN with AlexNet on PASCAL VOC 2007 (Girshick, Donahue, Darrell, Malik 2014): fine-tuning, SVMs, box regression.

Reproduces: R-CNN's "T-Net" rows (Krizhevsky's network, the paper's CaffeNet): selective search proposals (fast
mode, ~2000 per image, cached; `python -m convnets.data.make_proposals`), regions warped to 227x227 with 16
pixels of context and mirrored with p = 0.5 (sec. 2.1, appendix A), fine-tuning of an ImageNet AlexNet with a
21-way softmax on 128-region batches with 32 positives (sec. 2.3: here 2 images x 64 regions, 25% foreground per
image, see convnets/tasks/rcnn.py), lr 0.001 x0.1 every 20k iterations for 70k iterations (the released model
finetune_voc_2007_trainval_iter_70k; pascal_finetune_solver.prototxt: momentum 0.9, weight decay 5e-4 (none on
biases), biases at twice the rate), then per-class SVMs on fc7 with hard negative mining over VOC 2007 trainval
(appendix B), ridge box regression from pool5 (appendix C), per-class NMS 0.3 and VOC 2007 11-point mAP on test.
Images are kept at their original size (the longer side of VOC images is 500 px: a 500 px canvas, scale 1 for
those; other images are scaled so that the longer side is 500) with the ImageNet mean subtracted (the warps'
out-of-image context is then the mean, as the authors' crops).

Paper results (VOC 2007 test mAP; Table 2, appendix B):
  fine-tuned, fc7 + SVMs                  54.2   (this config's `mAP` without box regression: `svm/mAP`)
  fine-tuned, fc7 + SVMs + box regression 58.5   (`mAP` = `svm_bbox_reg/mAP`)
  fine-tuned, fc7, softmax                50.9   (`softmax/mAP`; appendix B)
  fine-tuned, pool5 / fc6 + SVMs          47.3 / 53.1   (--config.evals.val.layer=pool5 / fc6)
  no fine-tuning, pool5 / fc6 / fc7       44.2 / 46.2 / 44.7 (the ImageNet features: train only fc8, one step:
      --config.num_train_steps=1 --config.optimizer.frozen="('conv', 'fc6_', 'fc7_')"
      --config.evals.val.classifiers="('svm',)")
Not run here (a GPU and the VOC 2007 tars are needed); WORKSPACE.md lists them with this command.

Run (an ImageNet AlexNet first: experiments/alexnet.py, or imported weights in a workdir; VOC 2007 tars placed by
hand as experiments/detection.py's voc_data explains; proposals cached once per split):
  python -m convnets.data.make_proposals --data=voc/2007 --split=train+validation --out=/tmp/voc_proposals --workers=16
  python -m convnets.data.make_proposals --data=voc/2007 --split=test --out=/tmp/voc_proposals --workers=16
  python -m convnets.main --config=experiments/rcnn_alexnet_voc07.py --workdir=/tmp/rcnn_alexnet_voc07
with the ImageNet weights and the proposals given by
  --config.init_from=/tmp/alexnet --config.data.proposals_dir=/tmp/voc_proposals
Hardware/time: the paper's fine-tuning and SVM training took about a day on a K20 class GPU; not run here.
Sweep 'table2' (Table 2's AlexNet rows: layer, fine-tuning, SVM / softmax, box regression; the table:
`python -m launch.report ROOT`):
  python -m launch.sweep --config=experiments/rcnn_alexnet_voc07.py --sweep=table2 --workdir=/tmp/rcnn_table2
"""

from convnets import sweeps
from convnets.models import alexnet
from experiments import imagenet, rcnn


def get_config():
    c = rcnn.get_config()
    c.model.name = 'alexnet'
    c.model.num_classes = 21
    c.model.input_size = 227  # Caffe's unpadded conv1 (the same parameters as the 224 network)
    c.model.widths = alexnet.PAPER_WIDTHS  # conv1-conv5: 96, 256, 384, 384, 256 (the ImageNet network's)
    c.model.dropout_rate = 0.5  # kept in fine-tuning (pascal_finetune_train.prototxt: dropout_ratio 0.5)
    c.rcnn.warp_size = 227
    rcnn.voc07_data(c, imagenet.subtract_mean())
    c.init_from = ''  # the ImageNet AlexNet's workdir (required: --config.init_from=DIR)
    c.init_from_skip = ('params/fc8_layer/',)  # the new 21-way classifier
    c.batch_size = 2
    c.eval_batch_size = 2
    c.num_train_steps = 70_000
    c.optimizer.boundaries = (20_000, 40_000, 60_000)  # lr_policy "step", stepsize 20000
    c.optimizer.weight_decay_on = 'kernels'  # the prototxt's weight_decay 0 on biases
    c.optimizer.bias_lr_multiplier = 2.0  # blobs_lr 2 on biases
    c.log_every = '1000 steps'
    c.checkpoint_every = '10000 steps'
    return c


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """Table 2's rows of the AlexNet ("T-Net") network: one run per layer and fine-tuning setting; each run's SVM,
    SVM + box regression and softmax numbers come from its one evaluation."""
    svm, bbox, softmax = (sweeps.Column('SVM', 'eval.svm/mAP'), sweeps.Column('SVM + BB', 'eval.svm_bbox_reg/mAP'),
                          sweeps.Column('softmax', 'eval.softmax/mAP'))
    # No fine-tuning: the ImageNet features, only fc8 trained for one step (the SVMs do not read it).
    frozen = {'num_train_steps': 1, 'optimizer.frozen': ('conv', 'fc6_', 'fc7_')}
    return {'table2': sweeps.Sweep(
        title='Detection mAP (%) on VOC 2007 test, AlexNet features',
        source='Girshick et al. 2014, Table 2 and appendix B (softmax)', columns=(svm, bbox, softmax),
        runs=(sweeps.Run('R-CNN pool5', {**frozen, 'evals.val.layer': 'pool5'}, paper={'SVM': 44.2}),
              sweeps.Run('R-CNN fc6', {**frozen, 'evals.val.layer': 'fc6'}, paper={'SVM': 46.2}),
              sweeps.Run('R-CNN fc7', frozen, paper={'SVM': 44.7}),
              sweeps.Run('R-CNN FT pool5', {'evals.val.layer': 'pool5'}, paper={'SVM': 47.3}),
              sweeps.Run('R-CNN FT fc6', {'evals.val.layer': 'fc6'}, paper={'SVM': 53.1}),
              sweeps.Run('R-CNN FT fc7', {}, paper={'SVM': 54.2, 'SVM + BB': 58.5, 'softmax': 50.9})),
        notes='Box regression always reads pool5 (appendix C); the paper reports it for FT fc7 only.')}
