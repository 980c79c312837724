"""C3D on Sports-1M (Tran, Bourdev, Fergus, Torresani, Paluri 2015, "Learning Spatiotemporal Features with 3D
Convolutional Networks"), the network whose fc6 is the C3D feature.

Reproduces Sec. 3.3 (Table 2): C3D (convnets/models/c3d.py: 8 convs 3x3x3, 5 pools, fc6/fc7 4096, 487 classes)
trained from scratch on Sports-1M: 16-frame clips resized to 128x171, random 16x112x112 crops (spatial and temporal
jittering) flipped with probability 1/2; mini-batches of 30 clips, SGD lr 0.003 halved every 150K iterations,
stopped at 1.9M iterations (~13 epochs of the paper's 5 random 2-second clips per video). Momentum 0.9 and weight
decay 0.005 (none on biases, biases at twice the rate) are the authors' solver settings (facebook/C3D
conv3d_ucf101_solver.prototxt and train prototxts; the paper does not list them). Testing (Sec. 3.3): one centre
crop per clip, the video's prediction the average over 10 clips (here 10 evenly spaced clips instead of random
ones).

Paper results (Sports-1M test, Table 2): C3D trained from scratch clip hit@1 44.9, video hit@1 60.0, video hit@5
84.4 (C3D fine-tuned from the I380K model: 46.1 / 61.1 / 85.2). Karpathy et al.'s best (slow fusion): video hit@1
60.9 (experiments/video_fusion_sports1m.py). results.json: 'eval' (video-level top1 / top5 = hit@1 / hit@5),
'eval_clip' (clip accuracy of the central clip).

Data: Sports-1M has no TFDS builder (YouTube links). Extract each video's frames (e.g. `ffmpeg -i VIDEO -vf
scale=171:128 DIR/%06d.jpg`) into <root>/<split>/<class>/<video_id>/ and prepare them once with the
convnets_video_folder builder (convnets/data/video_folder.py; --config.data.manual_dir=<root>); or register
your own TFDS builder with {'video': Video([T, H, W, 3]), 'label': ClassLabel(487)} and pass its name as
--config.data.name=NAME

Run:
  python -m convnets.main --config=experiments/c3d_sports1m.py --workdir=/tmp/c3d_sports1m \
    --config.data.manual_dir=/data/sports1m_frames --config.data.data_dir=/data/tfds_sports1m
Hardware/time: the paper does not say; ~1.9M steps of 30 clips is weeks on one GPU. Not run here (no data, no GPU).
The UCF101 fc6 + SVM protocol on this run's checkpoint: experiments/c3d_ucf101_svm.py.
"""

from convnets.models import c3d
from experiments import default, video


def get_config():
    c = default.get_config()
    c.model.name = 'c3d'
    c.model.num_classes = video.SPORTS1M_CLASSES
    c.model.widths = c3d.PAPER_WIDTHS  # conv1a-conv5b: 64, 128, 256, 512, 512
    c.model.fc_features = 4096
    c.data.name = video.SPORTS1M_DATASET
    c.data.train_split = 'train'
    c.data.eval_split = 'test'
    c.data.train_preprocess = video.c3d_train_spec()
    c.data.eval_preprocess = video.c3d_clip_spec()
    video.video_eval(c, video.c3d_video_spec(video.C3D_SPORTS1M_TEST_CLIPS))
    c.batch_size = 30
    c.eval_batch_size = 30
    c.resources.accelerators_per_node = 2  # 30 clips per mini-batch: 15 per GPU
    c.num_train_steps = 1_900_000
    c.optimizer.learning_rate = 0.003
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 0.005
    c.optimizer.weight_decay_on = 'kernels'  # weight_decay 0 on biases (prototxt)
    c.optimizer.bias_lr_multiplier = 2.0  # blobs_lr 2 on biases (prototxt)
    c.optimizer.schedule = 'exponential'  # x0.5 every 150K iterations (staircase)
    c.optimizer.decay_factor = 0.5
    c.optimizer.decay_every = 150_000
    c.optimizer.boundary_unit = 'steps'
    c.log_every = '1000 steps'
    c.checkpoint_every = '10000 steps'
    c.evals.val.every = '50000 steps'
    return c
