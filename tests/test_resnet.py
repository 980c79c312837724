"""Tests for the ResNets of He et al. (2015): ImageNet (Table 1, options A/B/C, v1/v1.5, plain) and CIFAR-10
(Sec. 4.2). Full-size counts and shapes via jax.eval_shape; computed tests on small inputs (CPU)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convnets.models.resnet  # noqa: F401  (registers the ImageNet ResNets)
import convnets.models.resnet_cifar  # noqa: F401  (registers the CIFAR-10 ResNets)
from convnets.models.registry import get_model, list_models, model_fields
from convnets.models.resnet import ResidualBlock, ResNet, zero_pad_shortcut
from convnets.models.resnet_cifar import CifarResNet

KEY = jax.random.key(0)
INIT_KEY = jax.random.key(0, impl="rbg")  # compiles faster than threefry on CPU
IMAGENET = ("resnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet50_v1_5", "resnet101_v1_5",
            "resnet152_v1_5", "plain18", "plain34", "resnet18_a", "resnet34_a", "resnet34_c")
CIFAR = ("resnet_cifar", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
         "plain20", "plain32", "plain44", "plain56", "plain110")
TORCHVISION = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
               "resnet152": 60_192_808}

n_params = lambda tree: int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))
proj = lambda c_in, c_out: c_in * c_out + 2 * c_out  # 1x1 conv without bias + BN scale and shift


@functools.cache
def abstract(name: str, size: int = 224, **kwargs):
    """(params shapes, logits shape, intermediates shapes) of get_model(name, **kwargs), without compute."""
    model = get_model(name, **kwargs)

    def run(x):
        variables = model.init(KEY, x)
        logits, state = model.apply(variables, x, mutable=["intermediates"])
        return variables["params"], logits, state["intermediates"]

    params, logits, inter = jax.eval_shape(run, jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32))
    return params, logits.shape, jax.tree.map(lambda t: t[0].shape, inter, is_leaf=lambda a: isinstance(a, tuple))


count = lambda name, size=224, **kw: n_params(abstract(name, size, **kw)[0])
normal = lambda *shape, seed=0: jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def submodules(tree, name: str) -> list:
    """Every subtree stored under key ``name`` anywhere in a nested dict."""
    found = []
    for key, sub in tree.items():
        if key == name:
            found.append(sub)
        elif isinstance(sub, dict):
            found += submodules(sub, name)
    return found


# ------------------------------------------------------------------------------------------------ registry
def test_registry_names_fields_and_bad_options():
    assert set(IMAGENET) | set(CIFAR) | {"resnet1202"} <= set(list_models())
    model = get_model("resnet50_v1_5", num_classes=7)
    assert isinstance(model, ResNet) and model.stride_on == "3x3" and model.block == "bottleneck"
    assert get_model("resnet50").stride_on == "1x1"  # The paper's placement by default.
    assert model.stage_sizes == (3, 4, 6, 3) and model.num_classes == 7 and model.shortcut == "B"
    assert get_model("resnet152").stage_sizes == (3, 8, 36, 3) and get_model("resnet101").stage_sizes == (3, 4, 23, 3)
    assert get_model("plain34").residual is False and get_model("resnet34_a").shortcut == "A"
    assert isinstance(get_model("resnet110"), CifarResNet) and get_model("resnet110").depth == 110
    assert get_model("resnet20").shortcut == "A" and get_model("plain56").residual is False
    for field in ("stage_sizes", "block", "num_classes", "shortcut", "stride_on", "zero_init_last_bn", "residual",
                  "width", "init_mode", "bn_axis_name"):
        assert field in model_fields("resnet18")
    bad = [("resnet18", {"shortcut": "D"}), ("resnet18", {"block": "wide"}), ("resnet50", {"stride_on": "7x7"}),
           ("resnet18", {"init_mode": "fan_avg"}), ("resnet18", {"stage_sizes": (2, 2, 2)}),
           ("resnet_cifar", {"depth": 21})]
    for name, kwargs in bad:
        with pytest.raises(ValueError):
            abstract(name, 32, **kwargs)


# -------------------------------------------------------------------------------------- parameter counts
def test_imagenet_counts_equal_torchvision_and_v1_equals_v15():
    assert {name: count(name) for name in TORCHVISION} == TORCHVISION
    for depth in (50, 101, 152):  # only strides move
        assert count(f"resnet{depth}_v1_5") == TORCHVISION[f"resnet{depth}"]
    assert count("resnet18", 224, stride_on="3x3") == TORCHVISION["resnet18"]
    assert count("resnet18", 224, num_classes=10) == TORCHVISION["resnet18"] - 512 * 990 - 990


def test_shortcut_options_and_plain_counts_derived():
    b18 = TORCHVISION["resnet18"]
    # Option B projects where dims change: 64->128, 128->256, 256->512 (conv1_1 of stages 2-4).
    b18_proj = proj(64, 128) + proj(128, 256) + proj(256, 512)
    params = abstract("resnet18")[0]
    assert sum(n_params(p) for p in submodules(params, "proj_layer") + submodules(params, "proj_bn_layer")) == b18_proj
    assert count("resnet18_a") == count("resnet18", 224, shortcut="A") == b18 - b18_proj == 11_515_688
    assert count("plain18") == b18 - b18_proj  # same layers, no shortcuts
    # Option C adds a projection to each identity block: two in stage 1, one in each of stages 2-4.
    assert count("resnet18", 224, shortcut="C") == b18 + 2 * proj(64, 64) + proj(128, 128) + proj(256, 256) + proj(
        512, 512)
    b34, b34_proj = TORCHVISION["resnet34"], proj(64, 128) + proj(128, 256) + proj(256, 512)
    assert count("resnet34_a") == count("plain34") == b34 - b34_proj
    assert count("resnet34_c") == b34 + 3 * proj(64, 64) + 3 * proj(128, 128) + 5 * proj(256, 256) + 2 * proj(512, 512)
    # Bottleneck: option B also projects stage 1's 64 -> 256 (stride 1).
    b50_proj = proj(64, 256) + proj(256, 512) + proj(512, 1024) + proj(1024, 2048)
    assert count("resnet50", 224, shortcut="A") == TORCHVISION["resnet50"] - b50_proj
    for name in ("plain18", "plain34", "resnet18_a"):
        assert submodules(abstract(name)[0], "proj_layer") == []
    assert len(submodules(abstract("resnet34_c")[0], "proj_layer")) == 16  # every block


def cifar_count(n: int) -> int:
    """Sec. 4.2 by hand: conv3x3-16 + BN, then 2n 3x3 convs + BN per size (16, 32, 64), fc 64 -> 10."""
    conv_bn = lambda c_in, c_out: 9 * c_in * c_out + 2 * c_out
    total = conv_bn(3, 16) + 64 * 10 + 10
    for c_in, c in ((16, 16), (16, 32), (32, 64)):
        total += conv_bn(c_in, c) + (2 * n - 1) * conv_bn(c, c)  # option A: no projection parameters
    return total


def test_cifar_counts_match_table6():
    counts = {d: count(f"resnet{d}", 32) for d in (20, 32, 44, 56, 110)}
    assert counts == {d: cifar_count((d - 2) // 6) for d in counts}
    assert counts[20] == 269_722 and counts[56] == 853_018 and counts[110] == 1_727_962
    # Table 6 as reported: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M (and 19.4M for 1202 layers).
    assert [round(counts[d] / 1e6, 2) for d in (20, 32, 44, 56)] == [0.27, 0.46, 0.66, 0.85]
    assert round(counts[110] / 1e6, 1) == 1.7
    assert round(cifar_count(200) / 1e6, 1) == 19.4  # resnet1202 (not built here: ~10 s to trace 600 blocks)
    # "exactly the same depth, width, and number of parameters as the plain counterparts"
    assert all(count(f"plain{d}", 32) == counts[d] for d in counts)
    assert jax.tree.structure(abstract("plain20", 32)[0]) == jax.tree.structure(abstract("resnet20", 32)[0])


# ------------------------------------------------------------------------------ shapes and intermediates
def test_imagenet_output_and_stage_shapes_at_224():
    for name in IMAGENET:
        _, logits, inter = abstract(name)
        c = 4 if get_model(name).block == "bottleneck" else 1
        assert logits == (1, 1000), name
        assert inter["conv1"] == (1, 112, 112, 64) and inter["pool1"] == (1, 56, 56, 64), name
        stages = [inter[f"stage{s}"] for s in range(1, 5)]
        assert stages == [(1, 56, 56, 64 * c), (1, 28, 28, 128 * c), (1, 14, 14, 256 * c), (1, 7, 7, 512 * c)], name
        assert inter["avgpool"] == (1, 512 * c) and inter["fc"] == (1, 1000), name
    assert abstract("resnet50", 224, num_classes=10)[1] == (1, 10)
    n_blocks = lambda name: sum(k.startswith("stage") and "_block" in k for k in abstract(name)[0])
    assert [n_blocks(f"resnet{d}") for d in (18, 34, 50, 101, 152)] == [8, 16, 16, 33, 50]


def test_cifar_output_and_stage_shapes_at_32():
    for name in CIFAR:
        _, logits, inter = abstract(name, 32)
        assert logits == (1, 10), name
        assert inter["conv1"] == (1, 32, 32, 16), name
        assert [inter[f"stage{s}"] for s in (1, 2, 3)] == [(1, 32, 32, 16), (1, 16, 16, 32), (1, 8, 8, 64)], name
        assert inter["avgpool"] == (1, 64), name
    assert abstract("resnet20", 32, num_classes=100)[1] == (1, 100)


def test_stride_placement_v1_vs_v15():
    for s, (size, width) in enumerate(((28, 128), (14, 256), (7, 512)), start=2):
        v15 = abstract("resnet50_v1_5")[2][f"stage{s}_block1"]
        v1 = abstract("resnet50")[2][f"stage{s}_block1"]
        # v1 (paper): the first 1x1 already downsamples; v1.5 (torchvision): the 1x1 keeps the size, the 3x3 halves it.
        assert v1["conv1"] == (1, size, size, width) and v15["conv1"] == (1, 2 * size, 2 * size, width)
        assert v1["conv2"] == v15["conv2"] == (1, size, size, width)
        assert v1["conv3"] == v15["conv3"] == v1["shortcut"] == (1, size, size, 4 * width)
    same_shapes = lambda a, b: jax.tree.map(lambda x: x.shape, a) == jax.tree.map(lambda x: x.shape, b)
    assert same_shapes(abstract("resnet50")[0], abstract("resnet50_v1_5")[0])
    # Basic blocks: the first 3x3 downsamples under both settings.
    assert abstract("resnet18", 224, stride_on="3x3")[2] == abstract("resnet18")[2]
    assert abstract("resnet18")[2]["stage2_block1"]["conv1"] == (1, 28, 28, 128)


# ------------------------------------------------------------------------------------------------ shortcuts
def test_option_a_zero_padded_identity():
    x = normal(2, 6, 5, 4)
    y = zero_pad_shortcut(x, 8, 2)
    assert y.shape == (2, 3, 3, 8)
    np.testing.assert_array_equal(y[..., :4], x[:, ::2, ::2])
    np.testing.assert_array_equal(y[..., 4:], 0.0)
    assert zero_pad_shortcut(x, 4) is x
    with pytest.raises(ValueError):
        zero_pad_shortcut(x, 2)
    # Inside the network: stage 2's first shortcut is stage 1's output, subsampled and zero-padded.
    model = get_model("resnet_cifar", depth=8, width=4)
    x = normal(2, 32, 32, 3, seed=1)
    variables = model.init(INIT_KEY, x)
    _, state = model.apply(variables, x, mutable=["intermediates"])
    inter = jax.tree.map(lambda t: t[0], state["intermediates"], is_leaf=lambda a: isinstance(a, tuple))
    np.testing.assert_array_equal(inter["stage2_block1"]["shortcut"], zero_pad_shortcut(inter["stage1"], 8, 2))
    np.testing.assert_array_equal(inter["stage1_block1"]["shortcut"], inter["conv1"])  # plain identity


def test_zero_init_last_bn_blocks_start_as_relu_shortcut():
    for bottleneck, shortcut in ((False, "A"), (False, "B"), (True, "B"), (True, "C")):
        block = ResidualBlock(4, bottleneck=bottleneck, strides=2, shortcut=shortcut, zero_init_last_bn=True)
        x = normal(2, 8, 8, 3, seed=2)
        variables = block.init(INIT_KEY, x)
        last = "bn3_layer" if bottleneck else "bn2_layer"
        np.testing.assert_array_equal(variables["params"][last]["scale"], 0.0)
        assert float(jnp.min(variables["params"]["bn1_layer"]["scale"])) == 1.0
        for train in (False, True):
            y, state = block.apply(variables, x, train, mutable=["intermediates", "batch_stats"])
            sc = state["intermediates"]["shortcut"][0]
            np.testing.assert_allclose(y, jax.nn.relu(sc), atol=1e-6)
            assert float(jnp.abs(sc).max()) > 0
    params = abstract("resnet50", 224, zero_init_last_bn=True)[0]
    assert len(submodules(params, "bn3_layer")) == 16 and submodules(params, "bn2_layer") != []
    # Whole network: every block's branch ends at exactly 0, so each stage output is relu(last shortcut).
    model = get_model("resnet_cifar", depth=14, width=4, zero_init_last_bn=True)
    x = normal(2, 32, 32, 3, seed=3)
    _, state = model.apply(model.init(INIT_KEY, x), x, mutable=["intermediates"])
    inter = state["intermediates"]
    for s in (1, 2, 3):
        for b in (1, 2):
            np.testing.assert_array_equal(inter[f"stage{s}_block{b}"]["conv2"][0], 0.0)
        np.testing.assert_array_equal(inter[f"stage{s}"][0], jax.nn.relu(inter[f"stage{s}_block2"]["shortcut"][0]))


def test_plain_network_has_no_shortcut_additions():
    x = normal(2, 32, 32, 3, seed=4)
    res = get_model("resnet_cifar", depth=8, width=4)
    plain = get_model("resnet_cifar", depth=8, width=4, residual=False)
    variables = res.init(INIT_KEY, x)  # identical parameter trees (option A)
    y_res, state = res.apply(variables, x, mutable=["intermediates"])
    y_plain, plain_state = plain.apply(variables, x, mutable=["intermediates"])
    assert not np.allclose(y_res, y_plain)
    assert "shortcut" not in plain_state["intermediates"]["stage1_block1"]
    # Plain, block by block: relu(branch) only. Zero-initialised last BNs then zero every block's output (no
    # identity path carries the signal), so the logits are the fc bias (0) whatever the input.
    block = plain_state["intermediates"]["stage1_block1"]
    np.testing.assert_allclose(plain_state["intermediates"]["stage1"][0], jax.nn.relu(block["conv2"][0]), atol=1e-6)
    zero_plain = get_model("resnet_cifar", depth=8, width=4, residual=False, zero_init_last_bn=True)
    np.testing.assert_array_equal(zero_plain.apply(zero_plain.init(INIT_KEY, x), x), 0.0)
    zero_res = get_model("resnet_cifar", depth=8, width=4, zero_init_last_bn=True)
    assert float(jnp.abs(zero_res.apply(zero_res.init(INIT_KEY, x), x)).max()) > 0


# ------------------------------------------------------------------------------------- BN state and init
def test_batch_stats_updated_in_training_and_synced_over_axis():
    model = get_model("resnet_cifar", depth=8, width=4)
    x = normal(4, 32, 32, 3, seed=5) + 1.0
    variables = model.init(INIT_KEY, x)
    stats = variables["batch_stats"]
    bn_channels = 4 + (4 + 4) + (8 + 8) + (16 + 16)  # stem; stages 1-3: one block each, two BNs, option A
    assert n_params(stats) == 2 * bn_channels  # mean and var per channel
    assert set(stats["stage1_block1"]) == {"bn1_layer", "bn2_layer"}
    y_eval = model.apply(variables, x)  # train=False needs no mutable collection
    y, updated = model.apply(variables, x, train=True, mutable=["batch_stats"])
    assert jax.tree.structure(updated["batch_stats"]) == jax.tree.structure(stats)
    mean = updated["batch_stats"]["bn1_layer"]["mean"]
    assert float(jnp.abs(mean).max()) > 0 and not np.allclose(y, y_eval)
    assert all(not np.allclose(a, b) for a, b in zip(jax.tree.leaves(updated["batch_stats"]), jax.tree.leaves(stats),
                                                     strict=True))
    # bn_axis_name reaches every block: statistics over two vmapped halves equal those of the whole batch.
    synced = get_model("resnet_cifar", depth=8, width=4, bn_axis_name="d")
    halves = jax.vmap(lambda xs: synced.apply(variables, xs, train=True, mutable=["batch_stats"]), axis_name="d")
    y_h, upd_h = halves(x.reshape(2, 2, 32, 32, 3))
    np.testing.assert_allclose(y_h.reshape(y.shape), y, rtol=1e-4, atol=1e-5)
    for a, b in zip(jax.tree.leaves(upd_h["batch_stats"]), jax.tree.leaves(updated["batch_stats"]), strict=True):
        np.testing.assert_allclose(a[0], b, rtol=1e-4, atol=1e-6)


def test_he_initialisation_fan_in_and_fan_out():
    x = jnp.zeros((1, 4, 4, 256))
    for mode in ("fan_in", "fan_out"):
        params = ResidualBlock(64, bottleneck=True, init_mode=mode).init(INIT_KEY, x)["params"]
        kernel = params["conv1_layer"]["kernel"]  # 1x1, 256 -> 64
        fan = 256 if mode == "fan_in" else 64
        assert kernel.shape == (1, 1, 256, 64) and "bias" not in params["conv1_layer"]
        np.testing.assert_allclose(float(jnp.std(kernel)), np.sqrt(2.0 / fan), rtol=0.05)
    model = get_model("resnet18", num_classes=10)
    y = model.apply(model.init(INIT_KEY, normal(1, 64, 64, 3)), normal(1, 64, 64, 3, seed=6))
    assert y.shape == (1, 10) and bool(jnp.isfinite(y).all())


# --------------------------------------------------------------------- conv_bias / bn_epsilon (Keras' ResNet50)
def test_resnet50_keras_has_conv_biases_and_keras_epsilon():
    """Keras' ResNet50 (keras/src/applications/resnet.py): a bias on all 53 convs (projections included), BN
    epsilon 1.001e-5; Keras counts 25,583,592 trainable parameters. The defaults are unchanged."""
    keras_model, default = get_model("resnet50_keras"), get_model("resnet50")
    assert (keras_model.conv_bias, keras_model.bn_epsilon, keras_model.stride_on) == (True, 1.001e-5, "1x1")
    assert (default.conv_bias, default.bn_epsilon) == (False, 1e-5)
    assert count("resnet50") == TORCHVISION["resnet50"] == 25_557_032
    params = abstract("resnet50_keras")[0]
    convs = [c for key in ("conv1_layer", "conv2_layer", "conv3_layer", "proj_layer") for c in submodules(params, key)]
    assert len(convs) == 53 and all(set(c) == {"kernel", "bias"} for c in convs)
    assert count("resnet50_keras") == 25_557_032 + sum(int(c["bias"].shape[0]) for c in convs) == 25_583_592
    assert all(set(c) == {"kernel"} for c in submodules(abstract("resnet50")[0], "conv1_layer"))
    assert jax.tree.structure(abstract("resnet50_keras")[2]) == jax.tree.structure(abstract("resnet50")[2])


def test_bn_epsilon_reaches_every_batch_norm():
    """At initialisation (running mean 0, variance 1, scale 1, shift 0) an eval-mode BN divides by
    sqrt(1 + eps): eps = 3 halves each BN's output relative to eps = 0, so with bias-free convs a bottleneck's
    conv{i} outputs shrink by 2^-i and the projection's by 1/2."""
    x = normal(2, 8, 8, 3, seed=3)
    outputs = {}
    for eps in (0.0, 3.0):
        block = ResidualBlock(4, bottleneck=True, strides=2, bn_epsilon=eps)
        variables = block.init(INIT_KEY, x)  # the same key: the same kernels for both
        _, state = block.apply(variables, x, mutable=["intermediates"])
        outputs[eps] = jax.tree.map(lambda t: t[0], state["intermediates"], is_leaf=lambda a: isinstance(a, tuple))
    for name, factor in (("conv1", 1 / 2), ("conv2", 1 / 4), ("conv3", 1 / 8), ("shortcut", 1 / 2)):
        np.testing.assert_allclose(outputs[3.0][name], factor * outputs[0.0][name], rtol=1e-5, atol=1e-6)
    stem = {eps: get_model("resnet18", num_classes=3, bn_epsilon=eps) for eps in (0.0, 3.0)}
    x = normal(1, 32, 32, 3, seed=4)
    variables = stem[0.0].init(INIT_KEY, x)
    conv1 = {eps: m.apply(variables, x, mutable=["intermediates"])[1]["intermediates"]["conv1"][0]
             for eps, m in stem.items()}
    np.testing.assert_allclose(conv1[3.0], conv1[0.0] / 2, rtol=1e-5, atol=1e-6)
