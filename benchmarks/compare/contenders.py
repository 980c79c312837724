"""The three implementations benchmarks/compare/side_by_side.py times: this project's train step, flax's
examples/imagenet ResNet (imported from a checkout of flax, never copied) and PyTorch + torchvision.

Each contender is built for one (model, batch, image size) and returns a `Runner`: `run(steps)` trains that many
steps on one fixed synthetic batch and returns only when they are done. All three do the same work: fp32, SGD with
momentum 0.9, coupled weight decay 1e-4, a constant rate, softmax cross-entropy, BatchNorm in training mode,
NHWC (torch: channels_last) on one device.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)  # this checkout's convnets and experiments

LEARNING_RATE, MOMENTUM, WEIGHT_DECAY = 0.1, 0.9, 1e-4
FLAX_MODELS = 'examples/imagenet/models.py'
FLAX_CLONE = 'git clone --depth 1 https://github.com/google/flax /tmp/flax'
# model -> (our experiment module, our model overrides, flax's class, torchvision's constructor)
MODELS = {
    'resnet18': ('resnet18', {}, 'ResNet18', 'resnet18'),
    # v1.5 strides (on the 3x3 conv), as flax's example and torchvision build ResNet-50.
    'resnet50': ('resnet50', {'stride_on': '3x3'}, 'ResNet50', 'resnet50'),
    'vgg11': ('vgg11', {}, None, 'vgg11'),
}
# --tiny: a one-block-per-stage ResNet-18 of width 8 in every implementation (flax: ResNet(stage_sizes=...)).
TINY = {'stage_sizes': (1, 1, 1, 1), 'width': 8}


class Unavailable(Exception):
    """This contender cannot run here (its library or checkout is missing); the message says how to get it."""


@dataclasses.dataclass
class Runner:
    name: str
    run: Callable[[int], None]  # trains n steps, blocking until they are done
    first_step_s: float  # building + compiling + the first step, cold


def _batch(batch: int, size: int, num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(batch, size, size, 3)).astype(np.float32),
            rng.integers(0, num_classes, batch).astype(np.int32))


# ---------------------------------------------------------------------------------------------- ours


def our_config(model: str, batch: int, size: int, num_classes: int, tiny: bool = False) -> Any:
    """The experiment's config with the comparison's settings: fp32, constant-rate SGD, one device's batch."""
    experiment, overrides, _, _ = MODELS[model]
    config = importlib.import_module(f'experiments.{experiment}').get_config()
    config.unlock()
    config.model.num_classes = num_classes
    for key, value in {**overrides, **(TINY if tiny else {})}.items():
        config.model[key] = value
    if model.startswith('vgg'):
        config.model.input_size = size  # fc6's window follows the image size
    if 'dtype' in config:
        config.dtype = 'float32'
    config.batch_size = batch
    config.parallel = 'shard_map'
    opt = config.optimizer
    opt.schedule, opt.learning_rate, opt.momentum, opt.weight_decay = 'constant', LEARNING_RATE, MOMENTUM, WEIGHT_DECAY
    opt.weight_decay_on, opt.warmup_steps, opt.nesterov = 'all', 0, False
    return config


def ours(model: str, batch: int, size: int, num_classes: int, tiny: bool = False) -> Runner:
    """This project's step: the experiment's task (`convnets.tasks.classification`) under `Parallel`, built and
    compiled as benchmarks/accelerator.py does (and the training loop)."""
    import jax

    from convnets import parallel

    accelerator = _accelerator_benchmark()
    t = time.perf_counter()
    config = our_config(model, batch, size, num_classes, tiny)
    images, labels = _batch(batch, size, num_classes)
    local = {'image': images, 'label': labels}
    compiled, place = accelerator.compile_step(config, local, parallel.make_mesh(jax.local_devices()[:1]))
    data = place(local)

    def run(steps: int) -> None:
        for _ in range(steps):
            compiled.state, metrics = compiled.step(compiled.state, data)
        jax.block_until_ready(metrics)

    run(1)
    return Runner('convnets', run, time.perf_counter() - t)


def _accelerator_benchmark() -> Any:
    """benchmarks/accelerator.py as a module (its step builder)."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if here not in sys.path:
        sys.path.insert(0, here)
    return importlib.import_module('accelerator')


# ---------------------------------------------------------------------------------------------- flax


def flax_models_path(flax_examples_dir: str) -> str:
    """examples/imagenet/models.py under a flax checkout (its root, its examples/ or examples/imagenet/)."""
    if not flax_examples_dir:
        raise Unavailable(f'no --flax_examples_dir: flax\'s examples are not in its pip wheel; `{FLAX_CLONE}` and '
                          f'pass --flax_examples_dir=/tmp/flax')
    root = os.path.abspath(os.path.expanduser(flax_examples_dir))
    for tail in (FLAX_MODELS, 'imagenet/models.py', 'models.py'):
        path = os.path.join(root, tail)
        if os.path.isfile(path):
            return path
    raise ValueError(f'--flax_examples_dir={flax_examples_dir}: no {FLAX_MODELS} there. Pass the root of a flax '
                     f'checkout ({FLAX_CLONE}), or its examples/imagenet directory.')


def load_flax_models(flax_examples_dir: str) -> Any:
    """flax's examples/imagenet/models.py, imported as a module from the checkout."""
    path = flax_models_path(flax_examples_dir)
    spec = importlib.util.spec_from_file_location('flax_examples_imagenet_models', path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # flax modules are dataclasses, which look their module up there
    spec.loader.exec_module(module)
    return module


def flax_example(model: str, batch: int, size: int, num_classes: int, tiny: bool = False,
                 flax_examples_dir: str = '') -> Runner:
    """flax's example ResNet (BatchNorm over the mapped axis 'batch', as its pmap-based train.py) with an optax
    SGD step written here: the loss, gradient and update every contender computes."""
    if MODELS[model][2] is None:
        raise Unavailable(f"flax's examples/imagenet defines no {model}")
    models = load_flax_models(flax_examples_dir)
    import jax
    import jax.numpy as jnp
    import optax
    from jax import lax
    from jax.sharding import Mesh
    from jax.sharding import PartitionSpec as P

    t = time.perf_counter()
    if tiny:
        net = models.ResNet(stage_sizes=list(TINY['stage_sizes']), block_cls=models.ResNetBlock,
                            num_classes=num_classes, num_filters=TINY['width'], dtype=jnp.float32)
    else:
        net = getattr(models, MODELS[model][2])(num_classes=num_classes, dtype=jnp.float32)
    tx = optax.chain(optax.add_decayed_weights(WEIGHT_DECAY), optax.sgd(LEARNING_RATE, momentum=MOMENTUM))
    images, labels = _batch(batch, size, num_classes)
    mesh = Mesh(np.array(jax.local_devices()[:1]), ('batch',))

    def init():
        variables = net.init(jax.random.key(0), jnp.zeros((1, size, size, 3)), train=False)
        return variables['params'], variables['batch_stats'], tx.init(variables['params'])

    def step(state, x, y):
        params, batch_stats, opt_state = state

        def loss_fn(p):
            logits, new = net.apply({'params': p, 'batch_stats': batch_stats}, x, train=True,
                                    mutable=['batch_stats'])
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean(), new['batch_stats']

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        grads = lax.pmean(grads, 'batch')
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), new_stats, opt_state), lax.pmean(loss, 'batch')

    compiled = jax.jit(jax.shard_map(step, mesh=mesh, in_specs=(P(), P('batch'), P('batch')),
                                     out_specs=(P(), P()), check_vma=False), donate_argnums=(0,))
    box = [jax.jit(init)()]
    x, y = jnp.asarray(images), jnp.asarray(labels)

    def run(steps: int) -> None:
        for _ in range(steps):
            box[0], loss = compiled(box[0], x, y)
        jax.block_until_ready(loss)

    run(1)
    return Runner('flax examples/imagenet', run, time.perf_counter() - t)


# ---------------------------------------------------------------------------------------------- torch


def preload_torch() -> None:
    """Imports torch and torchvision, if installed, before anything imports TensorFlow (which convnets does):
    torchvision 0.29 imported after TensorFlow 2.21 crashes the process (segmentation fault; seen here with torch
    2.14.1), the other order works."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError:
        pass  # torch_reference says so when it is asked for.


def torch_reference(model: str, batch: int, size: int, num_classes: int, tiny: bool = False) -> Runner:
    """torchvision's model, channels_last, torch.optim.SGD (coupled weight decay, as ours) on the CPU."""
    try:
        import torch
        import torchvision
    except ImportError as e:
        raise Unavailable(f'PyTorch is not installed ({e.name} missing): pip install torch torchvision') from None

    t = time.perf_counter()
    if tiny:
        from torchvision.models.resnet import BasicBlock, ResNet

        net = ResNet(BasicBlock, list(TINY['stage_sizes']), num_classes=num_classes)
    else:
        net = getattr(torchvision.models, MODELS[model][3])(num_classes=num_classes)
    net = net.to(memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(net.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)
    images, labels = _batch(batch, size, num_classes)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(memory_format=torch.channels_last)
    y = torch.from_numpy(labels).long()
    loss_fn = torch.nn.CrossEntropyLoss()

    def run(steps: int) -> None:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(x), y)
            loss.backward()
            opt.step()

    run(1)
    return Runner(f'PyTorch {torch.__version__} + torchvision (channels_last)', run, time.perf_counter() - t)
