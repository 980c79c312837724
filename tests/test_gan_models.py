"""The GAN networks: DCGAN (convnets/models/dcgan.py) and the original GAN's MNIST MLPs (convnets/models/gan_mlp.py).

Full-size parameter counts and shapes come from ``jax.eval_shape`` (no compile); the forward passes run tiny nets.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from convnets.models import dcgan, gan_mlp, get_model, list_models
from convnets.models.registry import model_fields


def _key(seed: int) -> jax.Array:
    """A PRNG key whose random ops compile fast (XLA's RngBitGenerator instead of an inlined threefry)."""
    return jax.random.key(seed, impl="rbg")


def _count(tree) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(tree))


def _abstract_init(model, x):
    return jax.eval_shape(lambda: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x))


def _shapes(tree):
    return jax.tree.map(lambda a: tuple(a.shape), tree)


# ------------------------------------------------------------------------------------------------ DCGAN, sizes

def test_dcgan_64_parameters_match_the_hand_count_and_the_authors_shapes():
    g = get_model("dcgan_generator")  # 64x64x3, width 128 (Fig. 1's 4x4x1024), 5x5
    d = get_model("dcgan_discriminator")
    z, x = jnp.zeros((2, 100)), jnp.zeros((2, 64, 64, 3))
    gv, dv = _abstract_init(g, z), _abstract_init(d, x)
    gp, dp = _shapes(gv["params"]), _shapes(dv["params"])
    # faces/train_uncond_dcgan.py: gw (100, 16384), gg/gb (16384,), gw2 (1024, 512, 5, 5) ... gwx (128, 3, 5, 5).
    assert gp["project_layer"] == {"kernel": (100, 16384)}
    assert gp["bn0_layer"] == {"scale": (16384,), "bias": (16384,)}
    assert [gp[f"deconv{i}_layer"]["kernel"] for i in range(1, 5)] == [
        (5, 5, 512, 1024), (5, 5, 256, 512), (5, 5, 128, 256), (5, 5, 3, 128)]
    assert sorted(gp) == ["bn0_layer", "bn1_layer", "bn2_layer", "bn3_layer", "deconv1_layer", "deconv2_layer",
                          "deconv3_layer", "deconv4_layer", "project_layer"]  # no BN on the tanh layer, no biases
    assert [dp[f"conv{i}_layer"]["kernel"] for i in range(1, 5)] == [
        (5, 5, 3, 128), (5, 5, 128, 256), (5, 5, 256, 512), (5, 5, 512, 1024)]
    assert "bn1_layer" not in dp and dp["logit_layer"] == {"kernel": (16384, 1)}
    # The module docstring's layer-by-layer derivation.
    assert _count(gv["params"]) == 1_671_168 + 13_108_224 + 3_277_312 + 819_456 + 9_600 == 18_885_760
    assert _count(dv["params"]) == 9_600 + 819_712 + 3_277_824 + 13_109_248 + 16_384 == 17_232_768
    assert _count(gv["batch_stats"]) == 2 * (16384 + 512 + 256 + 128)
    assert jax.eval_shape(lambda v: g.apply(v, z), gv).shape == (2, 64, 64, 3)
    assert jax.eval_shape(lambda v: d.apply(v, x), dv).shape == (2,)


@pytest.mark.parametrize("channels, g_params, d_params", [(3, 1_446_976, 1_033_664), (1, 1_443_776, 1_030_464)])
def test_dcgan_32_drops_one_stage_like_the_authors_svhn_model(channels, g_params, d_params):
    g = get_model("dcgan_generator", image_size=32, channels=channels, width=64)
    d = get_model("dcgan_discriminator", image_size=32, channels=channels, width=64)
    z, x = jnp.zeros((3, 100)), jnp.zeros((3, 32, 32, channels))
    gv, dv = _abstract_init(g, z), _abstract_init(d, x)
    gp, dp = _shapes(gv["params"]), _shapes(dv["params"])
    # models/svhn_unsup_all_conv_dcgan_100z_gaussian_lr_0.0005_64mb: gen (100, 4096), (256, 128, 5, 5),
    # (128, 64, 5, 5), (64, 3, 5, 5); discrim (64, 3, 5, 5), (128, 64, 5, 5), (256, 128, 5, 5), (4096, 1).
    assert gp["project_layer"]["kernel"] == (100, 4096)
    assert [gp[f"deconv{i}_layer"]["kernel"] for i in (1, 2, 3)] == [
        (5, 5, 128, 256), (5, 5, 64, 128), (5, 5, channels, 64)]
    assert [dp[f"conv{i}_layer"]["kernel"] for i in (1, 2, 3)] == [
        (5, 5, channels, 64), (5, 5, 64, 128), (5, 5, 128, 256)]
    assert dp["logit_layer"]["kernel"] == (4096, 1) and "conv4_layer" not in dp
    assert (_count(gv["params"]), _count(dv["params"])) == (g_params, d_params)
    assert jax.eval_shape(lambda v: g.apply(v, z), gv).shape == (3, 32, 32, channels)
    assert jax.eval_shape(lambda v: d.apply(v, x), dv).shape == (3,)


def test_dcgan_imagenet32_model_gives_the_papers_28672_cifar_features():
    """imagenet/load_pretrained.py: 3x3, z 256, stride-1 convs between the stride-2 ones; Sec. 5.1's 28672 features
    are every conv layer of D max-pooled to 4x4."""
    g, d = get_model("dcgan_imagenet32_generator"), get_model("dcgan_imagenet32_discriminator")
    z, x = jnp.zeros((2, 256)), jnp.zeros((2, 32, 32, 3))
    gv, dv = _abstract_init(g, z), _abstract_init(d, x)
    gp, dp = _shapes(gv["params"]), _shapes(dv["params"])
    # models/imagenet_gan_pretrain_128f_relu_lrelu_7l_3x3_256z: discrim (128, 3, 3, 3), (128, 128, 3, 3), ...,
    # (8192, 1); gen (8192,) BN, (256, 256, 3, 3), (256, 128, 3, 3), (128, 128, 3, 3), (128, 3, 3, 3).
    assert [dp[f"conv{i}_layer"]["kernel"][2:] for i in range(1, 7)] == [
        (3, 128), (128, 128), (128, 256), (256, 256), (256, 512), (512, 512)]
    assert dp["logit_layer"]["kernel"] == (8192, 1) and gp["project_layer"]["kernel"] == (256, 8192)
    assert [gp[f"deconv{i}_layer"]["kernel"] for i in range(1, 7)] == [
        (3, 3, 512, 512), (3, 3, 256, 512), (3, 3, 256, 256), (3, 3, 128, 256), (3, 3, 128, 128), (3, 3, 3, 128)]
    assert (_count(gv["params"]), _count(dv["params"])) == (6_690_688, 4_586_112)
    _, inter = jax.eval_shape(lambda v: d.apply(v, x, mutable=["intermediates"]), dv)
    maps = [inter["intermediates"][f"conv{i}"][0].shape for i in range(1, 7)]
    assert [m[1] for m in maps] == [32, 16, 16, 8, 8, 4]
    assert sum(16 * m[-1] for m in maps) == 28672
    assert jax.eval_shape(lambda v: g.apply(v, z), gv).shape == (2, 32, 32, 3)


def test_dcgan_kernel_4_keeps_the_map_sizes():
    g = get_model("dcgan_generator", image_size=32, width=8, kernel_size=4)
    d = get_model("dcgan_discriminator", image_size=32, width=8, kernel_size=4)
    gv = _abstract_init(g, jnp.zeros((2, 100)))
    assert jax.eval_shape(lambda v: g.apply(v, jnp.zeros((2, 100))), gv).shape == (2, 32, 32, 3)
    dv = _abstract_init(d, jnp.zeros((2, 32, 32, 3)))
    assert _shapes(dv["params"])["logit_layer"]["kernel"] == (4 * 4 * 32, 1)


def test_dcgan_bad_sizes_are_named():
    with pytest.raises(ValueError, match="power of two"):
        _abstract_init(get_model("dcgan_generator", image_size=48), jnp.zeros((1, 100)))
    with pytest.raises(ValueError, match="z_dim=100"):
        _abstract_init(get_model("dcgan_generator", image_size=32), jnp.zeros((1, 64)))
    with pytest.raises(ValueError, match=r"\[B, 32, 32, 3\]"):
        _abstract_init(get_model("dcgan_discriminator", image_size=32), jnp.zeros((1, 64, 64, 3)))


def test_transposed_conv_is_the_input_gradient_of_the_strided_conv():
    """The authors' ``deconv`` is cuDNN's conv input gradient: ours must be the same linear map (k = 5 and 4)."""
    for k, stride in ((5, 2), (4, 2), (3, 2), (3, 1)):
        rng = np.random.default_rng(k)
        kernel = jnp.asarray(rng.normal(size=(k, k, 2, 3)), jnp.float32)  # HWIO of the conv 2 -> 3 maps
        y = jnp.asarray(rng.normal(size=(1, 4, 4, 3)), jnp.float32)
        p = dcgan.conv_padding(k)

        def conv(x, kernel, p=p, stride=stride):
            return jax.lax.conv_general_dilated(x, kernel, (stride, stride), ((p, p), (p, p)),
                                                dimension_numbers=("NHWC", "HWIO", "NHWC"))

        deconv = nn.ConvTranspose(2, (k, k), strides=(stride, stride),
                                  padding=(dcgan.transposed_padding(k, stride),) * 2, transpose_kernel=True,
                                  use_bias=False)

        @jax.jit
        def both(kernel, y, conv=conv, deconv=deconv, stride=stride):
            gradient = jax.vjp(lambda x: conv(x, kernel), jnp.zeros((1, 4 * stride, 4 * stride, 2)))[1](y)[0]
            return gradient, deconv.apply({"params": {"kernel": kernel}}, y)

        want, got = both(kernel, y)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------ MLP GAN, sizes

def test_gan_mlp_parameters_match_mnist_yaml():
    g, d = get_model("gan_mlp_generator"), get_model("gan_mlp_discriminator")
    z, x = jnp.zeros((2, 100)), jnp.zeros((2, 28, 28, 1))
    gv, dv = _abstract_init(g, z), _abstract_init(d, x)
    assert _shapes(gv["params"]) == {"h0_layer": {"kernel": (100, 1200), "bias": (1200,)},
                                     "h1_layer": {"kernel": (1200, 1200), "bias": (1200,)},
                                     "y_layer": {"kernel": (1200, 784), "bias": (784,)}}
    assert _shapes(dv["params"]) == {"h0_layer": {"kernel": (784, 1200), "bias": (1200,)},  # 240 units x 5 pieces
                                     "h1_layer": {"kernel": (240, 1200), "bias": (1200,)},
                                     "y_layer": {"kernel": (240, 1), "bias": (1,)}}
    assert _count(gv["params"]) == 121_200 + 1_441_200 + 941_584 == 2_503_984
    assert _count(dv["params"]) == 942_000 + 289_200 + 241 == 1_231_441
    assert jax.eval_shape(lambda v: g.apply(v, z), gv).shape == (2, 28, 28, 1)
    assert jax.eval_shape(lambda v: d.apply(v, x), dv).shape == (2,)


def test_maxout_equals_numpy_contiguous_groups():
    z = np.random.default_rng(0).normal(size=(3, 12)).astype(np.float32)
    # pylearn2 Maxout.fprop: unit j = max_i z[:, j * pieces + i]
    want = np.stack([z[:, 3 * j:3 * j + 3].max(axis=1) for j in range(4)], axis=1)
    np.testing.assert_array_equal(gan_mlp.maxout(jnp.asarray(z), 3), want)
    with pytest.raises(ValueError, match="groups of 5"):
        gan_mlp.maxout(jnp.asarray(z), 5)


def test_marginal_output_bias_is_pylearn2s_log_odds():
    images = np.array([[[0.0, 1.0]], [[1.0, 1.0]], [[0.0, 1.0]], [[1.0, 1.0]]])[..., None]  # 4 images of 1x2x1
    bias = gan_mlp.marginal_output_bias(images)
    np.testing.assert_allclose(bias, [0.0, np.log((1 - 1e-7) / 1e-7)], rtol=1e-6)
    params = {"y_layer": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}}
    np.testing.assert_allclose(gan_mlp.with_marginal_output_bias(params, images)["y_layer"]["bias"], bias)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        gan_mlp.marginal_output_bias(images * 2 - 1)


def test_registered_names_and_fields():
    assert {"dcgan_generator", "dcgan_discriminator", "dcgan_imagenet32_generator", "dcgan_imagenet32_discriminator",
            "gan_mlp_generator", "gan_mlp_discriminator"} <= set(list_models())
    for name in ("dcgan_generator", "dcgan_discriminator"):
        assert {"image_size", "channels", "width", "kernel_size", "stride1_convs", "bn_axis_name"} <= set(
            model_fields(name))
    assert "z_dim" in model_fields("dcgan_generator") and "z_dim" in model_fields("gan_mlp_generator")
    assert {"hidden", "pieces", "image_shape", "input_dropout", "hidden_dropout"} <= set(
        model_fields("gan_mlp_discriminator"))


# ------------------------------------------------------------------------------------------------ forward passes

@pytest.mark.slow
def test_dcgan_tiny_forward_ranges_init_and_intermediates():
    g = get_model("dcgan_generator", image_size=16, channels=3, z_dim=8, width=4)
    d = get_model("dcgan_discriminator", image_size=16, channels=3, width=4)
    big = get_model("dcgan_discriminator", image_size=16, width=64)  # wide enough for the init statistics

    @jax.jit
    def run(z):
        gv = g.init(_key(1), z)
        x, g_new = g.apply(gv, z, train=True, mutable=["batch_stats"])
        # The output layer is a bare tanh (no BN): a huge kernel saturates it at +-1 but never beyond.
        loud = jax.tree_util.tree_map_with_path(
            lambda path, a: a * 1e4 if "deconv2_layer" in jax.tree_util.keystr(path) else a, gv)
        saturated = g.apply(loud, z, train=True, mutable=["batch_stats"])[0]
        dv = d.init(_key(2), x)
        logits, inter = d.apply(dv, x, train=False, mutable=["intermediates"])
        big_params = big.init(_key(3), x)["params"]
        return gv, x, g_new, saturated, logits, inter["intermediates"], big_params

    z = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (6, 8)), jnp.float32)
    gv, x, g_new, saturated, logits, inter, big_params = jax.tree.map(np.asarray, run(z))
    assert x.shape == (6, 16, 16, 3) and np.max(np.abs(x)) < 1.0
    assert np.max(np.abs(saturated)) == 1.0 and np.mean(np.abs(saturated) > 0.99) > 0.9
    assert not np.allclose(g_new["batch_stats"]["bn1_layer"]["mean"], gv["batch_stats"]["bn1_layer"]["mean"])
    assert logits.shape == (6,) and np.all(np.isfinite(logits))
    assert {k: v[0].shape for k, v in inter.items()} == {"conv1": (6, 8, 8, 4), "conv2": (6, 4, 4, 8)}
    assert np.min(inter["conv1"][0]) < 0.0  # LeakyReLU lets negatives through
    # Init: weights N(0, 0.02), BN gains N(1, 0.02), shifts 0.
    w, gain = big_params["conv2_layer"]["kernel"], big_params["bn2_layer"]["scale"]
    assert abs(np.std(w) - 0.02) < 1e-3 and abs(np.mean(w)) < 1e-3
    assert abs(np.mean(gain) - 1.0) < 0.01 and 0.01 < np.std(gain) < 0.03
    assert np.max(np.abs(big_params["bn2_layer"]["bias"])) == 0.0


@pytest.mark.slow
def test_dcgan_batch_norm_over_8_devices_equals_the_full_batch():
    """With bn_axis_name the statistics are those of the GLOBAL batch: shard_map over the 8 simulated devices gives
    the single-device full-batch outputs and running statistics, for G and for D."""
    n = jax.device_count()
    mesh = Mesh(np.array(jax.devices()), ("data",))
    z = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2 * n, 8)), jnp.float32)
    for kind, x in (("generator", z), ("discriminator", None)):
        fields = dict(image_size=16, width=4) | ({"z_dim": 8} if kind == "generator" else {})
        ref = get_model(f"dcgan_{kind}", **fields)
        if x is None:
            x = jnp.asarray(np.random.default_rng(1).normal(0.5, 2.0, (2 * n, 16, 16, 3)), jnp.float32)
        variables = jax.jit(lambda xs, m=ref: m.init(_key(2), xs))(x)
        want = jax.jit(lambda v, xs, m=ref: m.apply(v, xs, train=True, mutable=["batch_stats"]))(variables, x)
        synced = ref.clone(bn_axis_name="data")
        step = jax.shard_map(lambda v, xs, m=synced: m.apply(v, xs, train=True, mutable=["batch_stats"]),
                             mesh=mesh, in_specs=(P(), P("data")), out_specs=(P("data"), P()))
        got = jax.jit(step)(variables, x)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), got, want)
        # Without the axis name every device normalises its own 2 examples: the equality above is meaningful.
        alone = jax.shard_map(lambda v, xs, m=ref: m.apply(v, xs, train=True, mutable=["batch_stats"])[0],
                              mesh=mesh, in_specs=(P(), P("data")), out_specs=P("data"))
        assert n == 1 or not np.allclose(jax.jit(alone)(variables, x), want[0], atol=1e-3)


@pytest.mark.slow
def test_gan_mlp_forward_ranges_dropout_and_numpy_reference():
    g = get_model("gan_mlp_generator", z_dim=5, hidden=(7, 6), image_shape=(3, 2, 1))
    d = get_model("gan_mlp_discriminator", hidden=(4, 3), pieces=(2, 3), image_shape=(3, 2, 1), init_range=0.5)
    no_drop = d.clone(input_dropout=0.0, hidden_dropout=0.0)

    @jax.jit
    def run(z):
        gv = g.init(_key(1), z)
        x = g.apply(gv, z)
        dv = d.init(_key(2), x)
        logits = {name: model.apply(dv, x, train=train, rngs={"dropout": _key(seed)})
                  for name, model, train, seed in (("eval3", d, False, 3), ("eval4", d, False, 4),
                                                   ("train3", d, True, 3), ("train4", d, True, 4),
                                                   ("no_drop", no_drop, True, 5))}
        return gv["params"], x, dv["params"], logits

    z = jnp.asarray(np.random.default_rng(0).normal(0, 20, (4, 5)), jnp.float32)
    gp, x, dp, logits = jax.tree.map(np.asarray, run(z))
    assert x.shape == (4, 3, 2, 1) and x.min() >= 0.0 and x.max() <= 1.0
    h = np.asarray(z)
    for name in ("h0_layer", "h1_layer"):
        h = np.maximum(h @ gp[name]["kernel"] + gp[name]["bias"], 0.0)
    want = 1.0 / (1.0 + np.exp(-(h @ gp["y_layer"]["kernel"] + gp["y_layer"]["bias"])))
    np.testing.assert_allclose(x.reshape(4, -1), want, rtol=1e-5, atol=1e-6)
    assert np.abs(gp["h1_layer"]["kernel"]).max() <= 0.05 and np.abs(gp["h0_layer"]["bias"]).max() == 0
    assert np.abs(dp["h0_layer"]["kernel"]).max() <= 0.5

    def numpy_d(images):
        h = images.reshape(len(images), -1)
        for name, pieces in (("h0_layer", 2), ("h1_layer", 3)):
            a = h @ dp[name]["kernel"] + dp[name]["bias"]
            h = a.reshape(len(a), -1, pieces).max(axis=-1)
        return (h @ dp["y_layer"]["kernel"] + dp["y_layer"]["bias"])[:, 0]

    assert logits["eval3"].shape == (4,)
    np.testing.assert_allclose(logits["eval3"], numpy_d(x), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(logits["eval4"], logits["eval3"])  # no dropout in evaluation
    # Dropout in training, drawn from the 'dropout' rng: it changes the logits, differently per key.
    assert not np.allclose(logits["train3"], logits["eval3"]) and not np.allclose(logits["train3"], logits["train4"])
    np.testing.assert_array_equal(np.asarray(run(z)[3]["train3"]), logits["train3"])
    np.testing.assert_allclose(logits["no_drop"], logits["eval3"], rtol=1e-6)  # rates 0: training = evaluation
