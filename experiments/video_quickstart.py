"""Video quickstart: why video needs time in the network (Karpathy et al. 2014; Tran et al. 2015), on the embedded
moving digits (convnets/data/moving_digits.py: a digit drifting on a wrap-around canvas; the label is the
direction of motion, which no single frame carries: the best single-frame accuracy is chance, 25%).

Reproduces, at CPU size, the comparison behind both papers: a single-frame network (Karpathy et al. sec. 2.1, its
prediction averaged over the clip's frames) cannot learn the label; networks whose convolutions span time do:
C3D's 3x3x3 kernels (Tran et al. sec. 3) and slow fusion's growing temporal extents (Karpathy et al. sec. 2.1).
Variants: '' = C3D, ':single_frame', ':slow_fusion', ':early_fusion'. Clips of 10 frames (slow and early fusion
span 10), 28x28 random crops in training (the same crop for every frame), the central 10 frames uncropped at test
(32x32 through the same networks); no flips (a mirrored clip moves the other way: the label would change).
Evaluation per video as in both papers: the softmax of 4 clips of each test video (starts 0, 2, 4, 6) averaged
('eval' in results.json); 'eval_clip' is the central clip alone (clip accuracy).
Deviations for a CPU: narrow networks (widths 16-64, fc 128), 12 epochs, SGD with momentum.

Run:
  python -m convnets.main --config=experiments/video_quickstart.py --workdir=/tmp/video_quickstart
  python -m convnets.main --config=experiments/video_quickstart.py:single_frame --workdir=/tmp/video_single
Hardware/time and the measured accuracies: WORKSPACE.md.
"""

from experiments import default, video

VARIANTS = {'': 'c3d', 'c3d': 'c3d', 'single_frame': 'video_single_frame', 'slow_fusion': 'video_slow_fusion',
            'early_fusion': 'video_early_fusion'}
FRAMES = 10


def get_config(variant: str = ''):
    """`variant`: '' or 'c3d' (C3D), 'single_frame', 'slow_fusion', 'early_fusion'."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown variant {variant!r} of the video quickstart: use one of {tuple(VARIANTS)}')
    c = default.get_config()
    c.model.name = VARIANTS[variant]
    c.model.num_classes = 4  # left, right, up, down
    c.model.widths = (16, 32, 64, 64, 64)
    c.model.fc_features = 128
    c.model.dropout_rate = 0.0
    if c.model.name == 'c3d':
        c.model.weight_init = 'he'  # from scratch on narrow layers (the paper's fillers pass no signal there)
    c.data.name = 'convnets_moving_digits'
    c.data.cache = True  # 2,000 clips of 16 x 32 x 32 bytes
    c.data.train_preprocess = (f"rename('video', 'image')|random_temporal_crop({FRAMES})|random_crop(28)"
                               "|value_range(-1, 1)")
    c.data.eval_preprocess = f"rename('video', 'image')|temporal_crop({FRAMES})|value_range(-1, 1)"
    video.video_eval(c, f"rename('video', 'image')|value_range(-1, 1)|video_clips({FRAMES}, 4, 2)")
    c.batch_size = 32
    c.num_epochs = 12.0
    c.optimizer.learning_rate = 0.01
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 5e-4
    c.optimizer.warmup_steps = 50
    c.optimizer.schedule = 'cosine'
    c.log_every = '50 steps'
    c.evals.val.every = '4 epochs'
    c.checkpoint_every = '4 epochs'
    return c
