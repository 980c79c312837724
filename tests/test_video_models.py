"""C3D and Karpathy et al.'s fusion nets: paper-sized shapes and parameter counts (``jax.eval_shape``, nothing
computed) and the temporal-shift behaviour on tiny random nets (single-frame outputs ignore frame order, 3D convs
do not)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convnets import models
from convnets.models.c3d import TEMPORAL_DEPTH_SETTINGS
from convnets.models.video_fusion import NAMES, PAPER_INPUT

TINY = {"widths": (4, 4, 4, 4, 4), "fc_features": 8, "num_classes": 5}

# C3D at 16x112x112x3, by hand (see convnets/models/c3d.py):
# convs  27*3*64+64 + 27*64*128+128 + 27*128*256+256 + 27*256*256+256 + 27*256*512+512 + 3*(27*512*512+512)
#        = 27,655,936
# fc6/7  8192*4096+4096 + 4096*4096+4096 = 50,339,840 ; fc8 4096*K + K
C3D_COUNTS = {487: 27_655_936 + 50_339_840 + 4096 * 487 + 487, 101: 27_655_936 + 50_339_840 + 4096 * 101 + 101}

# Karpathy et al. towers by hand (SAME padding, 7x7x256 last map; see convnets/models/video_fusion.py):
# conv1 11*11*3*96*t1+96, conv2 5*5*96*256*t2+256, conv3 3*3*256*384*t3+384, conv4 3*3*384*384+384,
# conv5 3*3*384*256+256 (t_i the temporal extents); fc6 7*7*256*S*4096+4096 (S streams), fc7 4096*4096+4096,
# fc8 4096*487+487.
_TOWER = 34_944 + 614_656 + 885_120 + 1_327_488 + 884_992  # = 3,747,200 per frame-wise tower
_FC = 16_781_312 + 1_995_239  # fc7 + fc8
_FC6 = {1: 12_544 * 4096 + 4096, 2: 25_088 * 4096 + 4096}
FUSION_COUNTS = {
    "single": _TOWER + _FC6[1] + _FC,  # 73,908,071
    "early": _TOWER + 9 * 34_848 + _FC6[1] + _FC,  # conv1 spans 10 frames: 74,221,703
    "late": _TOWER + _FC6[2] + _FC,  # shared towers, two maps into fc6: 125,288,295
    "slow": _TOWER + 3 * 34_848 + 614_400 + 884_736 + _FC6[1] + _FC,  # extents 4, 2, 2: 75,511,751
    "multires": 2 * _TOWER + _FC6[2] + _FC,  # two separate streams: 129,035,495
}


def _count(params) -> int:
    return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


@pytest.mark.parametrize("num_classes", [487, 101])
def test_c3d_paper_shapes_and_parameter_count(num_classes):
    model = models.get_model("c3d", num_classes=num_classes)
    x = jnp.zeros((1, 16, 112, 112, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert _count(variables["params"]) == C3D_COUNTS[num_classes]
    assert variables["params"]["fc6_layer"]["kernel"].shape == (8192, 4096)
    logits, state = jax.eval_shape(lambda v, x: model.apply(v, x, mutable=["intermediates"]), variables, x)
    inter = state["intermediates"]
    assert logits.shape == (1, num_classes)
    assert inter["pool1"][0].shape == (1, 16, 56, 56, 64)  # pool1 keeps time
    assert inter["pool5"][0].shape == (1, 1, 4, 4, 512)  # Caffe ceil-mode pool5: 512x1x4x4 = 8192
    assert inter["fc6"][0].shape == (1, 4096)


@pytest.mark.parametrize("setting", sorted(TEMPORAL_DEPTH_SETTINGS))
def test_c3d_temporal_depth_settings_change_only_conv_kernels(setting):
    depths = TEMPORAL_DEPTH_SETTINGS[setting]
    model = models.get_model("c3d", num_classes=101, temporal_depths=depths)
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 112, 112, 3)))
    params = variables["params"]
    assert params["conv1a_layer"]["kernel"].shape == (depths[0], 3, 3, 3, 64)
    assert params["conv5b_layer"]["kernel"].shape == (depths[4], 3, 3, 512, 512)
    # Temporal padding depth // 2 keeps every map size, so fc6 still sees 8192 values.
    assert params["fc6_layer"]["kernel"].shape == (8192, 4096)
    widths = (3, 64, 128, 256, 256, 512, 512, 512, 512)
    groups = (0, 1, 2, 2, 3, 3, 4, 4)
    conv_weights = sum(9 * depths[g] * widths[i] * widths[i + 1] for i, g in enumerate(groups))
    # The depth-3 conv weights are 27,655,936 - 2,752 (biases) = 27,653,184; the biases do not depend on depth.
    assert _count(params) == C3D_COUNTS[101] - 27_653_184 + conv_weights


@pytest.mark.parametrize("fusion", sorted(NAMES))
def test_fusion_paper_shapes_and_parameter_count(fusion):
    frames, size = PAPER_INPUT[fusion]
    model = models.get_model(NAMES[fusion])
    x = jnp.zeros((2, frames, size, size, 3))
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    assert _count(variables["params"]) == FUSION_COUNTS[fusion]
    streams = 2 if fusion in ("late", "multires") else 1
    assert variables["params"]["fc6_layer"]["kernel"].shape == (streams * 7 * 7 * 256, 4096)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, 487)


def test_fusion_rejects_bad_input():
    with pytest.raises(ValueError, match="fusion must be one of"):
        jax.eval_shape(models.get_model("video_single_frame", fusion="mid").init, jax.random.key(0),
                       jnp.zeros((1, 1, 170, 170, 3)))
    with pytest.raises(ValueError, match="needs > 15 frames"):
        jax.eval_shape(models.get_model("video_late_fusion").init, jax.random.key(0), jnp.zeros((1, 10, 170, 170, 3)))
    with pytest.raises(ValueError, match=r"\[B, T, H, W, C\]"):
        jax.eval_shape(models.get_model("c3d").init, jax.random.key(0), jnp.zeros((1, 112, 112, 3)))


def _he_params(model, x, seed: int = 1):
    """Random He-normal kernels and zero biases: the paper inits (std 0.01, biases 1) of a 4-map net let almost no
    input signal reach the logits in float32, which would hide what the test is about."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    leaves, tree = jax.tree_util.tree_flatten_with_path(shapes)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    out = []
    for (path, leaf), key in zip(leaves, keys, strict=True):
        if path[-1].key == "kernel":
            out.append(jax.random.normal(key, leaf.shape) * np.sqrt(2.0 / np.prod(leaf.shape[:-1])))
        else:
            out.append(jnp.zeros(leaf.shape))
    return jax.tree_util.tree_unflatten(tree, out)


@pytest.mark.slow
def test_temporal_shift_single_frame_vs_3d_convs():
    """Moving the content by one frame (roll along T) leaves the single-frame net's output unchanged and changes
    the nets whose kernels span time (C3D, slow and early fusion) measurably."""
    clip = np.random.default_rng(0).normal(size=(1, 10, 32, 32, 3)).astype(np.float32)
    batch = jnp.asarray(np.concatenate([clip, np.roll(clip, 1, axis=1)]))
    changes = {}
    for name in ("video_single_frame", "video_slow_fusion", "video_early_fusion"):
        model = models.get_model(name, **TINY)
        out = np.asarray(jax.jit(model.apply)({"params": _he_params(model, batch[:1])}, batch))
        assert np.abs(out[0]).max() > 1e-2  # the logits do depend on the input
        changes[name] = np.abs(out[0] - out[1]).max() / np.abs(out[0]).max()
    assert changes["video_single_frame"] < 1e-5  # only the order of summation of the frame average differs
    assert changes["video_slow_fusion"] > 1e-2
    assert changes["video_early_fusion"] > 1e-3


@pytest.mark.slow
def test_c3d_temporal_kernels_act_on_time():
    """Tiny C3D on [clip, clip with frames 2k and 2k+1 swapped, clip rolled by one frame, clip with frame 5 changed].

    Depth 3: every change alters the logits; conv1a changes at frames 4-6 for a change at frame 5. Depth 1 (2D
    convs per frame, the Sec. 3.2 baseline): conv1a changes at frame 5 only, and swapping the frames inside each
    pair pool2 merges leaves the logits exactly as they were (pool1 keeps time, pool2's max is symmetric), while a
    roll by one frame re-pairs them and does change the logits."""
    rng = np.random.default_rng(0)
    clip = rng.normal(size=(1, 16, 32, 32, 3)).astype(np.float32)
    swapped = clip.reshape(1, 8, 2, 32, 32, 3)[:, :, ::-1].reshape(clip.shape)
    changed = clip.copy()
    changed[:, 5] = rng.normal(size=changed[:, 5].shape)
    batch = jnp.asarray(np.concatenate([clip, swapped, np.roll(clip, 1, axis=1), changed]))
    for depths in ((3,) * 5, (1,) * 5):
        model = models.get_model("c3d", temporal_depths=depths, **TINY)
        params = _he_params(model, batch[:1])
        out, state = jax.jit(lambda p, x, m=model: m.apply({"params": p}, x, mutable=["intermediates"]))(params, batch)
        out = np.asarray(out)
        scale = np.abs(out[0]).max()
        assert scale > 1e-2
        diff = [np.abs(out[0] - out[i]).max() / scale for i in (1, 2, 3)]
        conv1a = np.asarray(state["intermediates"]["conv1a"][0])
        frames_changed = np.nonzero(np.abs(conv1a[3] - conv1a[0]).max(axis=(1, 2, 3)) > 0)[0].tolist()
        if depths[0] == 3:
            assert min(diff) > 1e-3, diff
            assert frames_changed == [4, 5, 6]
        else:
            assert diff[0] == 0.0  # frame order inside pool2's pairs is invisible to 2D convs
            assert diff[1] > 1e-3 and diff[2] > 1e-3, diff
            assert frames_changed == [5]


def test_c3d_search_net_of_sec_3_1_has_the_papers_17_5_million_parameters():
    """Sec. 3.1: 5 convs (64, 128, 256, 256, 256), 5 pools, fc 2048, 2048: "17.5 millions" at 101 classes; the
    depth settings change only the conv kernels (depth-7 minus depth-1 = 6 * 9 * 172,224 weights)."""
    counts = {}
    for name in ("c3d_search", "c3d_search_depth1", "c3d_search_depth7"):
        model = models.get_model(name, num_classes=101)
        v = jax.eval_shape(lambda m=model: m.init(jax.random.key(0), jnp.zeros((1, 16, 112, 112, 3))))
        counts[name] = sum(x.size for x in jax.tree.leaves(v["params"]))
        assert sorted(v["params"]) == [f"conv{i}a_layer" for i in range(1, 6)] + ["fc6_layer", "fc7_layer",
                                                                                   "fc8_layer"]
        assert v["params"]["fc6_layer"]["kernel"].shape == (4 * 4 * 256, 2048)
    assert counts["c3d_search"] == 4_651_008 + 8_390_656 + 4_196_352 + 206_949 == 17_444_965
    assert counts["c3d_search_depth7"] - counts["c3d_search_depth1"] == 6 * 9 * 172_224
