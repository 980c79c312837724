"""Tests for the ImageNet models: AlexNet, ZF Net, VGG and the LRN layer (CPU; full-size shapes via eval_shape)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models import VGG, AlexNet, LocalResponseNorm, ZFNet, get_model, list_models
from convnets.models import vgg as vgg_module

KEY = jax.random.key(0)
# For tests of the real initialisers: XLA's RngBitGenerator compiles several times faster than threefry on CPU.
INIT_KEY = jax.random.key(0, impl="rbg")
IMAGE = (1, 224, 224, 3)
ALIASES = {"vgg11": "A", "vgg11_lrn": "A-LRN", "vgg13": "B", "vgg16_c": "C", "vgg16": "D", "vgg19": "E"}
NEW_MODELS = ("alexnet", "alexnet_one_tower", "zfnet", "vgg", *ALIASES)


normal = lambda *shape, seed=0, scale=1.0: jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale,
                                                         jnp.float32)
n_params = lambda tree: int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))
conv = lambda k, c_in, c_out, groups=1: k * k * (c_in // groups) * c_out + c_out  # weights + one bias per map
fc = lambda n_in, n_out: n_in * n_out + n_out


def param_shapes(model, shape=IMAGE, **init_kwargs):
    """Parameter shapes without running anything (jax.eval_shape)."""
    variables = jax.eval_shape(functools.partial(model.init, **init_kwargs), KEY, jnp.zeros(shape, jnp.float32))
    return variables.get("params", {})


def per_layer_counts(model, shape=IMAGE) -> dict[str, int]:
    return {name: n_params(sub) for name, sub in param_shapes(model, shape).items()}


def abstract_forward(model, shape=IMAGE):
    """(logits shape, {intermediate: shape}) from eval_shape: no compute."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, KEY, x)
    logits, state = jax.eval_shape(lambda v, inp: model.apply(v, inp, mutable=["intermediates"]), variables, x)
    return logits.shape, {k: v[0].shape for k, v in state["intermediates"].items()}


def scaled_variables(model, shape, seed=0, **init_kwargs):
    """Random parameters with He-scaled kernels (activations stay O(1) in deep nets), numpy-filled (no compile)."""
    rng = np.random.default_rng(seed)
    std = lambda a: np.float32(np.sqrt(2.0 / np.prod(a.shape[:-1])) if len(a.shape) > 1 else 0.1)
    fill = lambda a: jnp.asarray(rng.standard_normal(a.shape, dtype=np.float32) * std(a))
    return {"params": jax.tree.map(fill, param_shapes(model, shape, **init_kwargs))}


# ------------------------------------------------------------------------------------------------ registry
def test_registration_aliases_and_bad_hyperparameters():
    assert set(NEW_MODELS) <= set(list_models())
    assert get_model("alexnet").towers == 2 and get_model("alexnet_one_tower").towers == 1
    assert isinstance(get_model("zfnet"), ZFNet)
    for name, config in ALIASES.items():
        model = get_model(name, num_classes=7)
        assert isinstance(model, VGG) and model.config == config and model.num_classes == 7
    # Bad hyperparameters fail loudly.
    for model in (VGG(config="F"), VGG(weight_init="he"), AlexNet(towers=3), VGG(input_size=100)):
        with pytest.raises(ValueError):
            param_shapes(model)
    with pytest.raises(ValueError, match="227"):  # AlexNet's input must be input_size square
        param_shapes(AlexNet(input_size=224), (1, 227, 227, 3))


# -------------------------------------------------------------------------------------- parameter counts
# AlexNet, two towers, from the paper's layer description (Sec. 3.5, Fig. 2): conv2, conv4 and conv5 kernels see
# only their own tower's maps (5x5x48, 3x3x192, 3x3x192); conv3 sees all 256; fc6 sees pool5's 6x6x256 map.
FC_COUNTS = {"fc6_layer": fc(6 * 6 * 256, 4096), "fc7_layer": fc(4096, 4096), "fc8_layer": fc(4096, 1000)}
ALEXNET_COUNTS = {
    "conv1_layer": conv(11, 3, 96), "conv2_layer": conv(5, 96, 256, groups=2),  # 34,944; 5*5*48*256 + 256 = 307,456
    "conv3_layer": conv(3, 256, 384), "conv4_layer": conv(3, 384, 384, groups=2),  # 885,120; 3*3*192*384 + 384
    "conv5_layer": conv(3, 384, 256, groups=2), **FC_COUNTS,  # 3*3*192*256 + 256 = 442,624
}
# Weights that the two-tower grouping removes: half of each grouped kernel's input maps.
GROUPED_WEIGHTS = 5 * 5 * 48 * 256 + 3 * 3 * 192 * 384 + 3 * 3 * 192 * 256  # = 1,413,120
# ZF Net from Fig. 3: dense conv3-conv5 (no towers), conv2 sees all 96 maps, fc6 sees pool5's 6x6x256 map.
ZFNET_COUNTS = {  # 14,208; 614,656; 885,120; 1,327,488; 884,992; then AlexNet's FC layers
    "conv1_layer": conv(7, 3, 96), "conv2_layer": conv(5, 96, 256), "conv3_layer": conv(3, 256, 384),
    "conv4_layer": conv(3, 384, 384), "conv5_layer": conv(3, 384, 256), **FC_COUNTS,
}


def test_alexnet_and_zfnet_param_counts():
    assert sum(ALEXNET_COUNTS.values()) == 60_965_224 and GROUPED_WEIGHTS == 1_413_120
    assert per_layer_counts(get_model("alexnet")) == ALEXNET_COUNTS
    one = param_shapes(get_model("alexnet_one_tower"))
    assert n_params(one) - 60_965_224 == GROUPED_WEIGHTS
    assert one["conv2_layer"]["kernel"].shape == (5, 5, 96, 256)  # each conv2 kernel sees all 96 conv1 maps
    # Caffe's 227 crops with VALID conv1 give the same 55x55 maps, hence the same network.
    assert per_layer_counts(get_model("alexnet", input_size=227), (1, 227, 227, 3)) == ALEXNET_COUNTS
    # No LRN parameters; 2x2/2 pooling "produces output of equivalent dimensions" (Sec. 3.4): same counts.
    assert per_layer_counts(get_model("alexnet", lrn=False)) == ALEXNET_COUNTS
    assert per_layer_counts(get_model("alexnet", overlapping_pool=False)) == ALEXNET_COUNTS
    assert sum(ZFNET_COUNTS.values()) == 62_357_608
    assert per_layer_counts(get_model("zfnet")) == ZFNET_COUNTS


# VGG Table 1, column by column (conv3-W written W, conv1-W written 1:W; M: max pool; LRN: no parameters).
TABLE1 = {
    "A": "64 M 128 M 256 256 M 512 512 M 512 512 M",
    "A-LRN": "64 LRN M 128 M 256 256 M 512 512 M 512 512 M",
    "B": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
    "C": "64 64 M 128 128 M 256 256 1:256 M 512 512 1:512 M 512 512 1:512 M",
    "D": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
    "E": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
}
TORCHVISION = {"A": 132_863_336, "B": 133_047_848, "D": 138_357_544, "E": 143_667_240}


def table1_count(config: str) -> int:
    total, c_in = 0, 3
    for token in TABLE1[config].split():
        if token not in ("M", "LRN"):
            k, width = (1, int(token[2:])) if token.startswith("1:") else (3, int(token))
            total, c_in = total + conv(k, c_in, width), width
    # FC-4096, FC-4096, FC-1000 on the 7x7x512 map of a 224 image.
    return total + fc(7 * 7 * 512, 4096) + fc(4096, 4096) + fc(4096, 1000)


def test_vgg_param_counts_equal_torchvision_and_table1():
    assert {c: table1_count(c) for c in TORCHVISION} == TORCHVISION
    # A-LRN = A (LRN has no parameters); C = D with three 3x3 convs made 1x1: D - 8*(256*256 + 2*512*512).
    assert table1_count("A-LRN") == TORCHVISION["A"]
    assert table1_count("C") == TORCHVISION["D"] - 8 * (256 * 256 + 2 * 512 * 512) == 133_638_952
    counts = {c: n_params(param_shapes(VGG(config=c))) for c in TABLE1}
    assert counts == {c: table1_count(c) for c in TABLE1}
    assert {n: n_params(param_shapes(get_model(n))) for n in ALIASES} == {n: counts[c] for n, c in ALIASES.items()}
    c = {k: v["kernel"].shape for k, v in param_shapes(VGG(config="C")).items()}
    assert c["conv3_3_layer"] == (1, 1, 256, 256) and c["conv5_3_layer"] == (1, 1, 512, 512)


# ------------------------------------------------------------------------------ shapes and intermediates
def test_every_new_model_outputs_logits_at_224():
    for name in NEW_MODELS:
        assert abstract_forward(get_model(name), (2, 224, 224, 3))[0] == (2, 1000), name
        assert abstract_forward(get_model(name, num_classes=10), IMAGE)[0] == (1, 10), name


def test_alexnet_and_zfnet_intermediate_shapes():
    tail = {  # conv3-conv5, pool5 and the FC layers, alike in both
        "conv3": (2, 13, 13, 384), "conv4": (2, 13, 13, 384), "conv5": (2, 13, 13, 256), "pool5": (2, 6, 6, 256),
        "fc6": (2, 4096), "fc7": (2, 4096), "fc8": (2, 1000),
    }
    alexnet = {
        "conv1": (2, 55, 55, 96), "norm1": (2, 55, 55, 96), "pool1": (2, 27, 27, 96),
        "conv2": (2, 27, 27, 256), "norm2": (2, 27, 27, 256), "pool2": (2, 13, 13, 256), **tail,
    }
    image = (2, 224, 224, 3)
    assert abstract_forward(get_model("alexnet"), image) == ((2, 1000), alexnet)
    assert abstract_forward(get_model("alexnet", input_size=227), (2, 227, 227, 3)) == ((2, 1000), alexnet)
    # 2x2/2 pooling: the same sizes (55 -> 27 -> 13 -> 6); without LRN no norm intermediates.
    assert abstract_forward(get_model("alexnet", overlapping_pool=False), image) == ((2, 1000), alexnet)
    no_lrn = {k: v for k, v in alexnet.items() if not k.startswith("norm")}
    assert abstract_forward(get_model("alexnet", lrn=False), image) == ((2, 1000), no_lrn)
    zfnet = {  # Fig. 3: 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 6
        "conv1": (2, 110, 110, 96), "pool1": (2, 55, 55, 96), "norm1": (2, 55, 55, 96),
        "conv2": (2, 26, 26, 256), "pool2": (2, 13, 13, 256), "norm2": (2, 13, 13, 256), **tail,
    }
    assert abstract_forward(get_model("zfnet"), image) == ((2, 1000), zfnet)


def test_vgg_intermediate_shapes():
    _, inter = abstract_forward(get_model("vgg11_lrn"))
    assert inter["conv1_1"] == inter["norm1"] == (1, 224, 224, 64)
    pools = [(1, 112, 112, 64), (1, 56, 56, 128), (1, 28, 28, 256), (1, 14, 14, 512), (1, 7, 7, 512)]
    assert [inter[f"pool{s}"] for s in range(1, 6)] == pools
    assert "norm1" not in abstract_forward(get_model("vgg11"))[1]
    _, inter = abstract_forward(get_model("vgg19"))
    convs = {f"conv{s}_{i}" for s, n in enumerate((2, 2, 4, 4, 4), start=1) for i in range(1, n + 1)}
    assert {k for k in inter if k.startswith("conv")} == convs
    assert inter["fc6"] == inter["fc7"] == (1, 4096) and "score_map" not in inter


# ------------------------------------------------------------------------------------------------ towers
def channel_dependence(model, layer: str, in_shape) -> np.ndarray:
    """[input map, output map] total |d sum(output map) / d input map|, through the model's own submodule."""
    method = lambda m, inp: getattr(m, layer)(inp)
    x = normal(*in_shape, seed=1)
    variables = scaled_variables(model, in_shape, method=method)  # only that layer's parameters
    map_sums = lambda inp: model.apply(variables, inp, method=method).sum(axis=(0, 1, 2))
    jac = jax.jit(jax.jacrev(map_sums))(x)  # (out, N, H, W, in)
    return np.abs(np.asarray(jac)).sum(axis=(1, 2, 3)).T


def assert_two_towers(dep: np.ndarray) -> None:
    i, o = dep.shape[0] // 2, dep.shape[1] // 2
    assert (dep[:i, :o] > 0).all() and (dep[i:, o:] > 0).all()  # within a tower: connected
    assert (dep[i:, :o] == 0).all() and (dep[:i, o:] == 0).all()  # across towers: exactly zero


def test_alexnet_towers_are_real():
    two, one = get_model("alexnet"), get_model("alexnet_one_tower")
    # conv2 (13x13x96 input): tower-1 outputs (first 128 maps) see only tower-1 inputs (first 48 maps).
    assert_two_towers(channel_dependence(two, "conv2_layer", (1, 13, 13, 96)))  # a (96, 256) matrix
    # conv3 sees both towers: every output map depends on every input map.
    assert (channel_dependence(two, "conv3_layer", (1, 5, 5, 256)) > 0).all()
    assert_two_towers(channel_dependence(two, "conv4_layer", (1, 5, 5, 384)))
    assert_two_towers(channel_dependence(two, "conv5_layer", (1, 5, 5, 384)))
    # The LRN normalises each tower's maps on their own (Sec. 3.2: the GPUs communicate only in certain layers).
    dep = channel_dependence(two, "norm", (1, 3, 3, 96))
    assert (dep[48:, :48] == 0).all() and (dep[:48, 48:] == 0).all()
    assert dep[46, 47] > 0 and dep[49, 48] > 0  # the window is clipped at the tower boundary, not elsewhere
    # One tower: no grouping anywhere.
    assert (channel_dependence(one, "conv2_layer", (1, 13, 13, 96)) > 0).all()
    dep = channel_dependence(one, "norm", (1, 3, 3, 96))
    assert dep[47, 48] > 0 and dep[48, 47] > 0  # the window crosses the middle


# --------------------------------------------------------------------------------------------------- LRN
def lrn_reference(a, k=2.0, n=5, alpha=1e-4, beta=0.75, xp=np):
    """Sec. 3.3, b^i = a^i / (k + alpha sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} (a^j)^2)^beta, looping over channels
    in float64 NumPy (``xp=np``) or traceable by JAX (``xp=jnp``)."""
    a = a.astype(np.float64) if xp is np else a
    big_n, b = a.shape[-1], []
    for i in range(big_n):
        s = sum(a[..., j] ** 2 for j in range(max(0, i - n // 2), min(big_n - 1, i + n // 2) + 1))
        b.append(a[..., i] / (k + alpha * s) ** beta)
    return xp.stack(b, axis=-1)


CASES = [(2.0, 5, 1e-4, 0.75, 7, 40.0), (2.0, 5, 1e-4, 0.75, 3, 40.0), (1.0, 3, 0.05, 0.6, 6, 3.0)]


@pytest.mark.parametrize("k, n, alpha, beta, channels, scale", CASES)
def test_lrn_matches_papers_formula(k, n, alpha, beta, channels, scale):
    # scale makes alpha * sum(a^2) comparable to k, so an alpha divided by n (torch/Caffe) would be caught.
    a = normal(2, 4, 5, channels, seed=channels, scale=scale)
    got = np.asarray(jax.jit(LocalResponseNorm(k=k, n=n, alpha=alpha, beta=beta).apply)({}, a))
    expected = lrn_reference(np.asarray(a), k, n, alpha, beta)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert not np.allclose(expected, lrn_reference(np.asarray(a), k, n, alpha / n, beta), rtol=1e-3)


def test_lrn_defaults_and_groups():
    lrn = LocalResponseNorm()
    assert (lrn.k, lrn.n, lrn.alpha, lrn.beta, lrn.groups) == (2.0, 5, 1e-4, 0.75, 1)  # the paper's constants
    a = normal(2, 3, 3, 8, seed=3, scale=40.0)
    got = np.asarray(jax.jit(LocalResponseNorm(groups=2).apply)({}, a))
    expected = np.concatenate([lrn_reference(np.asarray(a)[..., :4]), lrn_reference(np.asarray(a)[..., 4:])], -1)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="odd"):
        LocalResponseNorm(n=4).apply({}, a)


def test_lrn_gradient_matches_the_formulas_gradient():
    """LRN must be differentiable (it is trained through): compare with autodiff of the per-channel loop."""
    a, weights = normal(2, 3, 3, 7, seed=6, scale=40.0), normal(2, 3, 3, 7, seed=7)
    got = jax.jit(jax.grad(lambda x: jnp.sum(LocalResponseNorm().apply({}, x) * weights)))(a)
    expected = jax.jit(jax.grad(lambda x: jnp.sum(lrn_reference(x, xp=jnp) * weights)))(a)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)


def test_zfnet_contrast_norm_is_lrn_after_pooling():
    model = get_model("zfnet", num_classes=10)
    x = normal(2, 64, 64, 3)
    _, state = jax.jit(functools.partial(model.apply, mutable=["intermediates"]))(scaled_variables(model, x.shape), x)
    inter = {k: np.asarray(v[0]) for k, v in state["intermediates"].items()}
    for i in (1, 2):  # Fig. 3: ReLU -> pool -> contrast normalisation; AlexNet's constants (module docstring)
        np.testing.assert_allclose(inter[f"norm{i}"], lrn_reference(inter[f"pool{i}"]), rtol=1e-5, atol=1e-6)
    assert (model.norm_k, model.norm_n, model.norm_alpha, model.norm_beta) == (2.0, 5, 1e-4, 0.75)


# -------------------------------------------------------------------------------------- dense evaluation
@pytest.mark.slow  # VGG at 224 and 288 (~6 s)
def test_vgg_dense_evaluation_equals_standard_at_224_and_runs_at_288():
    standard, dense = get_model("vgg11"), get_model("vgg11", dense=True)
    tree = lambda model, shape=IMAGE: jax.tree.map(lambda a: a.shape, param_shapes(model, shape))
    assert tree(standard) == tree(dense) == tree(dense, (1, 288, 288, 3))  # same parameters, any image size
    variables, x = scaled_variables(standard, IMAGE), normal(*IMAGE, seed=2)
    logits = jax.jit(standard.apply)(variables, x)
    dense_apply = jax.jit(functools.partial(dense.apply, mutable=["intermediates"]))
    dense_logits, state = dense_apply(variables, x)
    assert state["intermediates"]["score_map"][0].shape == (1, 1, 1, 1000)
    assert np.abs(np.asarray(logits)).max() > 1.0  # a meaningful comparison, not of near-zeros
    np.testing.assert_allclose(dense_logits, logits, rtol=1e-5, atol=1e-4)
    # 288 = 9 x 32: pool5 is 9x9, the 7x7 fc6 convolution gives a 3x3 class-score map, averaged into logits.
    big_logits, state = dense_apply(variables, normal(2, 288, 288, 3, seed=3))
    score_map = np.asarray(state["intermediates"]["score_map"][0])
    assert score_map.shape == (2, 3, 3, 1000) and big_logits.shape == (2, 1000)
    np.testing.assert_allclose(big_logits, score_map.mean(axis=(1, 2)), rtol=1e-5, atol=1e-5)
    assert not np.allclose(score_map[:, 0, 0], score_map[:, 2, 2])
    with pytest.raises(ValueError, match="dense=True"):
        standard.apply(variables, normal(1, 288, 288, 3))


def test_vgg_dense_equals_standard_on_narrow_c_and_small_input_size():
    for kwargs, size in (({"config": "C"}, 224), ({"config": "A-LRN", "input_size": 64}, 64)):
        small = {"stage_widths": (8, 8, 16, 16, 16), "fc_features": 32, "num_classes": 10, **kwargs}
        standard, dense = VGG(**small), VGG(dense=True, **small)
        x = normal(2, size, size, 3, seed=4)
        variables = scaled_variables(standard, x.shape)
        expected = jax.jit(standard.apply)(variables, x)
        np.testing.assert_allclose(jax.jit(dense.apply)(variables, x), expected, rtol=1e-5, atol=1e-5)
    assert param_shapes(VGG(input_size=32), (1, 32, 32, 3))["fc6_layer"]["kernel"].shape == (512, 4096)


# ----------------------------------------------------------------------------------------------- dropout
def test_dropout_only_in_train_mode():
    tiny_vgg = VGG(config="A", stage_widths=(8, 8, 8, 8, 8), fc_features=64, num_classes=10, input_size=32)
    alexnet, zfnet = get_model("alexnet", num_classes=10, input_size=95), get_model("zfnet", num_classes=10)
    fwd = jax.jit(lambda m, v, x, r, train: m.apply(v, x, train=train, rngs={"dropout": r}), static_argnums=(0, 4))
    r1, r2 = jax.random.key(1), jax.random.key(2)
    for model, shape in ((alexnet, (2, 95, 95, 3)), (zfnet, (2, 48, 48, 3)), (tiny_vgg, (2, 32, 32, 3))):
        run = functools.partial(fwd, model, scaled_variables(model, shape), normal(*shape, seed=5))
        a, b, again, e1, e2 = run(r1, True), run(r2, True), run(r1, True), run(r1, False), run(r2, False)
        assert not np.allclose(a, b) and not np.allclose(a, e1), type(model).__name__  # train: random masks
        np.testing.assert_array_equal(a, again)
        np.testing.assert_array_equal(e1, e2)  # eval: deterministic, the same as a call without rngs
        np.testing.assert_allclose(e1, jax.jit(model.apply)(*run.args[1:]), rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------- initialisation
def test_alexnet_init_follows_sec_5():
    model = get_model("alexnet", num_classes=10, input_size=95)
    params = jax.tree.map(np.asarray, jax.jit(model.init)(INIT_KEY, jnp.zeros((1, 95, 95, 3)))["params"])
    for layer in ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"):
        p = params[f"{layer}_layer"]
        expected_bias = 1.0 if layer in ("conv2", "conv4", "conv5", "fc6", "fc7") else 0.0
        np.testing.assert_array_equal(p["bias"], expected_bias, err_msg=layer)
        assert abs(p["kernel"].std() - 0.01) < 0.0005 and abs(p["kernel"].mean()) < 0.001, layer


def test_zfnet_and_vgg_init():
    zf = jax.jit(get_model("zfnet", num_classes=10).init)(INIT_KEY, jnp.zeros((1, 48, 48, 3)))["params"]
    for name, p in zf.items():
        np.testing.assert_array_equal(p["bias"], 0.0, err_msg=name)
        assert abs(float(p["kernel"].std()) - 0.01) < 0.0005, name
    # The model's own init, default ('paper') scheme; a small input_size keeps it cheap (fc6 sees a 1x1 map).
    model = VGG(config="A", stage_widths=(16, 16, 32, 64, 64), fc_features=256, num_classes=10, input_size=32)
    params = jax.jit(model.init)(INIT_KEY, jnp.zeros((1, 32, 32, 3)))["params"]
    for name, p in params.items():
        np.testing.assert_array_equal(p["bias"], 0.0, err_msg=name)
        assert name not in ("conv5_2_layer", "fc7_layer") or abs(float(p["kernel"].std()) / 0.01 - 1) < 0.03, name
    # Each scheme's initialisers (Sec. 3.1), on conv and dense kernel shapes.
    for scheme, std in (("paper", 0.01), ("paper_literal", 0.1), ("glorot", None)):
        inits = vgg_module._initializers(scheme)
        for shape in ((3, 3, 64, 128), (4096, 256)):
            w = np.asarray(inits["kernel_init"](INIT_KEY, shape))
            receptive = np.prod(shape[:-2])  # 9 for a 3x3 conv, 1 for a dense kernel
            expected = std if std is not None else np.sqrt(2.0 / (receptive * (shape[-2] + shape[-1])))
            assert abs(w.std() / expected - 1) < 0.03 and abs(w.mean()) < 0.03 * expected, (scheme, shape)
        np.testing.assert_array_equal(inits["bias_init"](KEY, (5,)), 0.0)
