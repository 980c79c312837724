"""C3D features + a linear SVM on UCF101 (Tran et al. 2015, Sec. 3.3 "C3D video descriptor" and Sec. 4 "Action
recognition", Table 3): the Sports-1M C3D as a fixed feature extractor.

Reproduces Table 3's "C3D (1 net)" row: every 16-frame clip of a video with an 8-frame overlap goes through the
Sports-1M C3D (experiments/c3d_sports1m.py); the fc6 activations (after ReLU: the authors' extractor reads the
in-place relu6 output) are averaged over the video's clips and L2-normalised; a linear SVM (scikit-learn's
LinearSVC, C = 1: the paper gives no C) is trained on the train split's videos and tested on the test split's
(the 'clip_svm' evaluator, convnets/evaluate/clip_svm.py). Clips: 16 frames resized to 128x171, the centre
112x112 crop; at most 32 clips per video (every clip of videos up to 264 frames; 32 evenly spaced ones of longer
videos; see experiments/video.py).

Nothing is trained: every parameter is frozen (optimizer.frozen) and the run makes the one step the loop needs
before its final evaluations, which leaves the Sports-1M weights unchanged; --config.init_from names the Sports-1M
run (or imported C3D weights in a workdir). The same evaluation also runs on the Sports-1M run's own workdir with
--mode=eval (results in its eval_results.json).

Paper results (UCF101, Sec. 4, Table 3): C3D (1 net) + linear SVM 82.3%; C3D (3 nets) 85.2%; C3D (3 nets) + iDT
90.4% (the 3 nets' descriptors are concatenated; not built here). Table 3 averages the three splits; switch with
--config.data.name=ucf101/ucf101_2 (or ucf101_3). results.json: 'eval' (top1 = video accuracy of the SVM).

Run (the Sports-1M C3D first):
  python -m convnets.main --config=experiments/c3d_ucf101_svm.py --workdir=/tmp/c3d_ucf101_svm \
    --config.init_from=/tmp/c3d_sports1m
Hardware/time: not run here (no data, no GPU); features of 13,320 videos x <= 32 clips are ~300K C3D forward passes.
"""

from ml_collections import config_dict

from experiments import c3d_sports1m, default, video


def get_config():
    c = c3d_sports1m.get_config()  # the Sports-1M network (487 classes): its checkpoint loads as it is
    video.ucf101_data(c, split_number=1)
    c.model.num_classes = video.SPORTS1M_CLASSES  # fc8 is not used: the feature is fc6
    c.data.eval_preprocess = video.c3d_video_spec(video.UCF101_MAX_CLIPS, video.C3D_FEATURE_STRIDE)
    c.init_from = ''  # the Sports-1M C3D's workdir (required: --config.init_from=DIR)
    c.optimizer.frozen = ('.*',)  # a feature extractor: nothing is trained
    c.optimizer.schedule = 'constant'
    c.num_train_steps = 1
    c.batch_size = 2
    c.eval_batch_size = 2  # videos per batch: each holds 32 clips
    c.resources.accelerators_per_node = 2
    c.checkpoint_every = ''
    c.evals = config_dict.ConfigDict()
    c.evals.svm = default.clip_svm_eval(results_key='eval', feature='fc6', svm_c=1.0)
    return c
