"""Transfer of Karpathy et al.'s (2014) slow-fusion network from Sports-1M to UCF101 (Sec. 5, Table 3).

Reproduces Table 3: the slow-fusion network (convnets/models/video_fusion.py) trained on Sports-1M
(experiments/video_fusion_sports1m.py), then on UCF101 with a new 101-way classifier, in four ways (variants):
  ':top1'      fine-tune the top layer only: the network is a fixed feature extractor (everything but fc8 frozen)
  '' / ':top3' fine-tune the top 3 layers (fc6, fc7 and the new fc8; the convs frozen), the paper's best
  ':all'       fine-tune every layer
  ':scratch'   train the whole network on UCF101 from a random initialisation (no --config.init_from)
Preprocessing and testing as on Sports-1M (Sec. 3.1, 4.1): 170x170 crops of the 200x200 centre square, flips,
minus 117; 20 clips per video averaged. The paper does not give the fine-tuning rates; lr 1e-3 (its Sports-1M
rate), momentum 0.9, weight decay 5e-4, x0.1 on plateau, 30 epochs are this project's choice.

Paper results (Table 3, UCF101 3-fold accuracy): from scratch 41.3, fine-tune top layer 64.1, top 3 layers 65.4,
all layers 62.2. results.json: 'eval' (video-level accuracy on test split 1; the paper averages the 3 splits: run
with ucf101/ucf101_2 and ucf101_3 too, --config.data.name=ucf101/ucf101_2).

Run (a Sports-1M slow-fusion run first):
  python -m convnets.main --config=experiments/video_fusion_ucf101.py --workdir=/tmp/ucf101_top3 \
    --config.init_from=/tmp/slow_fusion
  python -m convnets.main --config=experiments/video_fusion_ucf101.py:scratch --workdir=/tmp/ucf101_scratch
Hardware/time: not run here (no data, no GPU).
"""

from experiments import video, video_fusion_sports1m

# Trained layers per variant (Sec. 5); everything else is frozen (optimizer.frozen regexes of parameter paths).
FROZEN = {'top1': ('^tower/', '^fc6_', '^fc7_'), 'top3': ('^tower/',), 'all': (), 'scratch': ()}  # tower: conv1-5
VARIANTS = ('', *FROZEN)


def get_config(variant: str = ''):
    """`variant`: '' or 'top3', 'top1', 'all', 'scratch'."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r} of video_fusion_ucf101: use one of {VARIANTS}')
    variant = variant or 'top3'
    c = video_fusion_sports1m.fusion_config('slow', video.UCF101_CLASSES)
    video.ucf101_data(c, split_number=1)
    if variant != 'scratch':
        c.init_from = ''  # the Sports-1M slow-fusion run's workdir (required: --config.init_from=DIR)
        c.init_from_skip = ('params/fc8_layer/',)  # the new 101-way classifier
    c.optimizer.frozen = FROZEN[variant]
    c.num_epochs = 30.0  # with fusion_config's plateau schedule (x0.1 after 2 evaluations without progress)
    c.log_every = '100 steps'
    c.checkpoint_every = '2 epochs'
    c.evals.val.every = '2 epochs'
    return c
