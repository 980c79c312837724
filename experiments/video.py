"""What the video experiments share: UCF101 / Sports-1M data, the clip specs of C3D (Tran et al. 2015) and of the
fusion networks (Karpathy et al. 2014), and the per-video evaluation entries.

Video classification is the 'classification' task on clips: a batch's 'image' is ``[B, T, H, W, C]``. Training
takes one random clip per video per epoch (``random_temporal_crop``; the same spatial crop and flip for every
frame of a clip). Evaluation is per video: ``video_clips(T, K, stride)`` writes a video's clips to 'crops'
(``[K, T, H, W, C]``, 'crop_mask' marks the real ones) and the evaluator averages the softmax over them
(convnets/evaluate/classification.py), so accuracies are video-level as in both papers.

Data (convnets/data/ucf101.py and builders.py explain what to download and install when a preparation is missing):
- UCF101: TFDS's ``ucf101`` builder, configs ``ucf101_1`` / ``ucf101_2`` / ``ucf101_3`` (the three official
  train/test splits, frames kept at 320x240), classes 0..100. TFDS decodes the .avi files with ffmpeg.
- Sports-1M has no TFDS builder (the videos are YouTube links): extract frames and prepare them with the
  ``convnets_video_folder`` builder (convnets/data/video_folder.py), or register a TFDS builder of your own whose
  examples are ``{'video': Video([T, H, W, 3]), 'label': ClassLabel}`` and import it before the run.

Pixel means. The authors subtract a per-pixel mean clip of their training set (C3D's mean_file, e.g.
ucf101_train_mean.binaryproto; 16x128x171); the specs here subtract a per-channel mean instead (ImageNet's, as a
stand-in for the dataset's own: the authors' mean files are not reproducible without the data). Karpathy et al.
subtract the constant 117 from every pixel (Sec. 3.1).
"""

from ml_collections import config_dict

from convnets.data import constants
from experiments import default

UCF101_CLASSES = 101
SPORTS1M_CLASSES = 487
SPORTS1M_DATASET = 'convnets_video_folder'  # frames prepared from a folder tree (convnets/data/video_folder.py)

# C3D, Sec. 3.1 and the authors' data layer (conv3d_ucf101_train.prototxt: new_height 128, new_width 171,
# new_length 16, crop_size 112, mirror true).
C3D_FRAMES = 16
C3D_RESIZE = (128, 171)
C3D_CROP = 112
C3D_MEAN = constants.IMAGENET_RGB_MEAN  # stand-in for the authors' mean clip (see above)
# Karpathy et al. Sec. 3.1: centre square resized to 200x200, random 170x170 crops (178 for multires, Sec. 2.2),
# random flips; 117 subtracted from every pixel.
FUSION_RESIZE = 200
FUSION_MEAN = (117.0, 117.0, 117.0)
# Sec. 4.1 (Karpathy): 20 clips per video averaged for the video-level prediction; C3D Sec. 3.3 averages 10.
FUSION_TEST_CLIPS = 20
C3D_SPORTS1M_TEST_CLIPS = 10
# C3D Sec. 4: fc6 of 16-frame clips with an 8-frame overlap (stride 8). UCF101 videos have 29-1,776 frames (186 on
# average): at most 32 clips are kept per video (every clip of videos up to 264 frames, ~10 s; 32 evenly spaced
# ones of longer videos), since a video's clips go through the network together (32 C3D clips: ~1.6 GB of conv1a
# maps). 221 covers every clip of the longest video.
C3D_FEATURE_STRIDE = 8
UCF101_MAX_CLIPS = 32


def ucf101_data(c: config_dict.ConfigDict, split_number: int = 1) -> None:
    """UCF101 split 1, 2 or 3 through TFDS (train: 9,537 / 9,586 / 9,624 videos; test: 3,783 / 3,734 / 3,696)."""
    if split_number not in (1, 2, 3):
        raise ValueError(f'UCF101 has the official splits 1, 2 and 3, not {split_number}')
    c.data.name = f'ucf101/ucf101_{split_number}'
    c.data.train_split = 'train'
    c.data.eval_split = 'test'
    c.data.shuffle_buffer = 10_000
    c.model.num_classes = UCF101_CLASSES


def c3d_train_spec(frames: int = C3D_FRAMES, resize: tuple[int, int] = C3D_RESIZE, crop: int = C3D_CROP) -> str:
    """A random clip of `frames` consecutive frames, resized, randomly cropped and flipped (C3D Sec. 3.1, 3.3)."""
    return (f"rename('video', 'image')|random_temporal_crop({frames})|resize({resize})|random_crop({crop})|flip_lr"
            f"|subtract_mean({C3D_MEAN})")


def c3d_clip_spec(frames: int = C3D_FRAMES, resize: tuple[int, int] = C3D_RESIZE, crop: int = C3D_CROP) -> str:
    """The central clip of each video, centre crop: clip accuracy (C3D Fig. 2 plots clip accuracy)."""
    return (f"rename('video', 'image')|temporal_crop({frames})|resize({resize})|center_crop({crop})"
            f"|subtract_mean({C3D_MEAN})")


def c3d_video_spec(num_clips: int, stride: int = 0, frames: int = C3D_FRAMES,
                   resize: tuple[int, int] = C3D_RESIZE, crop: int = C3D_CROP) -> str:
    """Every clip of a video at `stride` (0: `num_clips` evenly spaced), centre crop (C3D Sec. 3.3: one centre
    crop per clip): batch keys ('crops', 'crop_mask', 'label')."""
    return (f"rename('video', 'image')|resize({resize})|center_crop({crop})|subtract_mean({C3D_MEAN})"
            f"|video_clips({frames}, {num_clips}, {stride})")


def fusion_train_spec(frames: int, crop: int = 170, resize: int = FUSION_RESIZE) -> str:
    """Karpathy et al. Sec. 3.1: the centre square resized to 200x200, a random 170x170 crop (178 multires),
    flipped with probability 1/2, minus 117."""
    return (f"rename('video', 'image')|random_temporal_crop({frames})|resize_short({resize})|center_crop({resize})"
            f"|random_crop({crop})|flip_lr|subtract_mean({FUSION_MEAN})")


def fusion_video_spec(frames: int, crop: int = 170, resize: int = FUSION_RESIZE,
                      num_clips: int = FUSION_TEST_CLIPS) -> str:
    """Sec. 4.1: `num_clips` clips per video, their predictions averaged (the paper also averages 4 crops and
    flips per clip; here one centre crop)."""
    return (f"rename('video', 'image')|resize_short({resize})|center_crop({resize})|center_crop({crop})"
            f"|subtract_mean({FUSION_MEAN})|video_clips({frames}, {num_clips}, 0)")


def video_eval(c: config_dict.ConfigDict, spec: str, *, results_key: str = 'eval') -> config_dict.ConfigDict:
    """The per-video evaluation as `evals.test` (results.json `results_key`): the softmax averaged over every
    clip of `spec` (a video_clips spec); the periodic `evals.val` keeps data.eval_preprocess (clip accuracy) and
    moves to 'eval_clip'."""
    c.evals.val.results_key = 'eval_clip'
    c.evals.test = default.classification_eval(results_key=results_key, views=(spec,),
                                               batch_keys=('crops', 'crop_mask', 'label'))
    return c.evals.test
