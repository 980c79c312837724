"""ZF Net (Zeiler and Fergus 2013, "Visualizing and understanding convolutional networks").

Reproduces: the network of Fig. 3 / sec. 3 (conv1 96 7x7/2, conv2 256 5x5/2, dense conv3-5, contrast normalisation
across feature maps after the first two pooling layers, dropout 0.5 in fc6/fc7) trained as in sec. 3: images
resized to short side 256, centre 256x256 crop, mean subtracted, one of the 10 sub-crops of 224 (corners + centre,
and their flips) per image and pass; SGD batch 128, momentum 0.9,
lr 0.01 annealed (here: /10 on a validation plateau), weights N(0, 0.01), biases 0, 70 epochs; every conv filter with
RMS above 0.1 renormalised to 0.1 after each update. Test: the paper's 10 sub-crops (corners + centre, flipped).
Deviations, documented: the paper subtracts the per-pixel mean image; we subtract the per-channel mean by default
(use `subtract_mean_image('<mean.npy>')` in the specs for the per-pixel version;
`convnets.data.ops.colour.compute_mean_image` makes the file). No weight decay is stated; we use none.
Paper result (ILSVRC-2012 val, 1 net, Table 2): 38.4% top-1 / 16.5% top-5 error.

Run:
  python -m convnets.main --config=experiments/zfnet.py --workdir=/tmp/zfnet
Hardware/time: 12 days on one GTX 580 in the paper; about a day on one modern GPU. Tiny CPU smoke run: see
experiments/imagenet.py, with --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from experiments import default, imagenet

CENTRE_256 = f'decode(3)|resize_short(256)|center_crop(256)|{imagenet.subtract_mean()}'


def get_config():
    c = imagenet.get_config()
    c.model.name = 'zfnet'
    c.data.train_preprocess = CENTRE_256 + '|random_ten_crop(224)'  # Sec. 3: the 10 sub-crops.
    c.data.eval_preprocess = CENTRE_256 + '|center_crop(224)'
    default.add_test_protocol(c, (CENTRE_256 + '|ten_crop(224)',), crops=True)
    c.batch_size = 128
    c.num_epochs = 70.0
    c.optimizer.learning_rate = 0.01
    c.optimizer.weight_decay = 0.0
    c.optimizer.filter_rms_max = 0.1  # Sec. 3: renormalise conv filters to RMS radius 0.1.
    c.optimizer.schedule = 'plateau'
    c.optimizer.plateau_patience = 3
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c
