"""Video-level evaluation: the classification evaluator averages the softmax over a video's REAL clips only
(`crop_mask`, written by the video_clips op), so padding clips of short videos change nothing."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.evaluate import classification


class _Linear(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        return nn.Dense(5)(x.reshape((x.shape[0], -1)))


@pytest.fixture(scope='module')
def setup():
    model = _Linear()
    rng = np.random.default_rng(0)
    crops = rng.normal(size=(3, 4, 2, 3, 3, 1)).astype(np.float32)  # [B, K, T, H, W, C]
    variables = model.init(jax.random.key(0), jnp.zeros((1, 2, 3, 3, 1)))
    return model, variables, crops


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_masked_average_is_the_mean_posterior_of_the_real_clips(setup):
    model, variables, crops = setup
    mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [1, 0, 0, 0]], np.float32)
    got = np.exp(classification.crop_averaged_log_probs(model, variables, crops, mask))
    logits = np.asarray(model.apply(variables, crops.reshape(12, 2, 3, 3, 1))).reshape(3, 4, 5)
    for b, real in enumerate((4, 2, 1)):
        np.testing.assert_allclose(got[b], _softmax(logits[b, :real]).mean(0), rtol=1e-5)


def test_padding_clips_do_not_matter_and_an_all_ones_mask_is_the_plain_average(setup):
    model, variables, crops = setup
    mask = np.array([[1, 1, 0, 0]] * 3, np.float32)
    garbage = crops.copy()
    garbage[:, 2:] = 1e3
    a = classification.crop_averaged_log_probs(model, variables, crops, mask)
    b = classification.crop_averaged_log_probs(model, variables, garbage, mask)
    np.testing.assert_allclose(a, b, rtol=1e-6)
    np.testing.assert_allclose(classification.crop_averaged_log_probs(model, variables, crops, np.ones((3, 4))),
                               classification.crop_averaged_log_probs(model, variables, crops), rtol=1e-6)
    batch = {'crops': crops, 'crop_mask': mask}
    np.testing.assert_allclose(classification.log_probs(model, variables, batch), a, rtol=1e-6)


def test_a_padding_example_without_real_clips_stays_finite(setup):
    """The last eval batch is padded with examples whose crop_mask is all 0; they are masked out of the sums, which
    a NaN would still poison (NaN * 0 = NaN)."""
    model, variables, crops = setup
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0]], np.float32)
    lp = np.asarray(classification.crop_averaged_log_probs(model, variables, crops, mask))
    assert np.all(np.isfinite(lp))
    np.testing.assert_allclose(lp[1], classification.crop_averaged_log_probs(model, variables, crops)[1], rtol=1e-6)
