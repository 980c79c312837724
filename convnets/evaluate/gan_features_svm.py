"""The 'gan_svm' evaluator: the discriminator as an unsupervised feature extractor, read by a linear L2-SVM
(Radford, Metz, Chintala 2015, "Unsupervised Representation Learning with Deep Convolutional GANs", Sec. 5.1).

The protocol (Sec. 5.1, Table 1): "we use the discriminator's convolutional features from all layers, maxpooling
each layers representation to produce a 4 x 4 spatial grid. These features are then flattened and concatenated
to form a 28672 dimensional vector and a regularized linear L2-SVM classifier is trained on top of them"; CIFAR-10
with a D trained on ImageNet-1k: 82.8% (+- 0.1%). The authors' released analysis script for SVHN (Newmu/dcgan_code,
svhn/svhn_semisup_analysis.py) pools layer maps of 16x16, 8x8 and 4x4 with non-overlapping max-pooling windows of
4, 2 and 1 (dnn_pool(h, (4, 4), (4, 4))) so that every layer gives a 4x4 grid, flattens each and concatenates
them, and fits scikit-learn's LinearSVC (squared hinge, L2 penalty) on them.

Here: each sown 4-D layer [B, H, W, C] of D in collection 'intermediates' (field layers; () : every sown 4-D layer,
in the order D sows them: DCGAN's conv1 ... conv4, after the activation) is max-pooled to a pool_grid x pool_grid
grid (4) and flattened in (grid row, grid column, channel) order; the layers are concatenated. Bin i of a side of
length H covers rows floor(i H / g) .. ceil((i + 1) H / g) - 1: non-overlapping windows of H / g when g divides H
(the authors' case), and repeated rows when H < g (a 2x2 map gives each of its cells to 2x2 bins), so a layer
always gives g * g * C values. Layers named explicitly that are 2-D ([B, D], e.g. an MLP discriminator's hidden
layers) are taken as they are.

The feature dimension is sum_l g^2 C_l: the paper's 28,672 = 16 x (128 + 128 + 256 + 256 + 512 + 512), the six conv
layers of the authors' released 32x32 ImageNet discriminator (imagenet/load_pretrained.py, ndf = 128, 3x3
kernels, a stride-1 conv before each stride-2 one; its saved arrays' shapes, see convnets/models/dcgan.py), which
is registered here as dcgan_imagenet32_discriminator. The 4-conv dcgan_discriminator at image_size 32 (width,
2 width, 4 width channels on 16x16, 8x8, 4x4 maps, the authors' SVHN shapes) gives 16 x 7 width: 7,168 at width
64, 14,336 at width 128; at 64x64 four layers, 16 x 15 width (30,720 at 128).

The SVM: scikit-learn's LinearSVC (liblinear, one-vs-rest, squared hinge = L2-SVM, L2 penalty, C = field C,
random_state 0) on the features of `train_split` (the first max_train_examples; 0: all), accuracy on `split`. The
paper gives no C; the authors' SVHN script picks C from (0.0001 ... 0.01) on a validation set of its 1,000-label
task; the default here is 1.0 (scikit-learn's default): set C for a new dataset. Both splits use the same eval
preprocessing (field preprocess; no augmentation), which must give D's input range (DCGAN: [-1, 1]).
D runs in inference mode (BatchNorm's running averages; the GAN task keeps those of the real batches), where the
SVHN script re-estimates BatchNorm's statistics from the training images before extracting features (not done).

Results: `top1`, `top1_error`, `train_top1` (the SVM on its own training features), `num_examples`, `num_train`,
`feature_dim`, `seconds`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from convnets import parallel
from convnets.evaluate import clip_svm, parzen
from convnets.tasks.base import EvalContext, Evaluator
from convnets.train.precision import Policy
from convnets.train.state import TrainState


def _bins(size: int, grid: int) -> list[tuple[int, int]]:
    """[start, stop) of each of the `grid` bins of a side of length `size` (adaptive pooling)."""
    return [((i * size) // grid, -(-((i + 1) * size) // grid)) for i in range(grid)]


def grid_max_pool(x: jax.Array, grid: int) -> jax.Array:
    """[B, H, W, C] -> [B, grid, grid, C]: the maximum over each bin (see the module docstring)."""
    b, h, w, c = x.shape
    if h % grid == 0 and w % grid == 0:  # non-overlapping windows (the authors' pooling)
        return x.reshape((b, grid, h // grid, grid, w // grid, c)).max(axis=(2, 4))
    rows = [jnp.stack([x[:, r0:r1, c0:c1].max(axis=(1, 2)) for c0, c1 in _bins(w, grid)], axis=1)
            for r0, r1 in _bins(h, grid)]
    return jnp.stack(rows, axis=1)


def sown_layers(found: dict, layers: Sequence[str]) -> list[tuple[str, jax.Array]]:
    """(name, activation) of the layers read: `layers` by name, or () : every sown 4-D layer in sowing order."""
    values = {k: v[0] for k, v in found.items() if isinstance(v, tuple) and len(v) == 1}
    if not layers:
        chosen = [(k, v) for k, v in values.items() if v.ndim == 4]
        if not chosen:
            raise ValueError(f"gan_svm: the discriminator sows no 4-D (conv) layer in 'intermediates' (sown: "
                             f"{', '.join(values) or 'none'}); name the layers with evals.<name>.layers.")
        return chosen
    missing = [k for k in layers if k not in values]
    if missing:
        raise ValueError(f"gan_svm: the discriminator sows no {', '.join(map(repr, missing))}; sown once: "
                         f"{', '.join(values) or 'none'}. Fix evals.<name>.layers.")
    return [(k, values[k]) for k in layers]


def discriminator_features(model: nn.Module, variables: dict, images: jax.Array, layers: Sequence[str],
                           grid: int, policy: Policy | None = None) -> jax.Array:
    """The concatenated grid-pooled features [B, D] of D's layers on images [B, H, W, C], D run in `policy`'s
    compute dtype (None: float32)."""
    _, sown = (policy or Policy()).apply(model, variables, images, train=False, mutable=['intermediates'])
    parts = []
    for _, x in sown_layers(sown.get('intermediates', {}), layers):
        x = grid_max_pool(x, grid) if x.ndim == 4 else x
        parts.append(x.reshape((x.shape[0], -1)).astype(jnp.float32))
    return jnp.concatenate(parts, axis=1)


def check(ev: ConfigDict) -> None:
    if ev.C <= 0:
        raise ValueError(f'gan_svm: C={ev.C} must be > 0 (the C of LinearSVC).')
    if ev.pool_grid < 1:
        raise ValueError(f'gan_svm: pool_grid={ev.pool_grid} must be >= 1 (DCGAN: 4).')
    if ev.max_train_examples < 0:
        raise ValueError(f'gan_svm: max_train_examples={ev.max_train_examples} must be >= 0 (0: all).')


def make_evaluator(ctx: EvalContext, ev: ConfigDict) -> Evaluator:
    """Builds the evaluator of config entry `ev` (fields: experiments.gan.gan_svm_eval)."""
    config = ctx.config
    check(ev)
    batch_size = ev.batch_size or config.eval_batch_size or config.batch_size
    parallel.check_batch_size(batch_size, ctx.mesh, 'evals.<name>.batch_size')
    from convnets.tasks import gan  # here: the task module imports the evaluators (its `evaluators`)

    model = ctx.nets[gan.DISCRIMINATOR]
    layers, grid = tuple(ev.layers), int(ev.pool_grid)
    policy = Policy.from_config(config)  # D runs in the run's compute dtype; its features come back float32

    def step(state: TrainState, batch: dict[str, jax.Array]) -> dict[str, jax.Array]:
        feats = discriminator_features(model, state.nets[gan.DISCRIMINATOR].eval_variables, batch['image'], layers,
                                       grid, policy)
        return {'feature': feats, 'label': batch['label'], 'mask': batch['mask']}

    features = parallel.compile_per_example(step, ctx.mesh)

    def split_features(state: TrainState, split: str, limit: int) -> tuple[np.ndarray, np.ndarray]:
        data = parzen.data_config(config, split, ev.preprocess, ('image', 'label'))
        parts = list(parzen.gathered(data, batch_size, ctx.mesh, features, state, limit))
        return (np.concatenate([p['feature'] for p in parts]),
                np.concatenate([p['label'] for p in parts]).astype(np.int64))

    def evaluate(state: TrainState) -> dict[str, float]:
        start = time.time()
        train_split, test_split = ev.train_split or config.data.train_split, ev.split or config.data.eval_split
        train_x, train_y = split_features(state, train_split, ev.max_train_examples)
        test_x, test_y = split_features(state, test_split, 0)
        logging.info('evals.%s: %d-d features of %d %r and %d %r examples; fitting LinearSVC(C=%g)', ctx.name,
                     train_x.shape[1], len(train_y), train_split, len(test_y), test_split, ev.C)
        if len(np.unique(train_y)) < 2:
            raise ValueError(f'gan_svm: the {len(train_y)} training examples of {train_split!r} hold one class; an SVM '
                             f'needs two. Raise max_train_examples (0: all) or check train_split.')
        _, top1, train_top1 = clip_svm.fit_and_score(train_x, train_y, test_x, test_y, ev.C)
        return {'top1': top1, 'top1_error': 1.0 - top1, 'train_top1': train_top1, 'num_examples': len(test_y),
                'num_train': len(train_y), 'feature_dim': int(train_x.shape[1]), 'seconds': time.time() - start}

    return evaluate
