"""experiments/video_quickstart.py: every variant builds on the embedded moving digits' clips and trains through
the one loop (classification on [B, T, H, W, C] clips); the measured accuracies are in WORKSPACE.md."""

import jax
import numpy as np
import pytest

from experiments import video_quickstart


@pytest.mark.slow
def test_every_variant_trains_two_steps_on_clips(tmp_path, moving_digits_dir):
    from convnets.train import loop

    for variant in ('', 'single_frame', 'slow_fusion'):  # early fusion: the same code path as slow
        c = video_quickstart.get_config(variant)
        c.data.data_dir = moving_digits_dir
        c.model.widths = (4, 4, 8, 8, 8)
        c.model.fc_features = 8
        c.batch_size = c.eval_batch_size = 8
        c.num_train_steps, c.log_every, c.checkpoint_every = 2, '1', ''
        c.optimizer.warmup_steps = 0
        c.evals.val.every = ''
        results = loop.train_and_evaluate(c, str(tmp_path / (variant or 'c3d')), devices=jax.devices()[:1])
        assert results['step'] == 2 and np.isfinite(results['train']['loss']), variant
        assert results['eval']['num_examples'] == 16 and 0.0 <= results['eval']['top1'] <= 1.0, variant


def test_unknown_variant_names_the_valid_ones():
    with pytest.raises(ValueError, match='single_frame'):
        video_quickstart.get_config('c2d')
