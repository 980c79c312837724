"""Tests for convnets.models: registry, the lecture's ConvNet and LeNet-5 (all on CPU, a few seconds)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from convnets.models import C3_TABLE, ConvNet, LeNet5, get_model, list_models, register
from convnets.models.layers import LECUN_A, LECUN_S, TrainableSubsampling, scaled_tanh
from convnets.models.lenet import rbf_centres

KEY = jax.random.key(0)


def init(model, x):
    """Jitted ``model.init`` (eager flax dispatch is slow on CPU)."""
    return jax.jit(model.init)(KEY, x)


def apply(model, variables, x, **kwargs):
    """Jitted ``model.apply(variables, x, **kwargs)``."""
    return jax.jit(functools.partial(model.apply, **kwargs))(variables, x)


def random_variables(model, shape, seed=0):
    """Variables of the right shapes filled from numpy (no init compile), for tests not about init."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, KEY, jnp.zeros(shape, jnp.float32))
    return jax.tree.map(lambda a: jnp.asarray(rng.uniform(-0.3, 0.3, a.shape), jnp.float32), shapes)


def normal(*shape, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def n_params(tree) -> int:
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree.leaves(tree)))


def param_shapes(model, shape):
    """Parameter shapes without running anything (jax.eval_shape)."""
    return jax.eval_shape(model.init, KEY, jnp.zeros(shape, jnp.float32))["params"]


def per_layer_counts(model, shape) -> dict[str, int]:
    return {name: n_params(sub) for name, sub in param_shapes(model, shape).items()}


# ----------------------------------------------------------------------------------------------- registry


def test_importing_package_registers_every_model():
    names = list_models()
    assert names == sorted(names)
    assert {"convnet", "convnet_bn", "lenet5", "lenet5_rbf"} <= set(names)


def test_get_model_passes_kwargs_and_aliases():
    m = get_model("convnet", num_filters=4, num_classes=7)
    assert isinstance(m, ConvNet) and m.num_filters == 4 and m.num_classes == 7
    assert get_model("convnet_bn").batch_norm is True
    rbf = get_model("lenet5_rbf", num_classes=5)
    assert isinstance(rbf, LeNet5) and rbf.output == "rbf" and rbf.num_classes == 5


def test_unknown_model_name_lists_names_and_suggests():
    with pytest.raises(ValueError) as err:
        get_model("lenet")
    msg = str(err.value)
    assert "'lenet'" in msg
    assert "Did you mean 'lenet5'?" in msg
    for name in list_models():
        assert name in msg


def test_unknown_kwarg_names_it_and_lists_fields():
    with pytest.raises(TypeError) as err:
        get_model("convnet", num_filter=3)
    assert isinstance(err.value, ValueError)  # callers may catch either
    msg = str(err.value)
    assert "'num_filter'" in msg and "did you mean 'num_filters'?" in msg
    for field in ("num_classes", "num_filters", "kernel_size", "batch_norm", "bn_axis_name"):
        assert field in msg
    with pytest.raises(ValueError, match="c3_table"):
        get_model("lenet5", c3table=False)


def test_register_rejects_name_clash():
    class Other(ConvNet):
        pass

    with pytest.raises(ValueError, match="already registered"):
        register("convnet", Other)


# ----------------------------------------------------------------------------------------------- ConvNet


def test_convnet_param_counts():
    # Section 0: CONV 12 x (3x3x3) + 12 biases = 336; FC (16*16*12) * 10 + 10 = 30,730; total 31,066.
    counts = per_layer_counts(get_model("convnet"), (1, 32, 32, 3))
    assert counts == {"conv1_layer": 336, "fc_layer": 30_730}
    assert sum(counts.values()) == 31_066
    # BN variant: conv without bias (324), BN scale + bias (24), FC 30,730.
    counts = per_layer_counts(get_model("convnet_bn"), (1, 32, 32, 3))
    assert counts == {"conv1_layer": 324, "bn1_layer": 24, "fc_layer": 30_730}


def test_convnet_shapes_and_intermediates():
    model = get_model("convnet")
    x = normal(2, 32, 32, 3)
    variables = random_variables(model, x.shape)
    logits, state = apply(model, variables, x, mutable=["intermediates"])
    assert logits.shape == (2, 10)
    inter = {k: v[0].shape for k, v in state["intermediates"].items()}
    assert inter == {
        "conv1": (2, 32, 32, 12), "relu1": (2, 32, 32, 12), "pool1": (2, 16, 16, 12), "fc": (2, 10),
    }
    np.testing.assert_array_equal(state["intermediates"]["fc"][0], logits)
    # Any input size/channels (e.g. the 8x8 grey digits).
    small = get_model("convnet", num_classes=3)
    y = apply(small, random_variables(small, (1, 8, 8, 1)), jnp.ones((4, 8, 8, 1)))
    assert y.shape == (4, 3)


def test_convnet_bn_updates_batch_stats_with_momentum_0_9():
    model = get_model("convnet_bn")
    x = normal(4, 8, 8, 3) * 3.0 + 1.0
    shapes = jax.eval_shape(model.init, KEY, x)
    assert jax.tree.map(lambda a: a.shape, shapes["batch_stats"]) == {"bn1_layer": {"mean": (12,), "var": (12,)}}
    variables = bn_variables(x.shape)
    _, state = apply(model, variables, x, train=True, mutable=["batch_stats", "intermediates"])
    conv = state["intermediates"]["conv1"][0]
    stats = state["batch_stats"]["bn1_layer"]
    np.testing.assert_allclose(stats["mean"], 0.1 * conv.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(stats["var"], 0.9 + 0.1 * conv.var(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    # Eval mode uses the running averages (initially mean 0, var 1) and needs no mutable collection.
    _, state = apply(model, variables, x, train=False, mutable=["intermediates"])
    conv, bn = state["intermediates"]["conv1"][0], state["intermediates"]["bn1"][0]
    np.testing.assert_allclose(bn, conv / np.sqrt(1.0 + 1e-5), rtol=1e-5, atol=1e-6)


def bn_variables(shape):
    """ConvNet-BN variables: random conv/fc weights; BN scale 1, bias 0, running mean 0, var 1 (as init)."""
    variables = random_variables(ConvNet(batch_norm=True), shape)
    params = dict(variables["params"], bn1_layer={"scale": jnp.ones((12,)), "bias": jnp.zeros((12,))})
    stats = {"mean": jnp.zeros((12,)), "var": jnp.ones((12,))}
    return {"params": params, "batch_stats": {"bn1_layer": stats}}


def _bn_reference(x_full):
    ref = ConvNet(batch_norm=True)
    variables = bn_variables(x_full.shape)
    return variables, apply(ref, variables, x_full, train=True, mutable=["batch_stats"])


def test_convnet_bn_axis_name_under_vmap_matches_full_batch():
    replicas, per_replica = 4, 3
    x = normal(replicas, per_replica, 8, 8, 3) * 2.0 + 0.5
    variables, (y_ref, state_ref) = _bn_reference(x.reshape(-1, 8, 8, 3))

    def step(model, v, xs):
        return model.apply(v, xs, train=True, mutable=["batch_stats"])

    synced = ConvNet(batch_norm=True, bn_axis_name="data")
    vmapped = jax.vmap(lambda v, xs: step(synced, v, xs), in_axes=(None, 0), axis_name="data")
    y, state = jax.jit(vmapped)(variables, x)
    np.testing.assert_allclose(y.reshape(-1, 10), y_ref, rtol=1e-4, atol=1e-5)
    for key in ("mean", "var"):
        ref = state_ref["batch_stats"]["bn1_layer"][key]
        got = state["batch_stats"]["bn1_layer"][key]
        assert got.shape == (replicas, 12)
        np.testing.assert_allclose(got, np.broadcast_to(ref, got.shape), rtol=1e-5, atol=1e-6)

    # Without the axis name each replica normalises with its own statistics: the test above is meaningful.
    unsynced = ConvNet(batch_norm=True)
    _, state = jax.jit(jax.vmap(lambda v, xs: step(unsynced, v, xs), in_axes=(None, 0)))(variables, x)
    assert not np.allclose(state["batch_stats"]["bn1_layer"]["mean"][0], state_ref["batch_stats"]["bn1_layer"]["mean"])


def test_convnet_bn_axis_name_under_shard_map_matches_full_batch():
    n = jax.device_count()  # 1, or 8 with the lead's conftest
    mesh = Mesh(np.array(jax.devices()), ("data",))
    x = normal(2 * n, 8, 8, 3) * 2.0 + 0.5
    variables, (y_ref, state_ref) = _bn_reference(x)
    synced = ConvNet(batch_norm=True, bn_axis_name="data")
    step = jax.shard_map(
        lambda v, xs: synced.apply(v, xs, train=True, mutable=["batch_stats"]),
        mesh=mesh, in_specs=(P(), P("data")), out_specs=(P("data"), P()),
    )
    y, state = jax.jit(step)(variables, x)
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state, state_ref)


# ----------------------------------------------------------------------------------------------- LeNet-5

# Table I of LeCun et al. (1998) as printed: rows are S2 feature maps 0-5, columns C3 feature maps 0-15,
# X = connected ('.' stands for the paper's blank).
PAPER_TABLE_I = """
     0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
0    X . . . X X X . . X X  X  X  .  X  X
1    X X . . . X X X . . X  X  X  X  .  X
2    X X X . . . X X X . .  X  .  X  X  X
3    . X X X . . X X X X .  .  X  .  X  X
4    . . X X X . . X X X X  .  X  X  .  X
5    . . . X X X . . X X X  X  .  X  X  X
"""


def _parse_paper_table() -> np.ndarray:
    lines = PAPER_TABLE_I.strip().splitlines()
    assert lines[0].split() == [str(j) for j in range(16)]
    rows = []
    for i, line in enumerate(lines[1:]):
        cells = line.split()
        assert cells[0] == str(i) and len(cells) == 17
        rows.append([c == "X" for c in cells[1:]])
    return np.array(rows, dtype=bool)


def test_c3_table_is_papers_table_i():
    assert C3_TABLE.shape == (6, 16) and C3_TABLE.dtype == bool
    np.testing.assert_array_equal(C3_TABLE, _parse_paper_table())
    assert C3_TABLE.sum() == 60
    # In-degrees: maps 0-5 see 3 S2 maps, 6-14 see 4, map 15 sees all 6.
    np.testing.assert_array_equal(C3_TABLE.sum(axis=0), [3] * 6 + [4] * 9 + [6])


# LeNet-5 parameter counts derived from the paper's layer description (Sec. II.B), 32x32x1 input:
#   C1: 6 maps x (5*5*1 weights + 1 bias)                          =    156
#   S2: 6 maps x (1 coefficient + 1 bias)                          =     12
#   C3: 60 connections (Table I) x 25 weights + 16 biases           =  1,516
#   S4: 16 maps x (1 coefficient + 1 bias)                         =     32
#   C5: 120 maps x (16*25 weights + 1 bias)                        = 48,120
#   F6: 84 units x (120 weights + 1 bias)                          = 10,164
#   C1..F6 (the paper's "60,000 trainable parameters")             = 60,000
#   output, softmax (our deviation): 84*10 + 10                    =    850  -> 60,850
#   output, RBF: fixed centres, no parameters                      =      0  -> 60,000
#   c3_table=False: C3 becomes 16 x (6*25 + 1) = 2,416, i.e. +900.
LENET_COUNTS = {
    "C1_layer": 156, "S2_layer": 12, "C3_layer": 1_516, "S4_layer": 32,
    "C5_layer": 48_120, "F6_layer": 10_164, "output_layer": 850,
}


def test_lenet5_param_counts():
    shape = (1, 32, 32, 1)
    assert per_layer_counts(get_model("lenet5"), shape) == LENET_COUNTS
    assert n_params(param_shapes(get_model("lenet5"), shape)) == 60_850
    rbf = per_layer_counts(get_model("lenet5", output="rbf"), shape)
    assert rbf == {k: v for k, v in LENET_COUNTS.items() if k != "output_layer"}
    assert sum(rbf.values()) == 60_000
    full = per_layer_counts(get_model("lenet5", c3_table=False), shape)
    assert full["C3_layer"] == 2_416 and sum(full.values()) == 60_850 + 900
    # The table stores only the 60 connected 5x5 kernels.
    assert param_shapes(get_model("lenet5"), shape)["C3_layer"]["kernel"].shape == (5, 5, 60)


@pytest.fixture(scope="module")
def lenet_variables():
    """LeNet-5 (softmax) variables from the real initialiser, 32x32x1 input; shared to save compiles."""
    return init(LeNet5(), jnp.zeros((1, 32, 32, 1)))


def _c3_dependence(model: LeNet5, variables) -> np.ndarray:
    """[S2 map, C3 map] total |d sum(C3 map) / d S2 map|, through the model's own C3 submodule."""
    s2 = normal(1, 14, 14, 6, seed=1)

    def c3_map_sums(s):
        return model.apply(variables, s, method=lambda m, inp: m.C3_layer(inp)).sum(axis=(0, 1, 2))

    jac = jax.jit(jax.jacrev(c3_map_sums))(s2)  # (16, 1, 14, 14, 6)
    return np.abs(np.asarray(jac)).sum(axis=(1, 2, 3)).T


def test_c3_connections_follow_table_i(lenet_variables):
    dep = _c3_dependence(LeNet5(), lenet_variables)
    np.testing.assert_array_equal(dep > 0, _parse_paper_table())
    full = LeNet5(c3_table=False)
    assert (_c3_dependence(full, random_variables(full, (1, 32, 32, 1))) > 0).all()


def test_lenet5_init_follows_appendix_c(lenet_variables):
    params = jax.tree.map(np.asarray, lenet_variables["params"])
    fan_in = {"C1_layer": 25, "C5_layer": 400, "F6_layer": 120, "output_layer": 84}
    for name, f in fan_in.items():
        k = params[name]["kernel"]
        assert np.abs(k).max() <= 2.4 / f and np.abs(k).max() > 0.8 * 2.4 / f, name
    # C3: exact per-map fan-in 25 * (number of connected S2 maps); kernels ordered by C3 map.
    bounds = np.repeat(2.4 / (25 * C3_TABLE.sum(axis=0)), C3_TABLE.sum(axis=0))
    k = np.abs(params["C3_layer"]["kernel"]).reshape(25, 60)
    assert (k <= bounds).all() and (k.max(axis=0) > 0.5 * bounds).all()
    for name in ("S2_layer", "S4_layer"):  # fan-in 4: coefficients in [-0.6, 0.6]
        assert np.abs(params[name]["coeff"]).max() <= 0.6
    for name, layer in params.items():
        np.testing.assert_array_equal(layer["bias"], 0.0, err_msg=name)


def test_lenet5_shapes_and_intermediates(lenet_variables):
    x = normal(3, 32, 32, 1)
    rbf_variables = {"params": {k: v for k, v in lenet_variables["params"].items() if k != "output_layer"}}
    for output, variables in (("softmax", lenet_variables), ("rbf", rbf_variables)):
        model = get_model("lenet5", output=output)
        logits, state = apply(model, variables, x, mutable=["intermediates"])
        assert logits.shape == (3, 10)
        inter = {k: v[0].shape for k, v in state["intermediates"].items()}
        assert inter == {
            "C1": (3, 28, 28, 6), "S2": (3, 14, 14, 6), "C3": (3, 10, 10, 16), "S4": (3, 5, 5, 16),
            "C5": (3, 1, 1, 120), "F6": (3, 84), "output": (3, 10),
        }
        np.testing.assert_array_equal(state["intermediates"]["output"][0], logits)
        assert np.abs(state["intermediates"]["F6"][0]).max() <= LECUN_A  # squashed
        if output == "rbf":
            # Euclidean RBF units with fixed +-1 centres (not parameters): logits = -||F6 - c_i||^2.
            centres = np.asarray(rbf_centres(10))
            assert centres.shape == (10, 84) and set(np.unique(centres)) == {-1.0, 1.0}
            np.testing.assert_array_equal(centres, rbf_centres(10))  # deterministic
            f6 = np.asarray(state["intermediates"]["F6"][0])
            expected = -((f6[:, None, :] - centres[None]) ** 2).sum(-1)
            np.testing.assert_allclose(logits, expected, rtol=1e-5)


def test_lenet5_accepts_three_channels_and_rejects_small_inputs():
    model = get_model("lenet5")
    assert param_shapes(model, (1, 32, 32, 3))["C1_layer"]["kernel"].shape == (5, 5, 3, 6)
    variables = random_variables(model, (1, 32, 32, 3))
    assert apply(model, variables, jnp.ones((2, 32, 32, 3))).shape == (2, 10)
    with pytest.raises(ValueError, match="32x32"):
        jax.eval_shape(model.init, KEY, jnp.zeros((1, 28, 28, 1)))


def test_lenet5_gradients_reach_every_parameter(lenet_variables):
    model = get_model("lenet5")
    x, labels = normal(4, 32, 32, 1), jnp.arange(4)

    def loss(p):
        logits = model.apply({"params": p}, x)
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(4), labels])

    grads = jax.jit(jax.grad(loss))(lenet_variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(g).all() and np.abs(g).max() > 0, path


def test_trainable_subsampling_is_coefficient_times_sum_plus_bias():
    layer = TrainableSubsampling()
    x = jnp.arange(2 * 4 * 4 * 2, dtype=jnp.float32).reshape(2, 4, 4, 2)
    params = {"params": {"coeff": jnp.array([0.5, -2.0]), "bias": jnp.array([1.0, 3.0])}}
    y = apply(layer, params, x)
    sums = np.asarray(x).reshape(2, 2, 2, 2, 2, 2).sum(axis=(2, 4))
    np.testing.assert_allclose(y, sums * np.array([0.5, -2.0]) + np.array([1.0, 3.0]))


def test_scaled_tanh_constants():
    # Appendix A: A = 1.7159, S = 2/3 chosen so that f(1) = 1 and f(-1) = -1.
    assert LECUN_A == 1.7159 and LECUN_S == pytest.approx(2 / 3)
    np.testing.assert_allclose(scaled_tanh(jnp.array([1.0, -1.0, 0.0])), [1.0, -1.0, 0.0], atol=1e-4)
    assert float(scaled_tanh(jnp.array(100.0))) == pytest.approx(1.7159)


def test_untrained_lenet5_predicts_uniformly():
    """With the paper's small fan-in initialisation the untrained net's loss is ln(10): the baseline against which
    tests/test_train.py measures learning."""
    import optax

    model = get_model('lenet5')
    x = jax.random.uniform(jax.random.key(1), (64, 32, 32, 1), minval=-0.1, maxval=1.175)
    labels = jnp.arange(64) % 10
    logits = model.apply(model.init(jax.random.key(0), x), x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    np.testing.assert_allclose(loss, np.log(10), rtol=0.02)
