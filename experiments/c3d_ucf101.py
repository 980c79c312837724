"""3D ConvNets trained from scratch on UCF101: the kernel temporal-depth search of C3D (Tran et al. 2015, Sec. 3.1,
3.2, Fig. 2), and C3D itself.

Reproduces Fig. 2: the common net of Sec. 3.1 (convnets/models/c3d.py `c3d_search`: 5 convs of 64, 128, 256, 256,
256 maps, 5 max pools (pool1 1x2x2, the others 2x2x2), fc6/fc7 2048 with dropout 0.5; 17.4M parameters) with the
temporal depth of its conv kernels set per group. Variants: '' = depth-3 (every layer 3x3x3), ':depth1', ':depth5',
':depth7', ':increasing' (3-3-5-5-7), ':decreasing' (7-5-5-3-3), and ':c3d' (the 8-conv C3D, Sec. 3.3, from
scratch; no paper number). The depths are one switch as well, e.g. --config.model.temporal_depths="(1, 1, 1, 1, 1)",
and one sweep: get_sweeps()['depth'].

Recipe (Sec. 3.1): UCF101 train split 1, frames resized to 128x171, random 16x112x112 crops, flips; mini-batches
of 30 clips, SGD lr 0.003 divided by 10 every 4 epochs, stopped after 16 epochs. The paper's epoch is a pass over
the list of training clips (the authors' data layer reads clip lists; ~11 clips of 16 frames per UCF101 video of
186 frames on average), while an epoch here samples one random clip per video: 16 paper epochs are 176 of ours,
the rate /10 after 44, 88 and 132 (the authors' solver, conv3d_ucf101_solver.prototxt, says 60K iterations with
/10 every 20K: about the same length). Momentum 0.9, weight decay 0.005 on weights only, biases at twice the rate:
the authors' solver and train prototxt (not in the paper).

Paper results (Fig. 2, clip accuracy on UCF101 test split 1, read off the plot): depth-3 best of the homogeneous
nets (~0.45 after 16 epochs), depth-1 clearly worst (~0.40); increasing and decreasing a little below depth-3.
results.json: 'eval_clip' (clip accuracy: the central 16 frames of each test video, Fig. 2's measure) and 'eval'
(video accuracy: 32 clips per video at stride 8 averaged).

Run:
  python -m convnets.main --config=experiments/c3d_ucf101.py --workdir=/tmp/c3d_ucf101_depth3
  python -m convnets.main --config=experiments/c3d_ucf101.py:depth1 --workdir=/tmp/c3d_ucf101_depth1
Fig. 2 as a sweep (all six settings; the table: `python -m launch.report /tmp/c3d_depth`):
  python -m launch.sweep --config=experiments/c3d_ucf101.py --sweep=depth --workdir=/tmp/c3d_depth
UCF101 comes through TFDS (ucf101/ucf101_1: a 6.5 GB download, and ffmpeg on PATH to decode the videos;
convnets/data/ucf101.py says what to place where on an offline machine). Hardware/time: not run here (no GPU).
"""

from convnets import sweeps
from convnets.models import c3d
from experiments import default, video

SEARCH_VARIANTS = {'': 'depth-3', 'depth1': 'depth-1', 'depth3': 'depth-3', 'depth5': 'depth-5',
                   'depth7': 'depth-7', 'increasing': 'increasing', 'decreasing': 'decreasing'}
VARIANTS = (*SEARCH_VARIANTS, 'c3d')
PAPER_EPOCHS = 16
CLIPS_PER_VIDEO = 11  # 16-frame clips in an average UCF101 video (186 frames): one paper epoch = 11 of ours


def get_config(variant: str = ''):
    """`variant`: '' (depth-3), 'depth1', 'depth5', 'depth7', 'increasing', 'decreasing' or 'c3d'."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r} of c3d_ucf101: use one of {VARIANTS}')
    c = default.get_config()
    if variant == 'c3d':
        c.model.name = 'c3d'
        c.model.widths = c3d.PAPER_WIDTHS
        c.model.fc_features = 4096
    else:
        c.model.name = 'c3d_search'  # Sec. 3.1's net: one conv per group
        c.model.temporal_depths = c3d.TEMPORAL_DEPTH_SETTINGS[SEARCH_VARIANTS[variant]]
        c.model.widths = c3d.SEARCH_NET['widths']
        c.model.fc_features = c3d.SEARCH_NET['fc_features']
    video.ucf101_data(c, split_number=1)
    c.data.train_preprocess = video.c3d_train_spec()
    c.data.eval_preprocess = video.c3d_clip_spec()
    video.video_eval(c, video.c3d_video_spec(video.UCF101_MAX_CLIPS, video.C3D_FEATURE_STRIDE))
    c.batch_size = 30
    c.eval_batch_size = 30
    c.resources.accelerators_per_node = 2  # 30 clips per mini-batch: 15 per GPU
    c.num_epochs = float(PAPER_EPOCHS * CLIPS_PER_VIDEO)
    c.optimizer.learning_rate = 0.003
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 0.005
    c.optimizer.weight_decay_on = 'kernels'
    c.optimizer.bias_lr_multiplier = 2.0
    c.optimizer.schedule = 'step'
    c.optimizer.boundaries = tuple(float(4 * k * CLIPS_PER_VIDEO) for k in (1, 2, 3))  # /10 every 4 paper epochs
    c.optimizer.decay_factor = 0.1
    c.log_every = '100 steps'
    c.checkpoint_every = '4 epochs'
    c.evals.val.every = f'{CLIPS_PER_VIDEO} epochs'  # once per paper epoch, as Fig. 2 plots
    return c


def get_sweeps() -> dict[str, sweeps.Sweep]:
    """Fig. 2 as one sweep: the six temporal-depth settings on the Sec. 3.1 net (overrides of the '' config)."""
    # Fig. 2 prints no numbers; the two read off its plot (clip accuracy after 16 epochs) are approximate.
    read_off = {'depth-3': 45.0, 'depth-1': 40.0}
    return {'depth': sweeps.Sweep(
        title='Clip accuracy (%) on UCF101 test split 1, by temporal kernel depth',
        source='Tran et al. 2015, Fig. 2 (values read off the plot)',
        columns=(sweeps.Column('clip acc.', 'eval_clip.top1'), sweeps.Column('video acc.', 'eval.top1')),
        runs=tuple(sweeps.Run(name, {'model.temporal_depths': depths},
                              paper={'clip acc.': read_off[name]} if name in read_off else {})
                   for name, depths in c3d.TEMPORAL_DEPTH_SETTINGS.items()),
        notes='Fig. 2 plots clip accuracy only: depth-3 best of the homogeneous nets, depth-1 clearly worst, '
              'increasing and decreasing a little below depth-3.')}
