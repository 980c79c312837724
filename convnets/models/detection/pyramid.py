"""Test-time image pyramids for region-based detectors (Fast R-CNN sec. 2.4 "Scale invariance" and sec. 5.2, Table 7;
SPPnet, He et al. 2014, sec. 3.1), with static shapes.

The authors' test code (rbgirshick/fast-rcnn lib/fast_rcnn/test.py, ``_get_image_blob`` / ``_project_im_rois``;
experiments/cfgs/multiscale.yml) resizes the image so that its shorter side is each of ``TEST.SCALES``
({480, 576, 688, 864, 1200} for the multi-scale models) unless the longer side would then exceed ``TEST.MAX_SIZE``
(2000 there; 1000 for the single 600 scale), in which case the longer side is ``MAX_SIZE``. Every RoI is then
pooled from the ONE level where its scaled area is closest to 224 x 224 pixels (the networks' pre-training size).

Here the input is a batch of padded canvases [B, H, W, 3] whose real images have sizes ``image_size`` [B, 2]
(already resized by the data pipeline, with the original aspect ratio): the factor of each image at each level is
computed from its real size with the authors' rule, which gives the same resized size as starting from the
original image. Each level has a static canvas, the data canvas times ``scale / data_scale`` (``data_scale``: the
shorter side the data pipeline resized to, e.g. 600), capped at ``max_size``. An image whose resized size would not
fit its level's canvas (only images that the data pipeline itself capped by its longer-side limit, i.e. of aspect
ratio above canvas / data_scale) gets the largest factor that fits: a documented deviation needed for static
shapes. Resizing is bilinear without antialiasing, with pixel centres at half-integers, as OpenCV's INTER_LINEAR
that the authors use.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

Array = jax.Array
TARGET_AREA = 224 * 224  # test.py: np.abs(scaled_areas - 224 * 224)


@dataclasses.dataclass(frozen=True)
class Level:
    """One pyramid level: the shorter-side ``scale``, the longer-side cap ``max_size`` and its static canvas."""

    scale: int
    max_size: int
    canvas: tuple[int, int]


def pyramid_levels(canvas: tuple[int, int], scales: tuple[int, ...], max_size: int, data_scale: int
                   ) -> tuple[Level, ...]:
    """The levels of ``scales`` for data canvases ``canvas`` (H, W) holding images resized to ``data_scale``."""
    if not scales or any(int(s) <= 0 for s in scales) or max_size <= 0 or data_scale <= 0:
        raise ValueError(f'an image pyramid needs scales > 0 (got {tuple(scales)}), max_size > 0 (got {max_size}) '
                         f'and data_scale > 0 (got {data_scale}); Fast R-CNN: scales=(480, 576, 688, 864, 1200), '
                         f'max_size=2000, data_scale=600')
    return tuple(Level(int(s), int(max_size), tuple(min(int(max_size), math.ceil(n * s / data_scale))
                                                    for n in canvas)) for s in scales)


def level_factors(image_size: Array, levels: tuple[Level, ...]) -> Array:
    """[B, S]: the resize factor of each image (real size ``image_size`` [B, 2] = (h, w)) at each level."""
    size = image_size.astype(jnp.float32)
    short, long = jnp.min(size, axis=-1), jnp.max(size, axis=-1)
    out = []
    for level in levels:
        f = level.scale / short
        f = jnp.where(jnp.round(f * long) > level.max_size, level.max_size / long, f)  # _get_image_blob's cap
        f = jnp.minimum(f, jnp.minimum(level.canvas[0] / size[:, 0], level.canvas[1] / size[:, 1]))  # static canvas
        out.append(f)
    return jnp.stack(out, axis=-1)


def assign_levels(rois: Array, factors: Array, target_area: float = TARGET_AREA) -> Array:
    """[B, R]: the level of each RoI [B, R, 4] whose scaled area is closest to ``target_area`` (first on ties)."""
    area = jnp.maximum(rois[..., 2] - rois[..., 0], 0) * jnp.maximum(rois[..., 3] - rois[..., 1], 0)
    scaled = area[..., None] * jnp.square(factors)[:, None, :]
    return jnp.argmin(jnp.abs(scaled - target_area), axis=-1)


def resize_images(images: Array, factors: Array, canvas: tuple[int, int]) -> Array:
    """Images [B, H, W, C] scaled by ``factors`` [B] about the top-left corner onto canvases [B, *canvas, C]."""

    def one(image: Array, f: Array) -> Array:
        return jax.image.scale_and_translate(
            image, (*canvas, image.shape[-1]), (0, 1), jnp.stack([f, f]), jnp.zeros(2, jnp.float32),
            method='linear', antialias=False)

    return jax.vmap(one)(images.astype(jnp.float32), factors.astype(jnp.float32)).astype(images.dtype)
