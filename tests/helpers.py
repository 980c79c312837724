"""Shared test utilities: tiny configs and reading parameters back from a workdir."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
from ml_collections import ConfigDict

from experiments import fast_rcnn_quickstart, faster_rcnn_quickstart, quickstart


def tiny_config(data_dir: str, **model) -> ConfigDict:
    """The quickstart recipe shrunk to a few steps; `model` replaces the model section (e.g. name='convnet')."""
    c = quickstart.get_config()
    c.data.data_dir = data_dir
    c.batch_size = 16
    c.num_train_steps = 3
    c.log_every = '1'
    c.evals.val.every = '1000'
    c.checkpoint_every = '1000'
    if model:
        c.model = ConfigDict(model)
    return c


def tiny_fast_rcnn(scenes_dir: str, **fields) -> ConfigDict:
    """The Fast R-CNN quickstart shrunk to 3 steps of a narrow body (stride-16 grid proposals) on `scenes_dir`;
    `fields` replace top-level config fields (e.g. num_train_steps=2)."""
    c = fast_rcnn_quickstart.get_config()
    c.data.data_dir = scenes_dir
    c.data.cache = False
    c.model.stage_widths = (8, 16)
    c.model.fc_features = 32
    c.detection.grid_stride = 16
    c.batch_size = c.eval_batch_size = 8
    c.num_train_steps = 3
    c.log_every = '1'
    c.checkpoint_every = ''
    c.optimizer.warmup_steps = 0
    for k, v in fields.items():
        setattr(c, k, v)
    return c


def tiny_faster_rcnn(scenes_dir: str, **fields) -> ConfigDict:
    """The Faster R-CNN quickstart shrunk as `tiny_fast_rcnn` (narrow body, 16-wide RPN conv, 3 steps) on
    `scenes_dir`; `fields` replace top-level config fields."""
    c = tiny_fast_rcnn(scenes_dir, **fields)
    q = faster_rcnn_quickstart.get_config()
    c.task, c.rpn = q.task, q.rpn
    c.detection.proposals, c.detection.bg_iou_low = q.detection.proposals, q.detection.bg_iou_low
    with c.model.ignore_type():
        c.model.name = q.model.name
        c.model.rpn_channels = 16
        c.model.anchor_sizes = q.model.anchor_sizes
        c.model.anchor_ratios = q.model.anchor_ratios
    return c


def final_params(workdir: str, step: int | None = None, net: str = 'model') -> dict:
    """The parameters of network `net` in the latest (or given) checkpoint of `workdir`, as numpy arrays."""
    return final_state(workdir, step)['nets'][net]['params']


def final_state(workdir: str, step: int | None = None) -> dict:
    """The whole train state stored in the latest (or given) checkpoint of `workdir`, as numpy arrays."""
    directory = os.path.join(workdir, 'checkpoints')
    if step is None:
        step = max(int(d) for d in os.listdir(directory) if d.isdigit())
    path = os.path.join(directory, str(step), 'state')
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with ocp.StandardCheckpointer() as ckptr:
        # Read onto one local device whatever topology wrote it (e.g. 2 processes x 4 devices).
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one_device),
                              ckptr.metadata(path).item_metadata.tree)
        tree = ckptr.restore(path, target)
    return jax.tree.map(np.asarray, tree)


def assert_trees_close(a, b, rtol=1e-5, atol=1e-6) -> None:
    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)


def assert_trees_equal(a, b) -> None:
    flat_a, tree_a = jax.tree.flatten(a)
    flat_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(flat_a, flat_b, strict=True):
        np.testing.assert_array_equal(x, y)
