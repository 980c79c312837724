"""The 'classification' evaluator: top-1/top-5 accuracy and loss, under the papers' test protocols.

One evaluation path for periodic and final evaluations; an entry of `config.evals` chooses the protocol:
- Multi-crop (AlexNet sec. 4.1, ZF Net sec. 5, ResNet): an eval preprocessing op such as `ten_crop(224)` writes K
  crops of each image to the batch key 'crops' ([B, K, H, W, C]); the network scores every crop and the softmax is
  averaged over K. Crops are found on that explicit key, never inferred from the rank (a clip batch is 5-D too).
- Per video (Karpathy et al. 2014 sec. 4.1, Tran et al. 2015 sec. 3.3): `video_clips(T, K, stride)` writes the K
  clips of each video to 'crops' ([B, K, T, H, W, C]) and which of them are real to 'crop_mask' ([B, K]; a video
  with fewer clips is padded); the softmax is averaged over the real clips of each video, so accuracies are
  video-level. Batch keys ('crops', 'crop_mask', 'label').
- Multiple views (VGG sec. 3.2, 4.2): `views` lists one eval preprocessing spec per view (e.g. the image rescaled to
  Q = 256, 384, 512, each also flipped); the class posteriors are averaged over views per example.
- Dense evaluation (VGG sec. 3.2): `model_overrides` changes model fields for this evaluation only, e.g.
  `dense=True` turns VGG's fully-connected layers into convolutions; the parameters are the same.

Per-example log-posteriors stay on the devices, sharded over the batch axis (ImageNet val: 50,000 x 1,000 floats
over all devices), and are combined across views there; only the per-batch sums reach the host.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from ml_collections import ConfigDict

from convnets import parallel
from convnets.data import pipeline
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.precision import Policy
from convnets.train.state import TrainState

CROPS = 'crops'  # Batch key of multi-crop views [B, K, H, W, C] (written by ten_crop, googlenet_crops, ...).
CROP_MASK = 'crop_mask'  # [B, K]: 1 for a real view (a video's real clips, video_clips), 0 for padding.


def crop_averaged_log_probs(model: nn.Module, variables: dict, crops: jax.Array,
                            mask: jax.Array | None = None, policy: Policy | None = None) -> jax.Array:
    """Log of the softmax averaged over the K crops of each example: crops [B, K, ...] -> [B, classes].

    `mask` [B, K] (optional): only crops with mask 1 count (a video's real clips); every example needs one.
    `policy`: the compute dtype the network runs in (None: float32); the softmax is float32.
    """
    b, k = crops.shape[:2]
    logits = (policy or Policy()).apply(model, variables, crops.reshape((b * k, *crops.shape[2:])), train=False)
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape((b, k, -1))
    if mask is None:
        return jax.nn.logsumexp(log_probs, axis=1) - jnp.log(k)
    weights = mask.astype(jnp.float32)
    # A row with no real crop (a padding example of the last eval batch, masked out of every metric) averages all
    # of its crops instead: finite, where 0 / 0 would put NaN into the masked sums.
    weights = jnp.where(jnp.sum(weights, axis=1, keepdims=True) > 0, weights, 1.0)[:, :, None]
    # log(sum_k w_k p_k / sum_k w_k); padding clips get weight 0 (b=0 in logsumexp drops them exactly).
    return jax.nn.logsumexp(log_probs, axis=1, b=weights) - jnp.log(jnp.sum(weights, axis=1))


def log_probs(model: nn.Module, variables: dict, batch: dict[str, jax.Array], policy: Policy | None = None
              ) -> jax.Array:
    """Per-example log-posteriors of a batch: averaged over batch['crops'] (its real ones if batch['crop_mask']
    is given) if present, else of batch['image']; the network runs in `policy`'s compute dtype (None: float32)."""
    if CROPS in batch:
        return crop_averaged_log_probs(model, variables, batch[CROPS], batch.get(CROP_MASK), policy)
    logits = (policy or Policy()).apply(model, variables, batch['image'], train=False)
    return jax.nn.log_softmax(logits.astype(jnp.float32))


def topk_correct(scores: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    """1.0 where the label is among the k highest scores (k is clipped to the number of classes); the training
    step's top-1 uses it too."""
    _, top = jax.lax.top_k(scores, min(k, scores.shape[-1]))
    return jnp.any(top == labels[:, None], axis=-1).astype(jnp.float32)


def _score_step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """Sums (not means) of loss and top-1/top-5 hits over the real examples of one device's slice."""
    del state
    lp, labels, mask = batch['log_probs'], batch['label'], batch['mask']
    sums = {
        'loss': -jnp.sum(jnp.take_along_axis(lp, labels[:, None], axis=1)[:, 0] * mask),
        'top1': jnp.sum(topk_correct(lp, labels, 1) * mask),
        'top5': jnp.sum(topk_correct(lp, labels, 5) * mask),
        'count': jnp.sum(mask),
    }
    return jax.lax.psum(sums, parallel.AXIS)


def _metrics(totals: dict[str, np.ndarray]) -> dict[str, float]:
    n = float(totals['count'])
    top1 = float(totals['top1']) / n
    return {'top1': top1, 'top5': float(totals['top5']) / n, 'loss': float(totals['loss']) / n,
            'top1_error': 1.0 - top1, 'num_examples': int(n)}


def view_data_configs(config: ConfigDict, ev: ConfigDict) -> list[ConfigDict]:
    """One data config per view of evaluator `ev`: its spec, split and batch keys."""
    out = []
    for spec in list(ev.views) or [config.data.eval_preprocess]:
        data = ConfigDict(config.data.to_dict())
        data.eval_preprocess = spec
        data.eval_split = ev.split or config.data.eval_split
        data.batch_keys = tuple(ev.batch_keys) or tuple(config.data.batch_keys)
        out.append(data)
    return out


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the evaluator of config entry `ev` (fields: see `experiments.default.classification_eval`)."""
    config = ctx.config
    check_keys(ev, config)
    if ev.net not in ctx.nets:
        raise ValueError(f'evals.{ctx.name}.net={ev.net!r} is not a network of this task; valid: {", ".join(ctx.nets)}')
    model = ctx.nets[ev.net].clone(**ev.model_overrides.to_dict())
    net_name = ev.net
    batch_size = config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'eval_batch_size')
    views = view_data_configs(config, ev)
    mesh = ctx.mesh
    batch_sharding = NamedSharding(mesh, P(parallel.AXIS))
    policy = Policy.from_config(config)  # the run's compute dtype, for periodic and final evaluations alike

    def predict_step(state: TrainState, batch: dict[str, jax.Array]) -> jax.Array:
        return log_probs(model, state.nets[net_name].eval_variables, batch, policy)

    predict = parallel.compile_per_example(predict_step, mesh)
    score = parallel.Parallel(mesh, 'shard_map').compile(_score_step, donate=False)
    combine = jax.jit(jnp.logaddexp, out_shardings=batch_sharding)
    shift = jax.jit(lambda lp, c: lp - c, out_shardings=batch_sharding)
    shard = parallel.Parallel(mesh, 'shard_map').shard_batch

    def score_all(state, per_batch: list[dict[str, jax.Array]]) -> dict[str, float]:
        totals = None
        for b in per_batch:
            sums = score(state, b)
            totals = sums if totals is None else jax.tree.map(np.add, totals, sums)
        return _metrics(jax.device_get(totals))

    def evaluate(state: TrainState) -> dict[str, float]:
        combined: list[dict[str, jax.Array]] = []
        for v, data in enumerate(views):
            this_view = []
            for j, local in enumerate(pipeline.eval_batches(data, global_batch_size=batch_size,
                                                            process_index=jax.process_index(),
                                                            process_count=jax.process_count())):
                batch = shard(local)
                lp = predict(state, batch)
                this_view.append({'log_probs': lp, 'label': batch['label'], 'mask': batch['mask']})
                if v == 0:
                    combined.append(dict(this_view[-1]))
                else:  # The same examples, in the same order, in every view.
                    combined[j]['log_probs'] = combine(combined[j]['log_probs'], lp)
            if len(views) > 1:
                logging.info('evals.%s view %d (%s): top1 %.4f', ctx.name, v, data.eval_preprocess,
                             score_all(state, this_view)['top1'])
        if len(views) > 1:  # Mean of the posteriors: log(sum_v p_v) - log(V).
            log_v = jnp.float32(np.log(len(views)))
            for b in combined:
                b['log_probs'] = shift(b['log_probs'], log_v)
        return score_all(state, combined)

    return evaluate


def check_keys(ev: ConfigDict, config: ConfigDict) -> None:
    """Raises ValueError unless the batch keys hold the labels and the images (or their crops)."""
    keys = tuple(ev.batch_keys) or tuple(config.data.batch_keys)
    if 'label' not in keys or ('image' not in keys and CROPS not in keys):
        raise ValueError(f"classification evaluator keys {keys} need 'label' and 'image' (or '{CROPS}' for "
                         f"multi-crop views such as ten_crop).")
    if CROP_MASK in keys and CROPS not in keys:
        raise ValueError(f"classification evaluator keys {keys}: '{CROP_MASK}' masks the views under '{CROPS}'; "
                         f"add '{CROPS}' (video_clips writes both).")
