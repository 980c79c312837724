"""The 'clip_svm' evaluator: C3D's feature protocol, a linear SVM on per-video averages of a layer's activations
(Tran, Bourdev, Fergus, Torresani, Paluri 2015, "Learning Spatiotemporal Features with 3D Convolutional Networks").

The protocol (sec. 3.3, "C3D video descriptor"): a video is split into 16-frame clips with an 8-frame overlap
between consecutive clips (the eval op `video_clips(16, K, stride=8)`); every clip goes through the network and its
fc6 activations are read; the clip features of a video are averaged into one descriptor (4,096-d in the paper),
which is then L2-normalised. Sec. 4 ("Action recognition", "Classification model"): these descriptors of the
training videos train a multi-class linear SVM, which classifies the test videos. UCF101 split 1 (Table 3): one
net 82.3%, the L2-normalised descriptors of 3 nets concatenated 85.2%, with iDT 90.4%.

fc6 is read after its ReLU: in the authors' feature extractor (facebook/C3D, C3D-v1.0/examples/
c3d_feature_extraction/prototxt/c3d_sport1m_feature_extractor_frm.prototxt) relu6 and drop6 work in place on the
blob "fc6-1" that extract_image_features reads, so it holds ReLU(fc6) (test-phase dropout is the identity). The
C3D model here sows 'fc6' there (after the ReLU, before dropout) in the 'intermediates' collection.

What this evaluator does with a state (fields: `experiments.default.clip_svm_eval`):
1. for every video of `train_split` (the first `max_train_videos`, 0: all) and of `split`, one eval batch after
   another on the devices (shard_map, static shapes): the sown `feature` of every clip, gathered to the host;
   both splits use the SAME preprocessing spec (`preprocess`): the SVM's training features are not augmented;
2. per video, the mean of its real clips' features ('crop_mask' 1; padding clips of short videos are ignored),
   L2-normalised (`video_descriptors`);
3. scikit-learn's LinearSVC (liblinear, one-vs-rest, squared hinge, C = `svm_c`, random_state 0) fit on the
   training videos, top-1 accuracy on the test videos. With several processes every process gathers every
   video's features (`parallel.gather_to_host`) and fits the same SVM.
The paper does not give the SVM's C (nor its library); 1.0, scikit-learn's default, is this evaluator's default.

Batches: ('crops', 'crop_mask', 'label') from `video_clips` ('crops' [B, K, T, H, W, C], every clip through the
network at once: eval_batch_size x K clips per call), ('crops', 'label') (every clip real) or ('image', 'label')
(one clip per video). Networks whose sown feature has several rows per clip (the per-frame fusion nets
video_single_frame and video_multires sow fc6 for every frame, rows grouped by clip) get those rows averaged first
(the clip's mean frame feature; the papers do not describe this case).

Results: `top1`, `top1_error`, `num_examples` (test videos), `num_train` (training videos), `feature_dim`,
`clips_per_video` (the mean number of real clips of a test video), `train_top1` (the SVM on its own training
videos), `seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline
from convnets.evaluate.classification import CROP_MASK, CROPS
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.precision import Policy
from convnets.train.state import TrainState

FEATURES = 'features'  # The per-clip features of the device function's output.


def clip_features(model: nn.Module, variables: dict, batch: dict[str, jax.Array], feature: str,
                  policy: Policy | None = None) -> jax.Array:
    """The sown `feature` of every clip of a batch, [B, K, D] float32 (K = 1 for 'image' batches): the layer's
    rows of each clip averaged when it has several per clip (per-frame networks), the rest flattened. The network
    runs in `policy`'s compute dtype (None: float32)."""
    clips = batch[CROPS] if CROPS in batch else batch['image'][:, None]
    b, k = clips.shape[:2]
    _, sown = (policy or Policy()).apply(model, variables, clips.reshape((b * k, *clips.shape[2:])), train=False,
                                         mutable=['intermediates'])
    found = sown.get('intermediates', {})
    if feature not in found:
        names = sorted(n for n, v in found.items() if isinstance(v, tuple))
        raise ValueError(f"clip_svm: the network {type(model).__name__} sows no {feature!r}; its sown "
                         f"intermediates: {', '.join(names) or 'none'}. Set evals.<name>.feature to one of them.")
    if len(found[feature]) != 1:
        raise ValueError(f'clip_svm: {feature!r} is sown {len(found[feature])} times per call; pick a feature '
                         f'sown once.')
    x = found[feature][0]
    if x.shape[0] % (b * k):
        raise ValueError(f'clip_svm: {feature!r} has {x.shape[0]} rows for {b * k} clips; need a whole number of '
                         f'rows per clip.')
    return x.reshape((b * k, x.shape[0] // (b * k), -1)).astype(jnp.float32).mean(axis=1).reshape((b, k, -1))


def video_descriptors(features: np.ndarray, clip_mask: np.ndarray | None = None) -> np.ndarray:
    """C3D's video descriptor (sec. 3.3): per video the mean of its real clips' features, L2-normalised.

    features [B, K, D]; clip_mask [B, K] (None: every clip real). A video with no real clip (a padding example of
    an eval batch) or an all-zero mean gives the zero vector. Returns [B, D] float64."""
    features = np.asarray(features, np.float64)
    mask = np.ones(features.shape[:2]) if clip_mask is None else np.asarray(clip_mask, np.float64)
    if mask.shape != features.shape[:2]:
        raise ValueError(f'clip mask {mask.shape} does not match the clip features {features.shape}')
    mean = np.einsum('bk,bkd->bd', mask, features) / np.maximum(mask.sum(axis=1), 1.0)[:, None]
    norm = np.linalg.norm(mean, axis=1, keepdims=True)
    return np.divide(mean, norm, out=np.zeros_like(mean), where=norm > 0)


def fit_and_score(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, c: float
                  ) -> tuple[Any, float, float]:
    """LinearSVC(C=c) on the training descriptors; returns it, its test accuracy and its training accuracy."""
    classes = np.unique(train_y)
    if len(classes) < 2:
        raise ValueError(f'clip_svm: the training videos ({len(train_y)}) hold only class(es) {classes.tolist()}; '
                         f'an SVM needs two. Use more training videos (max_train_videos=0: all) or check '
                         f'train_split.')
    from sklearn.svm import LinearSVC  # imported here: the classification task (every run) imports this module

    svm = LinearSVC(C=c, random_state=0).fit(train_x, train_y)
    return svm, float(np.mean(svm.predict(test_x) == test_y)), float(np.mean(svm.predict(train_x) == train_y))


def check(ev: ConfigDict, config: ConfigDict) -> tuple[str, ...]:
    """The batch keys of entry `ev`; ValueError for settings that cannot work."""
    keys = tuple(ev.batch_keys) or tuple(config.data.batch_keys)
    if 'label' not in keys or ('image' not in keys and CROPS not in keys):
        raise ValueError(f"clip_svm evaluator keys {keys} need 'label' and the clips: ('{CROPS}', '{CROP_MASK}', "
                         f"'label') from video_clips, or ('image', 'label') for one clip per video.")
    if CROP_MASK in keys and CROPS not in keys:
        raise ValueError(f"clip_svm evaluator keys {keys}: '{CROP_MASK}' masks the clips under '{CROPS}'; add "
                         f"'{CROPS}' (video_clips writes both).")
    if ev.svm_c <= 0:
        raise ValueError(f'clip_svm: svm_c={ev.svm_c} must be > 0 (the C of LinearSVC).')
    if ev.max_train_videos < 0:
        raise ValueError(f'clip_svm: max_train_videos={ev.max_train_videos} must be >= 0 (0: every video).')
    return keys


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the evaluator of config entry `ev` (see the module docstring)."""
    config = ctx.config
    keys = check(ev, config)
    if ev.net not in ctx.nets:
        raise ValueError(f'evals.{ctx.name}.net={ev.net!r} is not a network of this task; valid: {", ".join(ctx.nets)}')
    model = ctx.nets[ev.net]
    batch_size = config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'eval_batch_size')
    shard = parallel.Parallel(ctx.mesh, 'shard_map').shard_batch
    policy = Policy.from_config(config)  # the run's compute dtype

    def step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        feats = clip_features(model, state.nets[ev.net].eval_variables, batch, ev.feature, policy)
        mask = batch[CROP_MASK] if CROP_MASK in batch else jnp.ones(feats.shape[:2], jnp.float32)
        return {FEATURES: feats, CROP_MASK: mask.astype(jnp.float32), 'label': batch['label'],
                'mask': batch['mask']}

    features = parallel.compile_per_example(step, ctx.mesh)

    def data_config(split: str) -> ConfigDict:
        data = ConfigDict(config.data.to_dict())
        data.eval_split = split
        data.eval_preprocess = ev.preprocess or config.data.eval_preprocess
        data.batch_keys = keys
        return data

    def videos(state: TrainState, split: str, limit: int = 0) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(descriptors [n, D], labels [n], real clips [n]) of the real videos of each batch of `split`, in file
        order, at most `limit` videos in all (0: every one)."""
        count = 0
        for local in pipeline.eval_batches(data_config(split), global_batch_size=batch_size,
                                           process_index=jax.process_index(), process_count=jax.process_count()):
            out = {k: parallel.gather_to_host(v) for k, v in features(state, shard(local)).items()}
            real = out['mask'] > 0
            if limit:
                real &= np.cumsum(real) <= limit - count
            count += int(real.sum())
            yield (video_descriptors(out[FEATURES][real], out[CROP_MASK][real]), out['label'][real].astype(np.int64),
                   out[CROP_MASK][real].sum(axis=1))
            if limit and count >= limit:
                return

    def descriptors(state: TrainState, split: str, limit: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        parts = list(videos(state, split, limit))
        return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]

    def evaluate(state: TrainState) -> dict[str, float]:
        start = time.time()
        train_split, test_split = ev.train_split or config.data.train_split, ev.split or config.data.eval_split
        train_x, train_y, _ = descriptors(state, train_split, ev.max_train_videos)
        test_x, test_y, clips = descriptors(state, test_split)
        logging.info('evals.%s: %s descriptors of %d %r and %d %r videos; fitting LinearSVC(C=%g)', ctx.name,
                     ev.feature, len(train_y), train_split, len(test_y), test_split, ev.svm_c)
        _, top1, train_top1 = fit_and_score(train_x, train_y, test_x, test_y, ev.svm_c)
        return {'top1': top1, 'top1_error': 1.0 - top1, 'num_examples': len(test_y), 'num_train': len(train_y),
                'feature_dim': int(train_x.shape[1]), 'clips_per_video': float(np.mean(clips)),
                'train_top1': train_top1, 'seconds': time.time() - start}

    return evaluate

