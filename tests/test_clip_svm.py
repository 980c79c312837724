"""convnets/evaluate/clip_svm.py: C3D's video descriptor (mean of the real clips' fc6, L2-normalised) and its linear
SVM, checked against direct numpy / scikit-learn computations, and run through the training loop's evals."""

import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from ml_collections import ConfigDict

from convnets.evaluate import clip_svm
from experiments import default


def test_video_descriptor_is_the_unit_mean_of_the_real_clips():
    rng = np.random.default_rng(0)
    feats = rng.random((3, 4, 5))
    feats[0, 2:] = 1e6  # padding clips of video 0: must change nothing
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)  # video 2: a padding example
    out = clip_svm.video_descriptors(feats, mask)
    for i, n in ((0, 2), (1, 4)):
        mean = feats[i, :n].mean(axis=0)
        np.testing.assert_allclose(out[i], mean / np.linalg.norm(mean), rtol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(out[:2], axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(out[2], 0.0)  # no real clip: the zero vector, no NaN
    np.testing.assert_allclose(clip_svm.video_descriptors(feats[1:2]), out[1:2], rtol=1e-12)  # no mask: all real
    with pytest.raises(ValueError, match='does not match'):
        clip_svm.video_descriptors(feats, mask[:, :3])


class _PerFrame(nn.Module):
    """Sows 'fc6' for every frame (rows grouped by clip), like the per-frame fusion nets."""

    @nn.compact
    def __call__(self, x, train=False):
        rows = x.reshape((x.shape[0] * x.shape[1], -1))
        f = nn.relu(nn.Dense(3)(rows))
        self.sow('intermediates', 'fc6', f)
        return f.reshape((x.shape[0], x.shape[1], -1)).mean(axis=1)


def test_clip_features_of_crops_images_and_per_frame_rows():
    model = _PerFrame()
    crops = np.random.default_rng(1).normal(size=(2, 3, 4, 2, 2, 1)).astype(np.float32)  # [B, K, T, H, W, C]
    kernel = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    variables = {'params': {'Dense_0': {'kernel': kernel, 'bias': jnp.full((3,), 0.1)}}}
    frames = np.asarray(crops).reshape((2, 3, 4, 4))
    per_frame = np.maximum(frames @ np.asarray(kernel) + 0.1, 0.0)  # [B, K, T, 3]
    features = jax.jit(lambda batch: clip_svm.clip_features(model, variables, batch, 'fc6'))
    got = features({'crops': crops})
    np.testing.assert_allclose(got, per_frame.mean(axis=2), rtol=1e-5)  # a clip's rows averaged: [B, K, D]
    one = features({'image': crops[:, 0]})
    np.testing.assert_allclose(one, got[:, :1], rtol=1e-6)  # 'image' batches: one clip per video
    with pytest.raises(ValueError, match="sows no 'fc7'.*fc6"):
        jax.eval_shape(lambda batch: clip_svm.clip_features(model, variables, batch, 'fc7'), {'crops': crops})


def test_bad_settings_are_named():
    config = ConfigDict({'data': {'batch_keys': ('image', 'label')}})
    with pytest.raises(ValueError, match="need 'label'"):
        clip_svm.check(default.clip_svm_eval(results_key='x', batch_keys=('crops', 'crop_mask')), config)
    with pytest.raises(ValueError, match="add 'crops'"):
        clip_svm.check(default.clip_svm_eval(results_key='x', batch_keys=('image', 'crop_mask', 'label')), config)
    with pytest.raises(ValueError, match='svm_c'):
        clip_svm.check(default.clip_svm_eval(results_key='x', svm_c=0.0), config)
    assert clip_svm.check(default.clip_svm_eval(results_key='x', batch_keys=()), config) == ('image', 'label')
    x = np.eye(3)
    with pytest.raises(ValueError, match=r'only class\(es\) \[2\]'):
        clip_svm.fit_and_score(x, np.array([2, 2, 2]), x, np.array([0, 1, 2]), 1.0)


# 10-frame clips every 3 frames of the 16-frame moving digits: starts 0, 3, 6, and one padding clip (num_clips 4).
FRAMES, CLIPS, STRIDE = 10, 4, 3
EVAL_SPEC = f"rename('video', 'image')|value_range(-1, 1)|video_clips({FRAMES}, {CLIPS}, stride={STRIDE})"


@pytest.mark.slow
def test_clip_svm_through_the_loop_equals_a_direct_computation(tmp_path, moving_digits_dir):
    from sklearn.svm import LinearSVC

    from convnets import models
    from convnets.data import pipeline
    from convnets.train import loop
    from experiments import video_quickstart
    from tests.helpers import final_state

    c = video_quickstart.get_config('c3d')
    c.data.data_dir = moving_digits_dir
    c.data.train_preprocess = f"rename('video', 'image')|temporal_crop({FRAMES})|value_range(-1, 1)"
    c.model.widths = (4, 4, 8, 8, 8)
    c.model.fc_features = 16
    c.batch_size = c.eval_batch_size = 8
    c.num_train_steps, c.log_every, c.checkpoint_every = 2, '1', ''
    c.optimizer.warmup_steps = 0
    for ev in c.evals.values():  # the quickstart's own evaluations (per clip, per video): not this test's
        ev.every, ev.at_end = '', False
    c.evals.svm = default.clip_svm_eval(results_key='svm', preprocess=EVAL_SPEC, max_train_videos=12, svm_c=10.0)
    workdir = str(tmp_path / 'run')
    results = loop.train_and_evaluate(c, workdir, devices=jax.devices()[:2])
    got = results['svm']
    with open(os.path.join(workdir, 'results.json')) as f:
        assert json.load(f)['svm'] == got  # the evals entry's numbers under its results_key
    assert results['step'] == 2 and 'eval' not in results
    assert (got['num_train'], got['num_examples'], got['feature_dim'], got['clips_per_video']) == (12, 16, 16, 3.0)

    # The same protocol by hand: the trained net's sown fc6 of every clip, the mean of the 3 real clips, unit norm,
    # LinearSVC with the same C (10; and liblinear's shuffling seed) on the first 12 training videos.
    kwargs = {k: v for k, v in c.model.to_dict().items() if k != 'name'}
    model = models.get_model('c3d', **kwargs)
    variables = {'params': final_state(workdir)['nets']['model']['params']}
    apply = jax.jit(lambda x: model.apply(variables, x, train=False, mutable=['intermediates'])[1])

    def split(name):
        data = ConfigDict(c.data.to_dict())
        data.eval_split, data.eval_preprocess, data.batch_keys = name, EVAL_SPEC, ('crops', 'crop_mask', 'label')
        xs, ys = [], []
        for b in pipeline.eval_batches(data, global_batch_size=8):
            real = b['mask'] > 0
            crops, mask = b['crops'][real], b['crop_mask'][real]
            np.testing.assert_array_equal(mask, [[1, 1, 1, 0]] * len(mask))
            fc6 = np.asarray(apply(jnp.asarray(crops.reshape((-1, *crops.shape[2:]))))['intermediates']['fc6'][0])
            fc6 = fc6.reshape((len(crops), CLIPS, -1))[:, :3].mean(axis=1)
            xs.append(fc6 / np.linalg.norm(fc6, axis=1, keepdims=True))
            ys.append(b['label'][real])
        return np.concatenate(xs), np.concatenate(ys)

    train_x, train_y = split('train')
    test_x, test_y = split('test')
    svm = LinearSVC(C=10.0, random_state=0).fit(train_x[:12], train_y[:12])
    expected = float(np.mean(svm.predict(test_x) == test_y))
    assert got['top1'] == expected and got['top1_error'] == 1.0 - expected
    assert got['train_top1'] == float(np.mean(svm.predict(train_x[:12]) == train_y[:12]))
