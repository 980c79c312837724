"""DeconvNet (Zeiler and Fergus 2013, Sec. 2.1): switches, unpooling, two independent checks of the projection, and
the stages each model declares checked against the activations it sows."""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets.models import VGG, AlexNet, ConvNet, LeNet5, LocalResponseNorm, ResNet, ZFNet, get_model, lenet, zfnet
from convnets.models.layers import max_pool, param_name, scaled_tanh, table_kernel
from convnets.visualize import deconvnet, stages
from convnets.visualize.deconvnet import max_pool_with_switches, project, unpool
from convnets.visualize.stages import Conv, MaxPool, Norm, ReLU, Squash, Subsample, describe

# --- switches and unpooling --------------------------------------------------------------------------------------


def _grid(rows):
    return jnp.asarray(rows, jnp.float32)[None, :, :, None]


def test_unpool_non_overlapping_2x2_with_tie():
    x = _grid([[1, 5, 2, 2], [3, 0, 2, 1], [0, 0, 7, 1], [0, 0, 1, 9]])  # window (0, 1) ties at 2; (1, 0) all 0
    pooled, switches = max_pool_with_switches(x, 2, 2)
    np.testing.assert_array_equal(pooled[0, :, :, 0], [[5, 2], [0, 9]])
    np.testing.assert_array_equal(switches[0, :, :, 0], [[1, 2], [8, 15]])  # flat h*W+w; ties: first row-major
    back = unpool(pooled, switches, x.shape)
    expected = [[0, 5, 2, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 9]]
    np.testing.assert_array_equal(back[0, :, :, 0], expected)


def test_unpool_overlapping_3x3_stride_2_adds_shared_positions():
    x = _grid([[1, 2, 3, 0, 1], [0, 4, 9, 1, 0], [2, 1, 0, 8, 8], [0, 6, 1, 2, 0], [3, 1, 0, 5, 1]])
    pooled, switches = max_pool_with_switches(x, 3, 2)
    np.testing.assert_array_equal(pooled[0, :, :, 0], [[9, 9], [6, 8]])
    # The 9 at (1, 2) wins both top windows; the bottom-right window ties 8 at (2, 3) and (2, 4): first wins.
    np.testing.assert_array_equal(switches[0, :, :, 0], [[7, 7], [16, 13]])
    back = unpool(pooled, switches, x.shape)
    expected = np.zeros((5, 5))
    expected[1, 2] = 18  # overlapping windows add
    expected[3, 1] = 6
    expected[2, 3] = 8
    np.testing.assert_array_equal(back[0, :, :, 0], expected)
    np.testing.assert_array_equal(pooled, max_pool(x, 3, 2))


def test_max_pool_with_switches_matches_model_pooling_and_jax_gradient():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 3))
    x = jnp.maximum(x, 0.0)  # many ties at zero, as after a ReLU
    for window, stride, ceil in ((3, 2, True), (3, 2, False), (2, 2, False)):
        pooled, switches = max_pool_with_switches(x, window, stride, "CEIL" if ceil else "VALID")
        np.testing.assert_array_equal(pooled, max_pool(x, window, stride, ceil_mode=ceil))
        # JAX's gradient of max pooling routes to the same position (same tie rule).
        cot = jax.random.uniform(jax.random.PRNGKey(1), pooled.shape)
        grad = jax.vjp(lambda v, w=window, s=stride, c=ceil: max_pool(v, w, s, ceil_mode=c), x)[1](cot)[0]
        np.testing.assert_allclose(unpool(cot, switches, x.shape), grad, rtol=0, atol=1e-6)


# --- independent formulation: gradient with "deconvnet" ReLU backward --------------------------------------------


@jax.custom_vjp
def _deconv_relu(x):
    return jnp.maximum(x, 0.0)


def _deconv_relu_fwd(x):
    return jnp.maximum(x, 0.0), None


def _deconv_relu_bwd(_, g):
    return (jnp.maximum(g, 0.0),)  # rectify the incoming signal, ignoring the forward mask


_deconv_relu.defvjp(_deconv_relu_fwd, _deconv_relu_bwd)


@jax.custom_vjp
def _deconv_tanh(x):
    return scaled_tanh(x)


def _deconv_tanh_fwd(x):
    return scaled_tanh(x), None


def _deconv_tanh_bwd(_, g):
    return (jnp.maximum(g, 0.0),)  # LeNet's squashing treated as the ZF rectification step


_deconv_tanh.defvjp(_deconv_tanh_fwd, _deconv_tanh_bwd)


def _gradient_projection(monkeypatch, model, variables, images, layer, feature, mode="all"):
    """jax.grad through the model's ordinary forward, ReLU backward = ReLU of the signal, LRN backward = identity.

    LeNet-5's scaled tanh (looked up in ``lenet``'s namespace) also gets ReLU of the signal as its backward; its
    trainable subsampling keeps its own gradient, the transpose of its linear map.
    """
    original_lrn = LocalResponseNorm.__call__
    monkeypatch.setattr(nn, "relu", _deconv_relu)
    monkeypatch.setattr(lenet, "scaled_tanh", _deconv_tanh)
    monkeypatch.setattr(
        LocalResponseNorm, "__call__", lambda self, x: x + jax.lax.stop_gradient(original_lrn(self, x) - x)
    )

    def activation(x):
        _, state = model.apply(variables, x, train=False, mutable=["intermediates"])
        return state["intermediates"][layer][0]

    act = activation(images)
    sel = jnp.zeros_like(act).at[..., feature].set(act[..., feature])
    if mode == "max":
        fmap = act[..., feature].reshape(act.shape[0], -1)
        mask = jax.nn.one_hot(jnp.argmax(fmap, axis=1), fmap.shape[1]).reshape(act.shape[:-1])
        sel = sel * mask[..., None]
    # The gradient of the chosen activation, weighted by its own (selected) value as the DeconvNet's top signal.
    grad = jax.grad(lambda x: jnp.sum(jax.lax.stop_gradient(sel) * activation(x)))(images)
    monkeypatch.undo()
    return grad


def _assert_close(actual, expected):
    scale = float(jnp.max(jnp.abs(expected)))
    assert scale > 0
    np.testing.assert_allclose(np.asarray(actual), np.asarray(expected), rtol=0, atol=1e-5 * scale)


def test_alexnet_two_towers_matches_gradient_formulation(monkeypatch):
    model = AlexNet(num_classes=5, input_size=67)
    images = jax.random.normal(jax.random.PRNGKey(0), (2, 67, 67, 3))
    variables = model.init(jax.random.PRNGKey(1), images)
    for layer, feature, mode in (("conv2", 130, "all"), ("conv5", 200, "all"), ("conv4", 3, "max")):
        got = project(model, variables, images, layer, feature, mode=mode)
        assert got.shape == images.shape
        _assert_close(got, _gradient_projection(monkeypatch, model, variables, images, layer, feature, mode))


def test_vgg11_matches_gradient_formulation(monkeypatch):
    model = VGG(config="A-LRN", num_classes=4, input_size=32, stage_widths=(8, 16, 16, 32, 32), fc_features=16)
    images = jax.random.normal(jax.random.PRNGKey(2), (2, 32, 32, 3))
    variables = model.init(jax.random.PRNGKey(3), images)
    for layer, feature, mode in (("conv3_1", 5, "all"), ("conv5_2", 9, "max")):
        got = project(model, variables, images, layer, feature, mode=mode)
        _assert_close(got, _gradient_projection(monkeypatch, model, variables, images, layer, feature, mode))


def test_zfnet_and_convnet_match_gradient_formulation(monkeypatch):
    model = ZFNet(num_classes=3)
    images = jax.random.normal(jax.random.PRNGKey(4), (1, 35, 35, 3))
    variables = model.init(jax.random.PRNGKey(5), images)
    expected = _gradient_projection(monkeypatch, model, variables, images, "conv3", 11)
    _assert_close(project(model, variables, images, "conv3", 11), expected)
    net = ConvNet(num_filters=4)
    images = jax.random.normal(jax.random.PRNGKey(6), (2, 8, 8, 3))
    variables = net.init(jax.random.PRNGKey(7), images)
    expected = _gradient_projection(monkeypatch, net, variables, images, "relu1", 1)  # conv1's activation: relu1
    _assert_close(project(net, variables, images, "conv1", 1), expected)


def test_lenet5_matches_gradient_formulation(monkeypatch):
    model = LeNet5()
    images = jax.random.normal(jax.random.PRNGKey(10), (2, 35, 35, 1))  # odd sizes: S2 and S4 drop a row/column
    variables = model.init(jax.random.PRNGKey(11), images)
    variables = jax.tree_util.tree_map(lambda v: v + 0.1, variables)  # non-zero biases: must not matter
    assert variables["params"]["C3_layer"]["kernel"].shape == (5, 5, 60)
    for layer, feature, mode in (("C1", 2, "all"), ("C3", 7, "all"), ("C3", 15, "max"), ("C5", 40, "all"),
                                 ("C5", 3, "max")):
        got = project(model, variables, images, layer, feature, mode=mode)
        assert got.shape == images.shape
        _assert_close(got, _gradient_projection(monkeypatch, model, variables, images, layer, feature, mode))
    full = LeNet5(c3_table=False, output="rbf")  # C3 a full 6 -> 16 convolution
    images = images[:, :32, :32]
    variables = full.init(jax.random.PRNGKey(12), images)
    expected = _gradient_projection(monkeypatch, full, variables, images, "C3", 4)
    _assert_close(project(full, variables, images, "C3", 4), expected)


def test_lenet5_c3_kernel_is_the_scattered_table():
    model = LeNet5()
    images = jnp.ones((1, 32, 32, 1))
    variables = model.init(jax.random.PRNGKey(13), images)
    dense = table_kernel(variables["params"]["C3_layer"]["kernel"], lenet.C3_TABLE)
    assert dense.shape == (5, 5, 6, 16)
    connected = np.any(np.asarray(dense) != 0, axis=(0, 1))
    np.testing.assert_array_equal(connected, lenet.C3_TABLE)
    # The model's C3 on S2 equals a plain convolution with that kernel (plus bias).
    s2 = model.apply(variables, images, mutable=["intermediates"])[1]["intermediates"]["S2"][0]
    c3 = lenet.scaled_tanh(
        jax.lax.conv_general_dilated(s2, dense, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        + variables["params"]["C3_layer"]["bias"]
    )
    c3_model = model.apply(variables, images, mutable=["intermediates"])[1]["intermediates"]["C3"][0]
    np.testing.assert_allclose(c3, c3_model, rtol=0, atol=1e-5)


# --- linear net: projection == transpose of the linear map -------------------------------------------------------


class _LinearNet(nn.Module):
    @nn.compact
    def __call__(self, x, train=False):
        x = nn.Conv(4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), name="conv1_layer")(x)
        self.sow("intermediates", "conv1", x)
        x = nn.Conv(6, (3, 3), padding=((1, 0), (0, 1)), feature_group_count=2, name="conv2_layer")(x)
        self.sow("intermediates", "conv2", x)
        return x


LINEAR_STAGES = [
    Conv("conv1", (2, 2), ((1, 1), (1, 1)), sown="conv1"),
    Conv("conv2", (1, 1), ((1, 0), (0, 1)), sown="conv2"),
]


def test_linear_net_projection_is_the_transpose_of_the_linear_map():
    model = _LinearNet()
    images = jax.random.normal(jax.random.PRNGKey(8), (1, 7, 7, 2))
    variables = model.init(jax.random.PRNGKey(9), images)
    variables = jax.tree_util.tree_map(lambda v: v + 0.3, variables)  # non-zero biases: must not matter
    assert deconvnet.layer_names(model, LINEAR_STAGES) == ["conv1", "conv2"]
    for layer in ("conv1", "conv2"):
        act_fn = lambda x, name=layer: model.apply(variables, x, mutable=["intermediates"])[1]["intermediates"][name][0]
        act = act_fn(images)
        jac = jax.jacobian(act_fn)(images).reshape(act.size, images.size)
        sel = jnp.zeros_like(act).at[..., 1].set(act[..., 1])
        expected = (jac.T @ sel.reshape(-1)).reshape(images.shape)
        got = project(model, variables, images, layer, 1, stages=LINEAR_STAGES)
        _assert_close(got, expected)


# --- supported models, layer names, errors -----------------------------------------------------------------------


def test_layer_names_and_supported():
    assert deconvnet.layer_names(ConvNet()) == ["conv1"]
    assert deconvnet.layer_names(AlexNet()) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert deconvnet.layer_names(AlexNet(towers=1, lrn=False, overlapping_pool=False, input_size=227))[-1] == "conv5"
    assert deconvnet.layer_names(ZFNet()) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    assert deconvnet.layer_names(VGG(config="A")) == [
        "conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"
    ]
    assert len(deconvnet.layer_names(VGG(config="E"))) == 16
    assert "conv3_3" in deconvnet.layer_names(VGG(config="C"))
    assert deconvnet.layer_names(LeNet5()) == ["C1", "C3", "C5"]
    assert deconvnet.layer_names(LeNet5(c3_table=False, output="rbf")) == ["C1", "C3", "C5"]
    models = (ConvNet(), AlexNet(), AlexNet(towers=1), ZFNet(contrast_norm=False), *(VGG(config=c) for c in "ABCDE"))
    for model in (*models, LeNet5()):
        assert deconvnet.supported(model)
    for model in (ConvNet(batch_norm=True), ResNet(), VGG(config="Z")):
        assert not deconvnet.supported(model)


def test_clear_errors():
    model = ConvNet(num_filters=4)
    images = jnp.ones((1, 8, 8, 3))
    variables = model.init(jax.random.PRNGKey(0), images)
    with pytest.raises(ValueError, match=r"unknown layer 'fc'.*valid: \['conv1'\]"):
        project(model, variables, images, "fc", 0)
    with pytest.raises(ValueError, match="out of range"):
        project(model, variables, images, "conv1", 4)
    with pytest.raises(ValueError, match="mode"):
        project(model, variables, images, "conv1", 0, mode="mean")
    with pytest.raises(NotImplementedError, match="batch_norm=True"):
        deconvnet.layer_names(ConvNet(batch_norm=True))
    with pytest.raises(NotImplementedError, match="ResNet is not supported; supported models: alexnet, "):
        deconvnet.layer_names(ResNet())


def test_supported_models_come_from_the_registry():
    names = stages.supported_models()
    assert {"convnet", "alexnet", "alexnet_one_tower", "zfnet", "vgg11_lrn", "vgg16_c", "vgg19", "lenet5"} <= set(names)
    assert not {"convnet_bn", "resnet18", "googlenet"} & set(names)


# --- drift: the stages a model declares vs the activations it sows -----------------------------------------------


def _sown_shapes(model, shape):
    """``[(name, shape)]`` of the intermediates ``model`` sows on an input of ``shape``, in sow order, and the shapes
    of its parameters. Nothing is computed (``jax.eval_shape``), so paper-sized inputs cost nothing."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    sown = []

    def forward(v, x):
        _, state = model.apply(v, x, train=False, mutable=["intermediates"])
        # Read while tracing: the dict is in sow order here (a returned pytree would have its keys sorted).
        sown.extend((name, value[0].shape) for name, value in state["intermediates"].items())
        return state

    jax.eval_shape(forward, variables, x)
    return sown, variables["params"]


def _conv_size(size, kernel, stride, padding):
    if padding == "SAME":
        return math.ceil(size / stride)
    lo, hi = (0, 0) if padding == "VALID" else padding
    return (size + lo + hi - kernel) // stride + 1


def _implied_shapes(model_stages, params, shape):
    """``[(sown, (H, W, C))]`` implied by the stages alone: the input shape walked through kernel shapes, strides,
    paddings, pool windows and subsampling windows (written here, independently of the models and the DeconvNet)."""
    h, w, c = shape[1:]
    implied = []
    for stage in model_stages:
        if isinstance(stage, Conv):
            kernel = params[param_name(stage.layer)]["kernel"].shape
            pads = (stage.padding,) * 2 if isinstance(stage.padding, str) else stage.padding
            h, w = (_conv_size(*args) for args in zip((h, w), kernel[:2], stage.strides, pads, strict=True))
            c = len(stage.table[0]) if stage.table is not None else kernel[-1]
        elif isinstance(stage, MaxPool):
            if stage.ceil_mode:  # Caffe rounding: a window may hang over the edge, even of a map smaller than it
                h, w = (math.ceil(max(n - stage.window, 0) / stage.stride) + 1 for n in (h, w))
            else:
                h, w = ((n - stage.window) // stage.stride + 1 for n in (h, w))
        elif isinstance(stage, Subsample):
            h, w = h // stage.window, w // stage.window  # non-overlapping VALID windows
        else:
            assert isinstance(stage, (ReLU, Norm, Squash)), stage  # shape-preserving
        if stage.sown is not None:
            implied.append((stage.sown, (h, w, c)))
    return implied


def _assert_stages_match_sown(model, shape, model_stages=None):
    """The declared stages (``model_stages`` overrides them) name, in order, every activation the model sows up to
    its last conv layer, and imply each one's (H, W, C)."""
    model_stages = describe(model) if model_stages is None else model_stages
    sown, params = _sown_shapes(model, shape)
    implied = _implied_shapes(model_stages, params, shape)
    assert [name for name, _ in sown[: len(implied)]] == [name for name, _ in implied]
    for (name, want), (_, got) in zip(implied, sown, strict=False):
        assert got[1:] == want, f"{type(model).__name__} {name}: sown {got}, stages imply {want}"
    return dict(sown)


_SMALL_VGG = functools.partial(VGG, num_classes=3, input_size=32, stage_widths=(4, 4, 8, 8, 8), fc_features=8)
DRIFT_CASES = {
    "convnet": (ConvNet(num_filters=4), (2, 8, 8, 3)),
    "convnet_k5_odd": (ConvNet(kernel_size=5), (1, 9, 13, 3)),
    "alexnet_67": (AlexNet(num_classes=3, input_size=67), (1, 67, 67, 3)),
    "alexnet_224": (AlexNet(), (1, 224, 224, 3)),
    "alexnet_227_caffe": (AlexNet(input_size=227), (1, 227, 227, 3)),
    "alexnet_one_tower_ablations": (
        AlexNet(towers=1, lrn=False, overlapping_pool=False, input_size=71), (1, 71, 71, 3)
    ),
    "zfnet_min": (ZFNet(num_classes=3), (1, 23, 23, 3)),
    "zfnet_odd": (ZFNet(num_classes=3, contrast_norm=False), (1, 35, 41, 3)),
    "zfnet_224": (ZFNet(), (1, 224, 224, 3)),
    **{f"vgg_{c}": (_SMALL_VGG(config=c), (1, 32, 32, 3)) for c in ("A", "A-LRN", "B", "C", "D", "E")},
    "vgg_D_224": (VGG(), (1, 224, 224, 3)),
    "vgg_A_dense_non_square": (_SMALL_VGG(config="A", dense=True), (1, 64, 96, 3)),
    "lenet5": (LeNet5(), (2, 32, 32, 1)),
    "lenet5_odd": (LeNet5(), (1, 35, 37, 1)),
    "lenet5_full_c3_rbf": (LeNet5(c3_table=False, output="rbf"), (1, 32, 32, 3)),
}


@pytest.mark.parametrize("case", list(DRIFT_CASES))
def test_declared_stages_imply_the_sown_activation_shapes(case):
    model, shape = DRIFT_CASES[case]
    assert deconvnet.supported(model)
    _assert_stages_match_sown(model, shape)


def test_drift_cases_cover_every_supported_model_class():
    supported = {type(get_model(name)) for name in stages.supported_models()}
    assert {type(model) for model, _ in DRIFT_CASES.values()} >= supported


def test_changing_a_model_constant_changes_its_stages_too(monkeypatch):
    """ZF Net's geometry lives in one table read by both ``setup`` and ``deconv_stages``: edit it, both follow."""
    shape = (1, 63, 63, 3)
    before = _assert_stages_match_sown(ZFNet(num_classes=3), shape)
    monkeypatch.setitem(zfnet.CONV_GEOMETRY, "conv2", ((1, 1), "VALID"))
    monkeypatch.setattr(zfnet, "POOL_CEIL_MODE", False)
    after = _assert_stages_match_sown(ZFNet(num_classes=3), shape)
    assert (before["pool1"], before["conv2"]) == ((1, 15, 15, 96), (1, 6, 6, 256))
    assert (after["pool1"], after["conv2"]) == ((1, 14, 14, 96), (1, 10, 10, 256))


def test_drift_check_catches_a_wrong_description():
    model, shape = ZFNet(num_classes=3), (1, 35, 35, 3)
    declared = describe(model)
    conv2 = declared.index(Conv("conv2", *zfnet.CONV_GEOMETRY["conv2"]))
    wrong_stride = [*declared[:conv2], Conv("conv2", (1, 1), "VALID"), *declared[conv2 + 1 :]]
    with pytest.raises(AssertionError, match="conv2: sown"):
        _assert_stages_match_sown(model, shape, wrong_stride)
    missing_norm = [stage for stage in declared if stage != Norm("norm1")]
    with pytest.raises(AssertionError):
        _assert_stages_match_sown(model, shape, missing_norm)
