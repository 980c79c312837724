"""What the VGG experiments share (Simonyan and Zisserman 2014, "Very deep convolutional networks for large-scale
image recognition"): sec. 3.1 training and sec. 3.2 dense testing. Each vggNN.py file picks the configuration
(Table 1), the training scale S and the test scales Q.

Training (sec. 3.1): isotropic rescale to short side S (fixed, or sampled per image in [S_min, S_max] = [256, 512]
for scale jittering), random 224x224 crop, random horizontal flip, random RGB colour shift (AlexNet's PCA
lighting), mean RGB subtracted; SGD batch 256, momentum 0.9, weight decay 5e-4, dropout 0.5 on fc6/fc7, lr 0.01
divided by 10 when the validation accuracy stopped improving (3 times), 370K iterations (74 epochs); weights
N(0, 0.01), biases 0.
Testing (sec. 3.2): fc layers applied as convolutions (7x7, then 1x1) to the whole image rescaled to Q, the class
score map averaged spatially, and the softmax averaged with the flipped image's; over several Q for multi-scale.
Deviation: we evaluate the central QxQ square of the rescaled image, so that a batch has one shape.
Multi-crop testing (sec. 3.2, Table 5): 50 crops of 224 per scale (a 5x5 grid over the whole rescaled image, and
flips; `multi_crop_views`), softmax averaged; "dense & multi-crop" averages the two protocols' softmaxes.
The paper's Tables 3-5 are sweeps (`paper_sweeps`, declared by experiments/vgg16.py).
"""

from convnets import sweeps
from experiments import default, imagenet

# Table 1's configurations as the model registry names them.
MODELS = {'A': 'vgg11', 'A-LRN': 'vgg11_lrn', 'B': 'vgg13', 'C': 'vgg16_c', 'D': 'vgg16', 'E': 'vgg19'}
JITTER = (256, 512)  # Sec. 3.1: S sampled per image from [S_min, S_max] = [256, 512].
JITTER_TEST_SCALES = (256, 384, 512)  # Sec. 4.2: Q = {S_min, (S_min + S_max) / 2, S_max} for the jittered nets.


def train_spec(s_min: int, s_max: int | None = None) -> str:
    rescale = f'random_resize_short({s_min}, {s_max})' if s_max else f'resize_short({s_min})'
    return f'decode(3)|{rescale}|random_crop(224)|flip_lr|pca_lighting(0.1)|{imagenet.subtract_mean()}'


def dense_views(scales: tuple[int, ...]) -> tuple[str, ...]:
    """Sec. 3.2: each test scale Q, and its horizontal flip."""
    views = []
    for q in scales:
        base = f'decode(3)|resize_short({q})|center_crop({q})|{imagenet.subtract_mean()}'
        views += [base, base + '|hflip']
    return tuple(views)


def dense_crop_views(scales: tuple[int, ...]) -> tuple[str, ...]:
    """Sec. 3.2's dense evaluation as one view per Q holding the image and its flip under 'crops' (flip_views):
    the same posteriors as `dense_views`, in the form that multi-crop views share batch keys with."""
    return tuple(f'decode(3)|resize_short({q})|center_crop({q})|{imagenet.subtract_mean()}|flip_views' for q in scales)


def multi_crop_views(scales: tuple[int, ...]) -> tuple[str, ...]:
    """Sec. 3.2's multi-crop evaluation: per Q, 50 crops of 224 (5x5 grid over the whole rescaled image, and
    flips) under 'crops'; 150 crops over Q = 256, 384, 512."""
    return tuple(f'decode(3)|resize_short({q})|{imagenet.subtract_mean()}|grid_crops(224, n=5)' for q in scales)


def get_config(model: str, s_min: int = 256, s_max: int | None = None, test_scales: tuple[int, ...] = (256,)):
    c = imagenet.get_config()
    c.model.name = model
    c.model.input_size = 224  # Training crop; smaller multiples of 32 give small-image variants for smoke runs.
    c.data.train_preprocess = train_spec(s_min, s_max)
    c.data.eval_preprocess = f'decode(3)|resize_short(256)|center_crop(224)|{imagenet.subtract_mean()}'
    test = default.add_test_protocol(c, dense_views(test_scales), crops=False)
    test.model_overrides.dense = True
    c.batch_size = 256
    c.num_train_steps = 370_000
    c.optimizer.learning_rate = 0.01
    c.optimizer.schedule = 'plateau'
    c.optimizer.plateau_patience = 3
    c.evals.val.every = '1 epoch'
    c.checkpoint_every = '1 epoch'
    return c


# ---- The paper's Tables 3-5 as sweeps ----------------------------------------------------------------------

_ERRORS = (sweeps.Column('top-1 err.', 'eval.top1', error=True), sweeps.Column('top-5 err.', 'eval.top5', error=True))
# (configuration, training S (an int, or JITTER), test scales Q, the paper's top-1 / top-5 val. error).
TABLE3 = (
    ('A', 256, (256,), 29.6, 10.4), ('A-LRN', 256, (256,), 29.7, 10.5), ('B', 256, (256,), 28.7, 9.9),
    ('C', 256, (256,), 28.1, 9.4), ('C', 384, (384,), 28.1, 9.3), ('C', JITTER, (384,), 27.3, 8.8),
    ('D', 256, (256,), 27.0, 8.8), ('D', 384, (384,), 26.8, 8.7), ('D', JITTER, (384,), 25.6, 8.1),
    ('E', 256, (256,), 27.3, 9.0), ('E', 384, (384,), 26.9, 8.7), ('E', JITTER, (384,), 25.5, 8.0),
)
TABLE4 = (
    ('B', 256, (224, 256, 288), 28.2, 9.6),
    ('C', 256, (224, 256, 288), 27.7, 9.2), ('C', 384, (352, 384, 416), 27.8, 9.2),
    ('C', JITTER, (256, 384, 512), 26.3, 8.2),
    ('D', 256, (224, 256, 288), 26.6, 8.6), ('D', 384, (352, 384, 416), 26.5, 8.6),
    ('D', JITTER, (256, 384, 512), 24.8, 7.5),
    ('E', 256, (224, 256, 288), 26.9, 8.7), ('E', 384, (352, 384, 416), 26.7, 8.6),
    ('E', JITTER, (256, 384, 512), 24.8, 7.5),
)
# (configuration, evaluation method, the paper's top-1 / top-5 val. error); S in [256, 512], Q in {256, 384, 512}.
TABLE5 = (
    ('D', 'dense', 24.8, 7.5), ('D', 'multi-crop', 24.6, 7.5), ('D', 'multi-crop & dense', 24.4, 7.2),
    ('E', 'dense', 24.8, 7.5), ('E', 'multi-crop', 24.6, 7.4), ('E', 'multi-crop & dense', 24.4, 7.1),
)
_DEVIATIONS = ("Deviations: every net trains from scratch with this file's recipe (the paper initialised S=384 "
               'nets from S=256 ones with lr 1e-3, and the jittered nets by fine-tuning S=384 ones, sec. 3.1); '
               'dense evaluation scores the central QxQ square of the rescaled image, not the whole image.')


def _scale_text(s: int | tuple[int, int]) -> str:
    return f'[{s[0]};{s[1]}]' if isinstance(s, tuple) else str(s)


def _trained(config: str, s: int | tuple[int, int]) -> dict:
    return {'model.name': MODELS[config], 'data.train_preprocess': train_spec(*s) if isinstance(s, tuple)
            else train_spec(s)}


def _scale_sweep(title: str, table: str, rows, notes: str) -> sweeps.Sweep:
    runs = []
    for config, s, qs, top1, top5 in rows:
        label = f'{config} (S={_scale_text(s)}, Q={",".join(map(str, qs))})'
        name = f'{config}_S{"-".join(map(str, s)) if isinstance(s, tuple) else s}' + (
            f'_Q{qs[0]}-{qs[-1]}' if len(qs) > 1 else '')
        runs.append(sweeps.Run(label, {**_trained(config, s), 'evals.test.views': dense_views(qs)}, name=name,
                               paper={'top-1 err.': top1, 'top-5 err.': top5}))
    return sweeps.Sweep(title=title, source=f'Simonyan & Zisserman 2015 (ICLR, arXiv 1409.1556v6), {table}',
                        columns=_ERRORS, runs=tuple(runs), notes=notes + ' ' + _DEVIATIONS)


def _evaluation(method: str) -> dict:
    qs = JITTER_TEST_SCALES
    if method == 'dense':
        return {'evals.test.views': dense_views(qs)}
    views = multi_crop_views(qs) if method == 'multi-crop' else dense_crop_views(qs) + multi_crop_views(qs)
    return {'evals.test.views': views, 'evals.test.batch_keys': ('crops', 'label')}


def paper_sweeps() -> dict[str, sweeps.Sweep]:
    """Tables 3 (single test scale), 4 (multi-scale test) and 5 (dense vs multi-crop), as overrides of any VGG
    config of this family (each row sets the model, the training scale and the test views)."""
    table5 = tuple(sweeps.Run(f'{config}, {method}', {**_trained(config, JITTER), **_evaluation(method)},
                              name=f'{config}_{method.replace(" & ", "+")}',
                              paper={'top-1 err.': top1, 'top-5 err.': top5})
                   for config, method, top1, top5 in TABLE5)
    return {
        'table3': _scale_sweep(
            'Top-1 / top-5 val. error (%) at a single test scale (dense evaluation), ILSVRC-2012', 'Table 3', TABLE3,
            'Q = S for a fixed S, Q = 384 for S in [256;512] (sec. 4.1).'),
        'table4': _scale_sweep(
            'Top-1 / top-5 val. error (%) at multiple test scales (dense evaluation), ILSVRC-2012', 'Table 4', TABLE4,
            'Q = {S-32, S, S+32} for a fixed S, {256, 384, 512} for S in [256;512]; posteriors averaged (sec. 4.2).'),
        'table5': sweeps.Sweep(
            title='Top-1 / top-5 val. error (%): dense vs multi-crop evaluation, S in [256;512], Q in {256,384,512}',
            source='Simonyan & Zisserman 2015 (ICLR, arXiv 1409.1556v6), Table 5', columns=_ERRORS, runs=table5,
            notes='multi-crop: 50 crops of 224 per Q (5x5 grid over the whole rescaled image, and flips; '
                  'grid_crops), 150 in all. multi-crop & dense: one evaluator whose 6 views are the 3 dense scales '
                  '(each the image and its flip, flip_views) and the 3 multi-crop scales; the posteriors of the '
                  "views are averaged with equal weights, i.e. the mean of the two protocols' softmaxes (sec. 4.3). "
                  'The fc layers run as convolutions in every row (model_overrides.dense, the same on 224 crops). '
                  'Multi-crop rows score 50 crops per image: lower --config.eval_batch_size if memory is short. '
                  + _DEVIATIONS),
    }
