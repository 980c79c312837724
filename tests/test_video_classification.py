"""Video classification is the classification task on clips: a 3D CNN trains and evaluates through the loop.

The eval batch of clips is 5-D under 'image' ([B, T, H, W, C]) and reaches the network whole: multi-crop averaging
reads only the explicit 'crops' key, so a clip is never taken for a stack of crops.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from convnets import models
from convnets.train import loop
from experiments import default
from tests import clips_dataset  # noqa: F401  (registers the clips dataset)


@models.register('test_clip_net')
class ClipNet(nn.Module):
    """3x3x3 convolution over (time, height, width), global average pool, linear classifier."""

    num_classes: int = 3

    @nn.compact
    def __call__(self, clips, train=False):
        del train
        assert clips.ndim == 5, f'a clip batch is [B, T, H, W, C], got {clips.shape}'
        x = nn.relu(nn.Conv(8, (3, 3, 3), padding='SAME')(clips))
        return nn.Dense(self.num_classes)(jnp.mean(x, axis=(1, 2, 3)))


def test_a_3d_cnn_trains_and_evaluates_on_clips(tmp_path):
    c = default.get_config()
    c.model = {'name': 'test_clip_net', 'num_classes': 3}
    c.data.update(dict(name='convnets_test_clips', data_dir=str(tmp_path / 'tfds'), shuffle_buffer=8, prefetch=0))
    c.data.train_preprocess = "rename('video', 'image')|random_temporal_crop(4)|random_crop((16, 20))|flip_lr"
    c.data.eval_preprocess = "rename('video', 'image')|temporal_crop(4)|center_crop((16, 20))"
    c.batch_size, c.num_train_steps, c.log_every, c.checkpoint_every = 4, 6, '2', '3'
    c.optimizer.learning_rate = 0.01
    results = loop.train_and_evaluate(c, str(tmp_path / 'run'), devices=jax.devices()[:2])
    assert results['step'] == 6 and results['eval']['num_examples'] == 3
    assert 0.0 <= results['eval']['top1'] <= 1.0 and np.isfinite(results['eval']['loss'])
    assert np.isfinite(results['train']['loss'])
    nets, state = loop.restore_for_inference(c, str(tmp_path / 'run'), devices=jax.devices()[:1])
    conv = state.nets['model'].params['Conv_0']['kernel']
    assert conv.shape == (3, 3, 3, 3, 8)  # A 3D kernel: (time, height, width, in, out).
