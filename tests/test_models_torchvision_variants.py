"""The torchvision variants of the paper models (alexnet_torchvision, vgg*_bn): torchvision's parameter counts,
their layer shapes, dropout placement, BatchNorm behaviour and the DeconvNet's refusal of BatchNorm; the paper
defaults unchanged. Their weights' parity with torchvision is in test_weights_torchvision.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models import AlexNet, get_model
from convnets.models import vgg as vgg_module
from convnets.visualize import stages

# torchvision 0.29.1 *_Weights.IMAGENET1K_V1.meta["num_params"] (torchvision/models/alexnet.py, vgg.py).
TORCHVISION_COUNTS = {"alexnet_torchvision": 61_100_840, "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736,
                      "vgg16_bn": 138_365_992, "vgg19_bn": 143_678_248}


def abstract_variables(model, shape=(1, 224, 224, 3)):
    return jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0), "dropout": jax.random.PRNGKey(1)},
                                             jnp.zeros(shape), train=False))


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(tree))


@pytest.mark.parametrize("name", list(TORCHVISION_COUNTS))
def test_parameter_counts_equal_torchvision(name):
    assert count(abstract_variables(get_model(name))["params"]) == TORCHVISION_COUNTS[name]


def test_alexnet_torchvision_layers():
    model = get_model("alexnet_torchvision")
    assert (model.towers, model.lrn, model.widths, model.dropout_on) == (1, False, (64, 192, 384, 256, 256), "inputs")
    params = abstract_variables(model)["params"]
    kernels = {k: v["kernel"].shape for k, v in params.items()}
    assert kernels == {"conv1_layer": (11, 11, 3, 64), "conv2_layer": (5, 5, 64, 192), "conv3_layer": (3, 3, 192, 384),
                       "conv4_layer": (3, 3, 384, 256), "conv5_layer": (3, 3, 256, 256),
                       "fc6_layer": (6 * 6 * 256, 4096), "fc7_layer": (4096, 4096), "fc8_layer": (4096, 1000)}
    # the paper's AlexNet is unchanged
    paper = get_model("alexnet")
    assert (paper.widths, paper.dropout_on, paper.towers, paper.lrn) == ((96, 256, 384, 384, 256), "outputs", 2, True)


def test_alexnet_dropout_on_inputs_or_outputs():
    """Same network at inference; in training torchvision's variant drops fc6's inputs (so fc6's sown output moves),
    the paper's drops fc6's outputs (so fc6's sown output, taken before dropout, does not)."""
    kwargs = dict(num_classes=5, input_size=95, towers=1, lrn=False, widths=(8, 8, 8, 8, 8))
    inputs, outputs = AlexNet(dropout_on="inputs", **kwargs), AlexNet(**kwargs)
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 95, 95, 3))
    variables = outputs.init(jax.random.PRNGKey(1), x)
    np.testing.assert_array_equal(inputs.apply(variables, x), outputs.apply(variables, x))
    rngs = {"dropout": jax.random.PRNGKey(2)}

    def fc6(model, train):
        _, state = model.apply(variables, x, train=train, rngs=rngs, mutable=["intermediates"])
        return state["intermediates"]["fc6"][0]

    assert np.array_equal(fc6(outputs, True), fc6(outputs, False))
    assert not np.array_equal(fc6(inputs, True), fc6(inputs, False))
    with pytest.raises(ValueError, match="dropout_on"):
        AlexNet(dropout_on="middle").init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))
    with pytest.raises(ValueError, match="divisible by towers=2"):
        AlexNet(widths=(64, 192, 384, 256, 255)).init(jax.random.PRNGKey(0), jnp.zeros((1, 224, 224, 3)))


def test_vgg_bn_structure_and_defaults():
    variables = abstract_variables(get_model("vgg11_bn"))
    convs = [k for k in variables["params"] if k.startswith("conv")]
    bns = sorted(k for k in variables["params"] if k.startswith("bn"))
    assert bns == sorted(k.replace("conv", "bn") for k in convs) and len(bns) == 8
    assert all("bias" in variables["params"][k] for k in convs)  # torchvision's convs keep their bias
    assert sorted(variables["batch_stats"]) == bns
    assert variables["batch_stats"]["bn1_1_layer"]["var"].shape == (64,)
    plain = abstract_variables(get_model("vgg11"))
    assert "batch_stats" not in plain and not any(k.startswith("bn") for k in plain["params"])
    assert get_model("vgg16_bn").config == "D" and get_model("vgg16").batch_norm is False


def test_vgg_bn_normalises_with_batch_statistics_in_training_only():
    model = vgg_module.VGG(config="A", stage_widths=(4, 4, 4, 4, 4), fc_features=8, num_classes=3, input_size=32,
                           batch_norm=True)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 32, 3)) * 3 + 1
    variables = model.init(jax.random.PRNGKey(1), x)
    logits, state = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(2)},
                                mutable=["batch_stats", "intermediates"])
    stats = state["batch_stats"]["bn1_1_layer"]
    assert not np.allclose(stats["mean"], 0) and not np.allclose(stats["var"], 1)  # momentum 0.9 update
    conv1 = model.apply(variables, x, train=False, mutable=["intermediates"])[1]["intermediates"]["conv1_1"][0]
    assert logits.shape == (4, 3) and conv1.shape == (4, 32, 32, 4)
    assert model.clone(bn_axis_name="batch").bn_axis_name == "batch"


def test_deconvnet_refuses_batch_norm_and_supports_alexnet_torchvision():
    with pytest.raises(NotImplementedError, match="batch_norm=True"):
        get_model("vgg16_bn").deconv_stages()
    supported = set(stages.supported_models())
    assert "alexnet_torchvision" in supported and not {"vgg11_bn", "vgg19_bn"} & supported
    assert len(get_model("alexnet_torchvision").deconv_stages()) == len(get_model("alexnet", lrn=False).deconv_stages())
