"""The time-fusion networks of Karpathy, Toderici, Shetty, Leung, Sukthankar, Fei-Fei (2014), "Large-scale Video
Classification with Convolutional Neural Networks", Sec. 2.1-2.2, Fig. 1 and Fig. 2.

Source note: the layer string, LRN constants, input sizes, temporal extents and the 7x7x256 statement are taken
from the paper's Sec. 2.1-2.2 text; the paper's full text could not be opened from this session's reference store
(only its abstract), so re-check them against the PDF before quoting numbers from this docstring.

Input clips are ``[B, T, H, W, C]``. All variants share the paper's single-frame tower (Sec. 2.1), in its notation
C(d, f, s) = d filters of f x f at stride s, N = local response normalisation, P = 2x2 max pooling:

    C(96, 11, 3) - N - P - C(256, 5, 1) - N - P - C(384, 3, 1) - C(384, 3, 1) - C(256, 3, 1) - P - FC(4096) - FC(4096)

followed by the softmax classifier (here the ``fc8`` logits; 487 Sports-1M classes by default). The pools are
non-overlapping 2x2 and the normalisations are Krizhevsky et al.'s with k = 2, n = 5, alpha = 1e-4, beta = 0.5
(Sec. 2.1; note beta 0.5, not AlexNet's 0.75). ReLU after every conv and hidden FC layer.

Spatial padding is not stated in the paper. 'SAME' padding (output ceil(n / stride)) with floor-mode pools is
what makes both statements of Sec. 2.2 hold: the 170x170 single-frame tower ends in 7x7x256 (170 -> conv1 57 ->
28 -> 14 -> 7) and the 89x89 multiresolution streams, with their last pool removed, "still terminate in a layer of
size 7x7x256" (89 -> 30 -> 15 -> 7). VALID convs would give 6x6 at 170.

Variants (field ``fusion``; Sec. 2.1, Fig. 1), input at the paper's sizes (170x170 frames; 178x178 for multires):

- ``'single'``: the tower on each frame. The paper's model sees one frame; on a clip of T frames the logits of the
  frames are averaged (as the paper averages predictions over a video's clips), so frame order cannot matter.
- ``'early'``: conv1 filters extended to 11x11x3xT with T = 10 frames (``early_extent``), VALID in time: the
  pixel-level fusion of a 10-frame clip; the rest is the single-frame tower.
- ``'late'``: two single-frame towers with shared parameters on frames 15 apart (``late_gap``; frames 0 and 15
  of the clip), up to the last conv layer C(256, 3, 1) and its pool; the two 7x7x256 maps meet in fc6.
- ``'slow'``: conv1 of temporal extent 4 applied with stride 2 (VALID in time) to a 10-frame clip gives 4
  responses in time; conv2 and conv3 repeat this with extent 2 and stride 2 (4 -> 2 -> 1), so conv3 sees all
  10 frames (``SLOW_FUSION_TIME``).
- ``'multires'``: the fovea + context streams (Sec. 2.2, Fig. 2) on 178x178 frames: the context stream gets the
  frame downsampled by 2 (89x89; by 2x2 averaging, the paper does not say how), the fovea stream the centre
  89x89 region at full resolution. Two separate towers (not shared), each without its last pool; their 7x7x256
  maps are concatenated and fed to fc6. Per-frame as ``'single'`` (logits averaged over the clip's frames).

Parameters at the paper's input sizes, 487 classes (checked in tests/test_video_models.py): the frame-wise tower
34,944 + 614,656 + 885,120 + 1,327,488 + 884,992 = 3,747,200 (conv1-conv5); fc6 7*7*256*4096 + 4096 = 51,384,320
per stream; fc7 16,781,312; fc8 1,995,239. Single frame 73,908,071; early fusion 74,221,703 (conv1 10x as deep);
late fusion 125,288,295 (fc6 sees two maps); slow fusion 75,511,751 (conv1-conv3 4x, 2x, 2x as deep); multires
129,035,495 (two towers, fc6 sees two maps).

Registered names: ``video_single_frame``, ``video_early_fusion``, ``video_late_fusion``, ``video_slow_fusion``,
``video_multires`` (``functools.partial`` of :class:`FusionNet` with ``fusion`` set). ``widths`` (conv1-conv5) and
``fc_features`` shrink the net for tests and CPU runs; defaults are the paper's. Dropout (``dropout_rate``) on the
outputs of fc6 and fc7 follows AlexNet (the paper does not give its rate here; 0.5 is an assumption).
Initialisation: flax defaults (the paper gives none).

Intermediates sown (collection ``'intermediates'``): ``conv1`` ... ``conv5`` (after ReLU; 5-D ``[B', T', h, w, c]``
maps, ``B'`` the batch times the frames or towers folded into it), ``fc6``, ``fc7``, ``fc8`` (per frame for the
per-frame variants; the returned logits are their average). Parameter submodules: ``conv1_layer`` ... ``fc8_layer``
(``fovea_conv1_layer`` ... and ``context_conv1_layer`` ... for the two multires streams).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from convnets.models.layers import LocalResponseNorm, dropout_fc_head, param_name
from convnets.models.registry import register

Array = jax.Array

FUSIONS = ("single", "early", "late", "slow", "multires")
PAPER_WIDTHS = (96, 256, 384, 384, 256)
# Sec. 2.1: C(96, 11, 3), C(256, 5, 1), C(384, 3, 1), C(384, 3, 1), C(256, 3, 1): (filter size, stride).
CONV_GEOMETRY = ((11, 3), (5, 1), (3, 1), (3, 1), (3, 1))
POOLED = (True, True, False, False, True)  # P after conv1, conv2 (after their N) and conv5
NORMALISED = (True, True, False, False, False)
# Sec. 2.1: slow fusion's (temporal extent, temporal stride) for conv1-conv3; conv4 and conv5 are per-frame.
SLOW_FUSION_TIME = ((4, 2), (2, 2), (2, 2), (1, 1), (1, 1))
# The clip length and frame size each variant is built for (T, H = W), for tests and configs.
PAPER_INPUT = {"single": (1, 170), "early": (10, 170), "late": (16, 170), "slow": (10, 170), "multires": (1, 178)}
MULTIRES_STREAM = 89  # Sec. 2.2: both streams are 89x89


def _same_pad(n: int, kernel: int, stride: int) -> tuple[int, int]:
    """'SAME' padding of one spatial axis (output ceil(n / stride)), the extra pixel at the end as in XLA."""
    total = max((math.ceil(n / stride) - 1) * stride + kernel - n, 0)
    return total // 2, total - total // 2


class Tower(nn.Module):
    """The single-frame conv tower C1-N-P-C2-N-P-C3-C4-C5[-P] on ``[B, T, H, W, C]``, with per-layer time extents.

    ``time[i] = (extent, stride)`` of conv i, VALID in time (extent 1: frame by frame). Returns the last map.
    """

    widths: tuple[int, ...] = PAPER_WIDTHS
    time: tuple[tuple[int, int], ...] = ((1, 1),) * 5
    last_pool: bool = True
    prefix: str = ""  # parameter-name prefix for the multires streams ('fovea_', 'context_')

    @nn.compact
    def __call__(self, x: Array) -> Array:
        norm = LocalResponseNorm(k=2.0, n=5, alpha=1e-4, beta=0.5)  # Sec. 2.1's constants
        for i, ((f, s), (te, ts), width) in enumerate(zip(CONV_GEOMETRY, self.time, self.widths, strict=True)):
            name = f"{self.prefix}conv{i + 1}"
            if x.shape[1] < te:
                raise ValueError(f"{name}: temporal extent {te} needs at least {te} frames, got shape {x.shape}")
            pads = ((0, 0), _same_pad(x.shape[2], f, s), _same_pad(x.shape[3], f, s))
            x = nn.relu(nn.Conv(width, (te, f, f), strides=(ts, s, s), padding=pads, name=param_name(name))(x))
            self.sow("intermediates", name, x)
            if NORMALISED[i]:
                x = norm(x)
            if POOLED[i] and (i < 4 or self.last_pool):
                if min(x.shape[2:4]) < 2:
                    raise ValueError(f"{name}: a {x.shape[2]}x{x.shape[3]} map is too small for the 2x2 pool")
                x = nn.max_pool(x, (1, 2, 2), strides=(1, 2, 2))
        return x


class FusionNet(nn.Module):
    """Karpathy et al.'s video nets on ``[B, T, H, W, C]`` clips. Returns logits ``[B, num_classes]``."""

    fusion: str = "single"  # one of FUSIONS
    num_classes: int = 487  # Sports-1M
    widths: tuple[int, int, int, int, int] = PAPER_WIDTHS  # conv1-conv5 filters
    fc_features: int = 4096  # fc6, fc7
    dropout_rate: float = 0.5
    early_extent: int = 10  # Sec. 2.1: early fusion's conv1 spans T = 10 frames
    late_gap: int = 15  # Sec. 2.1: late fusion's two frames are 15 frames apart

    def setup(self) -> None:
        if self.fusion not in FUSIONS:
            raise ValueError(f"FusionNet.fusion must be one of {FUSIONS}, got {self.fusion!r}")
        if len(self.widths) != 5:
            raise ValueError(f"FusionNet.widths needs 5 widths (conv1-conv5), got {self.widths}")
        per_frame = ((1, 1),) * 5
        if self.fusion == "early":
            self.tower = Tower(self.widths, ((self.early_extent, 1),) + per_frame[1:])
        elif self.fusion == "slow":
            self.tower = Tower(self.widths, SLOW_FUSION_TIME)
        elif self.fusion == "multires":
            # Sec. 2.2: the last pool is removed so that the 89x89 streams end in 7x7x256, like the 170 tower.
            self.fovea = Tower(self.widths, per_frame, last_pool=False, prefix="fovea_")
            self.context = Tower(self.widths, per_frame, last_pool=False, prefix="context_")
        else:
            self.tower = Tower(self.widths, per_frame)
        self.fc6_layer = nn.Dense(self.fc_features)
        self.fc7_layer = nn.Dense(self.fc_features)
        self.fc8_layer = nn.Dense(self.num_classes)
        self.dropout = nn.Dropout(self.dropout_rate)

    def __call__(self, x: Array, train: bool = False) -> Array:
        if x.ndim != 5:
            raise ValueError(f"FusionNet({self.fusion!r}) expects clips [B, T, H, W, C], got shape {x.shape}")
        b, t = x.shape[:2]
        if self.fusion in ("single", "multires"):
            frames = x.reshape((b * t, 1) + x.shape[2:])  # every frame is its own one-frame clip
            maps = self._multires(frames) if self.fusion == "multires" else self.tower(frames)
            logits = dropout_fc_head(self, maps.reshape((b * t, -1)), train)
            return logits.reshape((b, t, -1)).mean(axis=1)  # average the frames' predictions
        if self.fusion == "late":
            if t <= self.late_gap:
                raise ValueError(f"late fusion takes frames 0 and {self.late_gap}: needs > {self.late_gap} frames, "
                                 f"got a clip of shape {x.shape}")
            pair = jnp.stack([x[:, 0], x[:, self.late_gap]], axis=1)  # [B, 2, H, W, C]
            # The two shared-weight towers: both frames through one tower, then their maps meet in fc6.
            maps = self.tower(pair.reshape((b * 2, 1) + x.shape[2:])).reshape((b, 2) + (-1,))
        else:
            maps = self.tower(x)  # early / slow: time is fused inside the tower
        return dropout_fc_head(self, maps.reshape((b, -1)), train)

    def _multires(self, frames: Array) -> Array:
        """Fovea (centre crop) and context (downsampled frame) streams, concatenated along the feature axis."""
        h, w = frames.shape[2:4]
        if h != w or h % 2 or h // 2 < 1:
            raise ValueError(f"multires expects square frames of even size (178 in the paper), got {frames.shape}")
        half = h // 2
        top = (h - half) // 2
        fovea = frames[:, :, top:top + half, top:top + half]
        context = nn.avg_pool(frames, (1, 2, 2), strides=(1, 2, 2))
        n = frames.shape[0]
        return jnp.concatenate([self.fovea(fovea).reshape((n, -1)), self.context(context).reshape((n, -1))], axis=-1)


NAMES = {
    "single": "video_single_frame",
    "early": "video_early_fusion",
    "late": "video_late_fusion",
    "slow": "video_slow_fusion",
    "multires": "video_multires",
}
for _fusion, _name in NAMES.items():
    register(_name, functools.partial(FusionNet, fusion=_fusion))
