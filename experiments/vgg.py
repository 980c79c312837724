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
"""

from experiments import default, imagenet


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
