"""AlexNet (Krizhevsky, Sutskever, Hinton 2012, "ImageNet classification with deep convolutional neural networks").

Reproduces: the two-tower network of sec. 3 (grouped conv2/4/5, LRN after conv1/conv2, overlapping 3x3/2 pooling,
dropout 0.5 before fc6/fc7) trained as in sec. 4-5: 256x256 images, random 224 crops + flips, PCA colour
augmentation (alpha ~ N(0, 0.1)), mean subtraction; SGD batch 128, momentum 0.9, weight decay 5e-4 inside the
velocity (v <- 0.9 v - 0.0005 lr w - lr g), lr 0.01 divided by 10 when the validation error stops improving,
~90 epochs; init N(0, 0.01), biases 1 in conv2/4/5 and fc6/fc7. Test: 10 crops (4 corners + centre, and flips),
softmax averaged.
Paper result (ILSVRC-2012 val, 1 CNN, 10-crop): 40.7% top-1 / 18.2% top-5 error.

Run:
  python -m convnets.main --config=experiments/alexnet.py --workdir=/tmp/alexnet
Hardware/time: the paper trained 5-6 days on two GTX 580s; expect roughly a day on one modern GPU, where JPEG
decoding (tf.data on the host CPUs) is usually the limit. Tiny CPU smoke run (any ImageNet-format data, e.g.
imagenette, see experiments/imagenet.py): --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from experiments import default, imagenet

EVAL_CROPS = f'decode(3)|resize((256, 256))|{imagenet.subtract_mean()}'


def get_config():
    c = imagenet.get_config()
    c.model.name = 'alexnet'
    c.model.towers = 2
    c.model.lrn = True
    c.model.overlapping_pool = True
    c.model.input_size = 224  # Sec. 3.5's 224 (conv1 padded by 2); 227 gives Caffe's unpadded variant.
    # Sec. 2: images down-sampled to 256x256; sec. 4.1: random 224 patches, reflections, PCA colour noise.
    c.data.train_preprocess = ('decode(3)|resize((256, 256))|random_crop(224)|flip_lr|pca_lighting(0.1)|'
                               + imagenet.subtract_mean())
    c.data.eval_preprocess = EVAL_CROPS + '|center_crop(224)'  # Periodic evaluation: the centre crop.
    # Sec. 4.1: ten patches, softmax averaged.
    default.add_test_protocol(c, (EVAL_CROPS + '|ten_crop(224)',), crops=True)
    c.batch_size = 128
    c.num_epochs = 90.0
    c.optimizer.learning_rate = 0.01
    c.optimizer.velocity = 'lr_inside'  # Sec. 5: the paper's update, weight decay inside the velocity.
    c.optimizer.schedule = 'plateau'  # Sec. 5: /10 when the validation error stopped improving (3 times).
    c.optimizer.plateau_patience = 3  # Evaluations (epochs) without improvement: our choice, the paper gives none.
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c
