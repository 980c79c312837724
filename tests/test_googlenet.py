"""Tests for GoogLeNet (paper and torchvision variants): counts and shapes via eval_shape, aux heads on small inputs."""

from __future__ import annotations

import functools

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convnets.models.googlenet as googlenet  # registers 'googlenet' and 'googlenet_torchvision'
from convnets.models.layers import LocalResponseNorm
from convnets.models.registry import UnknownModelArgumentError, get_model, list_models

KEY = jax.random.key(0)
IMAGE = (2, 224, 224, 3)

n_params = lambda tree: int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))
normal = lambda *shape, seed=0: jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def conv(k: int, c_in: int, c_out: int, bn: bool = False) -> int:
    """k x k conv weights plus a bias per map (paper) or BN's scale and shift per map (torchvision, no bias)."""
    return k * k * c_in * c_out + (2 * c_out if bn else c_out)


fc = lambda n_in, n_out: n_in * n_out + n_out

# Table 1 of the paper: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), written out again here.
TABLE1 = {
    "3a": (64, 96, 128, 16, 32, 32), "3b": (128, 128, 192, 32, 96, 64), "4a": (192, 96, 208, 16, 48, 64),
    "4b": (160, 112, 224, 24, 64, 64), "4c": (128, 128, 256, 24, 64, 64), "4d": (112, 144, 288, 32, 64, 64),
    "4e": (256, 160, 320, 32, 128, 128), "5a": (256, 160, 320, 32, 128, 128), "5b": (384, 192, 384, 48, 128, 128),
}
CHANNELS = {"3a": 256, "3b": 480, "4a": 512, "4b": 512, "4c": 512, "4d": 528, "4e": 832, "5a": 832, "5b": 1024}


def table1_counts(bn: bool = False, k5: int = 5) -> dict[str, int]:
    """Per-submodule parameter counts from the widths: stem, the nine modules (input = previous concat), fc."""
    counts = {"conv1_layer": conv(7, 3, 64, bn), "conv2_reduce_layer": conv(1, 64, 64, bn),
              "conv2_layer": conv(3, 64, 192, bn)}
    c_in = 192
    for block, (n1, n3r, n3, n5r, n5, proj) in TABLE1.items():
        counts[f"inception{block}_layer"] = (conv(1, c_in, n1, bn) + conv(1, c_in, n3r, bn) + conv(3, n3r, n3, bn)
                                             + conv(1, c_in, n5r, bn) + conv(k5, n5r, n5, bn) + conv(1, c_in, proj, bn))
        c_in = n1 + n3 + n5 + proj
        assert c_in == CHANNELS[block]
    counts["fc_layer"] = fc(1024, 1000)  # global average pool of 7x7x1024 -> linear 1000
    return counts


def aux_count(c_in: int, bn: bool = False) -> int:
    """Sec. 5: 1x1 conv 128 on the 4x4 pooled map, fc 4*4*128 -> 1024, fc 1024 -> 1000."""
    return conv(1, c_in, 128, bn) + fc(4 * 4 * 128, 1024) + fc(1024, 1000)


def init_shapes(model, shape=IMAGE, train=False):
    return jax.eval_shape(functools.partial(model.init, train=train), KEY, jnp.zeros(shape, jnp.float32))


def abstract_apply(model, variables, shape=IMAGE, train=False):
    """(logits, state) shapes of ``apply`` with intermediates, aux logits and BN statistics mutable (no compute)."""
    fn = lambda v, x: model.apply(v, x, train=train, rngs={"dropout": KEY},
                                  mutable=["intermediates", "aux_logits", "batch_stats"])
    return jax.eval_shape(fn, variables, jax.ShapeDtypeStruct(shape, jnp.float32))


def scaled_variables(model, shape, seed=0):
    """Random He-scaled parameters and fresh BN statistics, numpy-filled from eval_shape (compiling init is slow)."""
    rng = np.random.default_rng(seed)

    def fill(path, a):
        collection, leaf = path[0].key, path[-1].key
        if collection == "batch_stats":
            return jnp.zeros(a.shape) if leaf == "mean" else jnp.ones(a.shape)
        if leaf == "scale":
            return jnp.ones(a.shape)
        std = np.sqrt(2.0 / np.prod(a.shape[:-1])) if len(a.shape) > 1 else 0.1
        return jnp.asarray(rng.standard_normal(a.shape, dtype=np.float32) * np.float32(std))

    return jax.tree_util.tree_map_with_path(fill, init_shapes(model, shape))


def test_registration_and_bad_arguments():
    assert {"googlenet", "googlenet_torchvision"} <= set(list_models())
    assert get_model("googlenet").variant == "paper" and get_model("googlenet").aux_heads
    tv = get_model("googlenet_torchvision", num_classes=7)
    assert tv.variant == "torchvision" and tv.num_classes == 7
    with pytest.raises(ValueError, match="variant"):
        init_shapes(get_model("googlenet", variant="inception_v3"))
    with pytest.raises(UnknownModelArgumentError):
        get_model("googlenet", aux_logits=True)


def test_parameter_counts_match_table1_and_torchvision():
    paper = table1_counts()
    assert sum(paper.values()) == 6_998_552
    aux = {"aux1_layer": aux_count(512), "aux2_layer": aux_count(528)}  # on 4a (512 maps) and 4d (528 maps)
    assert aux == {"aux1_layer": 3_188_840, "aux2_layer": 3_190_888}
    counts = lambda model: {k: n_params(v) for k, v in init_shapes(model)["params"].items()}
    assert counts(get_model("googlenet", aux_heads=False)) == paper
    assert counts(get_model("googlenet")) == {**paper, **aux}  # 13,378,280 = 6,998,552 + the two heads
    # Table 1's params column is in units of 1024 weights, no biases; these rows match the widths (others,
    # e.g. conv1 2.7K, 4c 463K, 5a 1072K, do not: the widths define the network).
    weights = {"conv2": 64 * 64 + 9 * 64 * 192, "fc": 1024 * 1000}
    weights |= {b: paper[f"inception{b}_layer"] - sum(TABLE1[b]) for b in ("3a", "3b", "4b")}
    for row, kilo in {"conv2": 112, "3a": 159, "3b": 380, "4b": 437, "fc": 1000}.items():
        assert abs(weights[row] / 1024 - kilo) <= 1.5, row
    # torchvision: BN (scale + shift, no conv bias) and 3x3 in the "5x5" branch; its aux heads are shaped alike.
    tv = table1_counts(bn=True, k5=3)
    assert sum(tv.values()) == 6_624_904
    tv_aux = {"aux1_layer": aux_count(512, bn=True), "aux2_layer": aux_count(528, bn=True)}
    assert counts(get_model("googlenet_torchvision", aux_heads=False)) == tv
    assert counts(get_model("googlenet_torchvision")) == {**tv, **tv_aux}
    assert sum(tv.values()) + sum(tv_aux.values()) == 13_004_888  # torchvision googlenet(aux_logits=True)
    shapes = init_shapes(get_model("googlenet_torchvision"))
    assert shapes["params"]["inception3a_layer"]["b5x5"]["conv"]["kernel"].shape == (3, 3, 16, 32)
    assert "bias" not in shapes["params"]["conv1_layer"]["conv"] and "conv1_layer" in shapes["batch_stats"]
    paper_shapes = init_shapes(get_model("googlenet"))["params"]
    assert paper_shapes["inception3a_layer"]["b5x5"]["conv"]["kernel"].shape == (5, 5, 16, 32)
    assert paper_shapes["aux1_layer"]["fc"]["kernel"].shape == (2048, 1024)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_torchvision"])
def test_output_and_intermediate_shapes_at_224(name):
    model = get_model(name)
    logits, state = abstract_apply(model, init_shapes(model))
    assert logits.shape == (2, 1000)
    inter = {k: v[0].shape for k, v in state["intermediates"].items()}
    sizes = {"conv1": 112, "pool1": 56, "conv2_reduce": 56, "conv2": 56, "pool2": 28, "pool3": 14, "pool4": 7}
    assert {k: inter[k][1:3] for k in sizes} == {k: (s, s) for k, s in sizes.items()}
    spatial = {"3": 28, "4": 14, "5": 7}
    assert {b: inter[f"inception{b}"] for b in TABLE1} == {b: (2, spatial[b[0]], spatial[b[0]], c)
                                                            for b, c in CHANNELS.items()}
    assert inter["pool5"] == (2, 1024) and inter["fc"] == (2, 1000)
    assert ("norm1" in inter and "norm2" in inter) == (name == "googlenet")
    ten = get_model(name, num_classes=10)
    assert abstract_apply(ten, init_shapes(ten, (1, 224, 224, 3)), (1, 224, 224, 3))[0].shape == (1, 10)


@pytest.mark.parametrize("name", ["googlenet", "googlenet_torchvision"])
def test_aux_heads_present_in_training_absent_at_inference(name):
    model, no_aux = get_model(name, num_classes=10), get_model(name, num_classes=10, aux_heads=False)
    variables = init_shapes(model)  # as the trainer does: init with train=False
    tree = lambda v: jax.tree.map(lambda a: (a.shape, a.dtype), v)
    assert tree(variables) == tree({k: v for k, v in init_shapes(model, train=True).items() if k != "aux_logits"})
    assert {"aux1_layer", "aux2_layer"} <= set(variables["params"])
    logits, state = abstract_apply(model, variables, train=True)  # no new parameter is created in training
    assert logits.shape == (2, 10)
    assert {k: [a.shape for a in v] for k, v in state["aux_logits"].items()} == {"aux1": [(2, 10)], "aux2": [(2, 10)]}
    assert tree(state.get("batch_stats", {})) == tree(variables.get("batch_stats", {}))
    logits, state = abstract_apply(model, variables, train=False)  # "discarded at inference"
    assert logits.shape == (2, 10) and "aux_logits" not in state
    plain = init_shapes(no_aux)
    assert not {"aux1_layer", "aux2_layer"} & set(plain["params"]) and "aux_logits" not in plain
    assert "aux_logits" not in abstract_apply(no_aux, plain, train=True)[1]
    # Dropout (main and aux) draws from the 'dropout' rng in training only: inference needs no rng.
    x = jax.ShapeDtypeStruct(IMAGE, jnp.float32)
    assert jax.eval_shape(functools.partial(model.apply, mutable=["batch_stats"]), variables, x)[0].shape == (2, 10)
    with pytest.raises(flax.errors.InvalidRngError, match="dropout"):
        jax.eval_shape(functools.partial(model.apply, train=True, mutable=["batch_stats"]), variables, x)


def test_minimum_size_of_the_papers_aux_heads():
    size = googlenet.MIN_AUX_INPUT_SIZE  # 79 -> conv1 40 -> 20 -> 10 -> 5x5 at 4a: one 5x5/3 window
    params = init_shapes(get_model("googlenet"), (1, size, size, 3))["params"]
    assert params["aux1_layer"]["fc"]["kernel"].shape == (128, 1024)  # the fan-in follows the 1x1x128 pooled map
    with pytest.raises(ValueError, match="at least 79"):
        init_shapes(get_model("googlenet"), (1, size - 1, size - 1, 3))
    assert init_shapes(get_model("googlenet", aux_heads=False), (1, 32, 32, 3))
    assert init_shapes(get_model("googlenet_torchvision"), (1, 32, 32, 3))  # adaptive pool: any size


def test_adaptive_avg_pool_follows_torch_windows():
    x = normal(2, 14, 14, 3)
    windows = [(0, 4), (3, 7), (7, 11), (10, 14)]  # floor(i*14/4) .. ceil((i+1)*14/4) at 14 -> 4
    expected = np.stack([np.stack([np.asarray(x)[:, r0:r1, c0:c1].mean(axis=(1, 2)) for c0, c1 in windows], 1)
                         for r0, r1 in windows], 1)
    np.testing.assert_allclose(googlenet.adaptive_avg_pool(x, (4, 4)), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, size", [("googlenet", 96), ("googlenet_torchvision", 64)])
def test_forward_aux_heads_read_4a_and_4d(name, size):
    """A real training-mode pass on small images: the heads' logits are the heads applied to 4a's and 4d's output."""
    model = get_model(name, num_classes=10, dropout_rate=0.0, aux_dropout_rate=0.0)
    x = normal(2, size, size, 3, seed=1)
    variables = scaled_variables(model, x.shape)
    fwd = jax.jit(functools.partial(model.apply, train=True, mutable=["intermediates", "aux_logits", "batch_stats"]))
    logits, state = fwd(variables, x, rngs={"dropout": KEY})
    inter = {k: v[0] for k, v in state["intermediates"].items()}
    assert np.isfinite(np.asarray(logits)).all() and logits.shape == (2, 10)
    for head, block in (("aux1", "inception4a"), ("aux2", "inception4d")):
        sub = {k: v[f"{head}_layer"] for k, v in variables.items()}
        fn = functools.partial(googlenet.AuxHead(10, variant=model.variant, dropout_rate=0.0).apply, train=True,
                               mutable=["batch_stats"])
        expected, _ = jax.jit(fn)(sub, inter[block])
        np.testing.assert_allclose(state["aux_logits"][head][0], expected, rtol=1e-4, atol=1e-5)
    if model.variant == "paper":  # LRN after pool1 and after conv2 (Fig. 3)
        for norm, src in (("norm1", "pool1"), ("norm2", "conv2")):
            np.testing.assert_allclose(inter[norm], LocalResponseNorm().apply({}, inter[src]), rtol=1e-5, atol=1e-6)
    # Inference: no aux outputs, deterministic, and BN uses the running statistics.
    evaluate = jax.jit(functools.partial(model.apply, mutable=["aux_logits"]))
    (a, state), (b, _) = evaluate(variables, x), evaluate(variables, x)
    np.testing.assert_array_equal(a, b)
    assert "aux_logits" not in state


def test_initialisation():
    # Paper (BVLC Caffe replication): "xavier" = uniform, variance 1/fan_in; biases 0.2 except the classifiers.
    head = googlenet.AuxHead(1000)
    p = jax.jit(head.init)(KEY, jnp.zeros((1, 14, 14, 512)))["params"]
    w = np.asarray(p["fc"]["kernel"])  # fan-in 2048
    assert abs(w.std() * np.sqrt(2048) - 1) < 0.02 and np.abs(w).max() <= np.sqrt(3 / 2048)
    np.testing.assert_array_equal(p["conv"]["conv"]["bias"], np.float32(0.2))
    np.testing.assert_array_equal(p["fc"]["bias"], np.float32(0.2))
    np.testing.assert_array_equal(p["classifier"]["bias"], 0.0)
    # torchvision: N(0, 0.01) weights, BN scale 1 / shift 0, eps 1e-3 (BN normalises with the batch statistics).
    unit = googlenet.ConvUnit(64, 1, variant="torchvision")
    x = normal(4, 6, 6, 32, seed=2)
    v = jax.jit(unit.init)(KEY, x)
    assert abs(float(v["params"]["conv"]["kernel"].std()) / 0.01 - 1) < 0.05
    np.testing.assert_array_equal(v["params"]["bn"]["scale"], 1.0)
    y, _ = unit.apply(v, x, train=True, mutable=["batch_stats"])
    z = jnp.einsum("nhwc,cd->nhwd", x, v["params"]["conv"]["kernel"][0, 0])
    expected = jax.nn.relu((z - z.mean((0, 1, 2))) / jnp.sqrt(z.var((0, 1, 2)) + 1e-3))
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
