"""The time-fusion networks of Karpathy, Toderici, Shetty, Leung, Sukthankar, Fei-Fei (2014), "Large-scale Video
Classification with Convolutional Neural Networks", on Sports-1M (487 classes).

Reproduces Table 1 (Sec. 4.1): the single-frame tower and its extensions in time (convnets/models/video_fusion.py,
Sec. 2.1-2.2): variants ':single_frame' (one frame), ':early_fusion' (conv1 spans 10 frames), ':late_fusion' (two
towers on frames 15 apart, merged in fc6), '' or ':slow_fusion' (temporal extents 4, 2, 2 at stride 2 in
conv1-conv3 over 10 frames) and ':multires' (fovea + context streams of 89x89 from 178x178 frames; one frame).
Preprocessing (Sec. 3.1): the centre square of every frame resized to 200x200, a random 170x170 crop (178 for
multires), flipped with probability 1/2, 117 subtracted from every pixel. Optimisation (Sec. 3.2): the paper trains
with Downpour SGD over a cluster (mini-batches of 32 clips per replica), momentum 0.9, weight decay 5e-4, lr 1e-3
reduced by hand when the validation error stops improving (here: schedule 'plateau', x0.1 after 2 evaluations
without improvement, evaluated every 20,000 steps), about a month of training (no step count given: 2M steps here).
Testing (Sec. 4.1): 20 clips per video averaged (the paper also averages 4 crops/flips of each clip; here one
centre crop).

Paper results (Table 1, Sports-1M test; video hit@1 / hit@5 / clip hit@1): single frame 59.3 / 77.7 / 41.1;
single frame multires 60.0 / 78.5 / 42.4; early fusion 57.7 / 76.8 / 40.7; late fusion 59.3 / 78.7 / 40.7; slow
fusion 60.9 / 80.2 / 41.9; CNN average (single + early + late + slow) 63.9 / 82.4 / 41.4; feature histograms +
neural net 55.3 video hit@1. results.json: 'eval' (video-level top1 / top5), 'eval_clip' (the central clip).

Data: as experiments/c3d_sports1m.py (frames prepared with the convnets_video_folder builder, or your own builder).

Run:
  python -m convnets.main --config=experiments/video_fusion_sports1m.py --workdir=/tmp/slow_fusion \
    --config.data.manual_dir=/data/sports1m_frames --config.data.data_dir=/data/tfds_sports1m
  python -m convnets.main --config=experiments/video_fusion_sports1m.py:single_frame --workdir=/tmp/single_frame
Hardware/time: the paper's models trained for about a month on a cluster; not run here (no data, no GPU).
The moving-digits version of this comparison runs on a CPU: experiments/video_quickstart.py.
"""

from convnets.models import video_fusion
from experiments import default, video

VARIANTS = {'': 'slow', 'slow_fusion': 'slow', 'single_frame': 'single', 'early_fusion': 'early',
            'late_fusion': 'late', 'multires': 'multires'}


def fusion_config(fusion: str, num_classes: int) -> default.config_dict.ConfigDict:
    """The network, clip length and specs of one fusion model (shared with experiments/video_fusion_ucf101.py)."""
    c = default.get_config()
    c.model.name = video_fusion.NAMES[fusion]
    c.model.num_classes = num_classes
    c.model.widths = video_fusion.PAPER_WIDTHS  # conv1-conv5: 96, 256, 384, 384, 256 (Sec. 2.1)
    c.model.fc_features = 4096
    frames, size = video_fusion.PAPER_INPUT[fusion]
    c.data.train_preprocess = video.fusion_train_spec(frames, crop=size)
    c.data.eval_preprocess = (f"rename('video', 'image')|temporal_crop({frames})|resize_short({video.FUSION_RESIZE})"
                              f"|center_crop({size})|subtract_mean({video.FUSION_MEAN})")
    video.video_eval(c, video.fusion_video_spec(frames, crop=size))
    c.batch_size = 32
    c.eval_batch_size = 32
    c.optimizer.learning_rate = 1e-3
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.schedule = 'plateau'  # "reduced by hand" when the validation error stops improving
    c.optimizer.plateau_metric = 'val/top1_error'
    c.optimizer.plateau_patience = 2
    c.optimizer.decay_factor = 0.1
    return c


def get_config(variant: str = ''):
    """`variant`: '' or 'slow_fusion', 'single_frame', 'early_fusion', 'late_fusion', 'multires'."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r} of video_fusion_sports1m: use one of {tuple(VARIANTS)}')
    c = fusion_config(VARIANTS[variant], video.SPORTS1M_CLASSES)
    c.data.name = video.SPORTS1M_DATASET
    c.data.train_split = 'train'
    c.data.eval_split = 'test'
    c.num_train_steps = 2_000_000
    c.log_every = '1000 steps'
    c.checkpoint_every = '10000 steps'
    c.evals.val.every = '20000 steps'
    return c
