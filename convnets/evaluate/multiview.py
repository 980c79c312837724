"""The papers' test-time protocols, for any classifier.

- Multi-crop (AlexNet sec. 4.1, ZF Net sec. 5, ResNet): an eval preprocessing op such as `ten_crop(224)` turns each
  image into K crops, batched as [B, K, H, W, C]; the network scores every crop and the softmax is averaged over K.
- Multiple views (VGG sec. 3.2, 4.2): `config.evaluation.views` lists one eval preprocessing spec per view (e.g. the
  image rescaled to Q = 256, 384, 512, each also flipped); the class posteriors are averaged over views per example.
- Dense evaluation (VGG sec. 3.2): `config.evaluation.model_overrides` changes model fields for this evaluation only,
  e.g. `dense=True` turns VGG's fully-connected layers into convolutions; the parameters are the same.

Per-example posteriors of each view are gathered on the host (N x classes floats: 200 MB for ImageNet val), summed
over views, then scored.
"""

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.experimental import multihost_utils
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline


def crop_averaged_log_probs(model: nn.Module, variables: dict, images: jax.Array) -> jax.Array:
    """Log of the softmax averaged over crops: images [B, H, W, C] (one crop) or [B, K, H, W, C] (K crops)."""
    if images.ndim == 4:
        return jax.nn.log_softmax(model.apply(variables, images, train=False).astype(jnp.float32))
    b, k = images.shape[:2]
    logits = model.apply(variables, images.reshape((b * k, *images.shape[2:])), train=False)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape((b, k, -1))
    return jax.nn.logsumexp(log_probs, axis=1) - jnp.log(k)


def make_predict_step(model: nn.Module) -> Callable:
    """Per-device step returning per-example crop-averaged probabilities (kept sharded over the batch)."""

    def step(state, batch):
        return jnp.exp(crop_averaged_log_probs(model, state.eval_variables, batch['image']))

    return step


def _view_configs(config: ConfigDict) -> list[ConfigDict]:
    views = list(config.evaluation.views) or [config.data.eval_preprocess]
    out = []
    for spec in views:
        data = ConfigDict(config.data.to_dict())
        data.eval_preprocess = spec
        out.append(data)
    return out


def evaluate_views(config: ConfigDict, mesh: Any, model: nn.Module, state: Any) -> dict[str, float]:
    """Top-1/top-5 accuracy and loss of the posteriors averaged over all views (and crops) of each example."""
    predict = parallel.compile_per_example(make_predict_step(model), mesh)
    par = parallel.Parallel(mesh, 'shard_map')
    batch_size = config.eval_batch_size or config.batch_size
    views = _view_configs(config)
    total: np.ndarray | None = None
    for i, data in enumerate(views):
        probs, labels, masks = [], [], []
        for local in pipeline.eval_batches(data, global_batch_size=batch_size, process_index=jax.process_index(),
                                           process_count=jax.process_count()):
            batch = par.shard_batch(local)
            probs.append(multihost_utils.process_allgather(predict(state, batch), tiled=True))
            labels.append(multihost_utils.process_allgather(batch['label'], tiled=True))
            masks.append(multihost_utils.process_allgather(batch['mask'], tiled=True))
        keep = np.concatenate(masks) > 0
        view_probs = np.concatenate(probs)[keep]
        view_labels = np.concatenate(labels)[keep].astype(np.int64)  # The same examples, in order, in every view.
        logging.info('view %d (%s): top1 %.4f', i, data.eval_preprocess, _scores(view_probs, view_labels)['top1'])
        total = view_probs if total is None else total + view_probs
    return _scores(total / len(views), view_labels)


def _scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    top5 = np.argsort(-probs, axis=1)[:, :min(5, probs.shape[1])]
    p_label = probs[np.arange(len(labels)), labels]
    return {'top1': float(np.mean(top5[:, 0] == labels)), 'top5': float(np.mean(np.any(top5 == labels[:, None],
            axis=1))), 'loss': float(np.mean(-np.log(np.maximum(p_label, 1e-30)))), 'num_examples': int(len(labels))}
