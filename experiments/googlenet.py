"""GoogLeNet (Szegedy et al. 2014, "Going deeper with convolutions"), the paper's network.

Reproduces: Table 1's 22-layer network (LRN stem, nine Inception v1 modules with 5x5 branches, global average pool,
dropout 0.4) with the two auxiliary classifiers on 4a and 4d, their losses added with weight 0.3 in training only
(sec. 5), trained as in sec. 6: crops of 8-100% of the image area with aspect ratio in [3/4, 4/3], photometric
distortions, flips; SGD momentum 0.9, learning rate decreased by 4% every 8 epochs, Polyak averaging of the
parameters for the evaluated model. Test (sec. 7): 144 crops per image (4 scales x 3 squares x 6 crops x 2 flips),
softmax averaged. Our choices where the paper is silent: base rate 0.04 at batch 256 (Caffe's bvlc_googlenet uses
0.01 at batch 32), weight decay 2e-4 (as bvlc_googlenet), 60 epochs, EMA decay 0.9999.
Paper result (ILSVRC-2014, 1 model): 10.07% top-5 error with 1 crop, 7.89% with 144 crops (Table 3).

Run:
  python -m convnets.main --config=experiments/googlenet.py --workdir=/tmp/googlenet
Hardware/time: "a few high-end GPUs within a week" in the paper; about a day on 8 modern GPUs. Tiny CPU smoke run:
see experiments/imagenet.py, with --config.batch_size=8 --config.num_train_steps=2 --config.eval_batch_size=8
"""

from experiments import default, imagenet

MEAN = imagenet.subtract_mean()


def crops_144() -> tuple[str, ...]:
    """Sec. 7: one view per scale (256, 288, 320, 352), each giving 3 squares x 6 crops x 2 flips = 36 crops."""
    return tuple(f'decode(3)|{MEAN}|googlenet_crops(224, {q})' for q in (256, 288, 320, 352))


def get_config():
    c = imagenet.get_config()
    c.model.name = 'googlenet'
    c.model.aux_heads = True
    c.aux_loss_weight = 0.3  # Sec. 5: auxiliary losses weighted by 0.3, discarded at inference.
    c.ema_decay = 0.9999  # Sec. 6: Polyak averaging for the final model.
    c.data.train_preprocess = f'decode(3)|inception_crop(224)|flip_lr|photometric_distort|{MEAN}'
    c.data.eval_preprocess = f'decode(3)|resize_short(256)|center_crop(224)|{MEAN}'
    default.add_test_protocol(c, crops_144(), crops=True)
    c.batch_size = 256
    c.num_epochs = 60.0
    c.optimizer.learning_rate = 0.04
    c.optimizer.weight_decay = 2e-4
    c.optimizer.schedule = 'exponential'  # Sec. 6: "decreasing the learning rate by 4% every 8 epochs".
    c.optimizer.decay_factor = 0.96
    c.optimizer.decay_every = 8.0
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c
