"""Named per-example preprocessing ops and the parser for big_vision-style op strings.

A preprocessing spec is a ``|``-separated chain of op calls, for example::

    'decode|resize(32)|random_crop(32, pad=2)|flip_lr|value_range(-0.1, 1.175)'

Each element is an op name, optionally called with Python literals (positional and/or
keyword). ``parse(spec)`` returns ``fn(features, seed) -> features`` that applies the ops
left to right; ``get(name, *args, **kwargs)`` builds one op, ``names()`` lists them.

Conventions:

* An op factory ``op(*args, **kwargs)`` returns ``fn(features, seed) -> features``.
  ``features`` is a dict of tensors for ONE example. An op reads and writes the feature named by its
  keyword argument ``key`` (default ``'image'``), or reads ``inkey`` and writes ``outkey`` where they
  differ: the multi-view ops (``five_crop``, ``ten_crop``, ``flip_views``, ``googlenet_crops``, ``grid_crops``) read
  'image' and write their stacked views ``[V, h, w, C]`` to ``'crops'``. Every other key is passed on
  untouched, except the boxes that geometric ops transform along with the pixels (``boxes``, ``proposals``).
  ``keep(*keys)`` drops all other features, ``rename(old, new)`` moves one.
* Images are ``[H, W, C]``. Clips ``[T, H, W, C]`` go through the same geometric and colour ops frame by
  frame, with ONE random draw per example for all frames (same crop window, same flip); ``video`` adds
  temporal crops, and ``video_clips`` (per-video evaluation) writes every clip of a video to ``'crops'``
  ``[K, T, h, w, C]`` with ``'crop_mask'`` ``[K]`` (1: a real clip, 0: padding).
* Boxes: ``features['boxes']`` float32 ``[N, 4]`` (ymin, xmin, ymax, xmax) in pixel-edge coordinates of the
  current image, with ``box_classes`` / ``box_difficult`` and, after ``pad_boxes``, ``box_mask``; see
  ``convnets.data.ops.boxes`` for the full convention.
* ``seed`` is a shape-[2] int64 stateless seed for that example. ``parse`` gives every op
  its own seed, ``stateless_fold_in(stateless_fold_in(seed, position), crc32(name))``, so
  two random ops in one chain never share randomness, and random ops only use
  ``tf.random.stateless_*``. An op makes its draws once and applies them to everything it changes (pixels,
  boxes, frames). Hence the output is a pure function of (example, seed): this is what makes resumed runs
  and runs on different device or process counts bitwise identical.
* Until a value op (``value_range``, ``normalize``, ``to_float``, ``subtract_mean``) runs, pixel values are
  in 0..255 units, whether the dtype is uint8 or float32 (``resize`` returns float32).
  Value ops return float32.

Paper recipes as spec strings (``M`` = ``convnets.data.constants.IMAGENET_RGB_MEAN``; evaluation views in
``views``)::

    LeNet-5 (quickstart): decode|resize(28)|pad(2)|random_crop(32, pad=2)|value_range(-0.1, 1.175)
    AlexNet train:   decode(3)|resize((256, 256))|random_crop(224)|flip_lr|pca_lighting(0.1)|subtract_mean(M)
    VGG train:       decode(3)|random_resize_short(256, 512)|random_crop(224)|flip_lr|rgb_colour_shift|subtract_mean(M)
    GoogLeNet train: decode(3)|inception_crop(224)|flip_lr|photometric_distort|subtract_mean(M)
                     (the recipe runs the last two on the devices: data.device_preprocess, ``device_ops``)
    ResNet train:    decode(3)|random_resize_short(256, 480)|random_crop(224)|flip_lr|pca_lighting|subtract_mean(M)
    detection:       decode|objects_to_boxes|random_resize_short(480, 576)|random_crop(448)|flip_lr|pad_boxes(50)
    C3D-style clips: decode|random_temporal_crop(16)|resize((128, 171))|random_crop(112)|flip_lr|subtract_mean(M)
    C3D per video:   decode|resize((128, 171))|center_crop(112)|subtract_mean(M)|video_clips(16, 32, 8)

Fused decode: ``decode`` directly followed by an op that only keeps a window of the original image
(``inception_crop``) is run as one step that decodes only that window of a JPEG (``tf.io.decode_and_crop_jpeg``),
with the same draws and bit for bit the same pixels (``core.register_fused_decode``, ``parse(fuse_decode=...)``).
Ops that resize the whole image first (``resize``, ``resize_short``, ``random_resize_short``) cannot fuse: every
pixel of the original feeds the resize. Decoding shortcuts are not used: libjpeg's DCT-domain downscaling
(``ratio=2``) changes the pixels and saves only ~18% (Huffman decoding dominates), and ``dct_method='INTEGER_FAST'``
gives the same pixels at the same speed in this TensorFlow (benchmarks/input_pipeline.py, ~110 KB JPEGs).

Modules: ``core`` (registry, parser, helpers), ``decode``, ``geometry``, ``inception`` (GoogLeNet's crop),
``views`` (multi-view evaluation crops), ``colour``, ``colour_jitter``, ``boxes``, ``proposals`` (cached region
proposals), ``video``, ``keys``.
Adding an op is a few lines in the module it belongs to::

    @register('my_op')
    def my_op(arg, *, key='image'):
        def fn(features, seed):
            return replace(features, key, do_something(read(features, key, 'my_op'), arg))
        return fn
"""

from convnets.data.ops import (  # noqa: F401  (importing an op module registers its ops)
    boxes,
    colour,
    colour_jitter,
    decode,
    geometry,
    inception,
    keys,
    proposals,
    video,
    views,
)
from convnets.data.ops.core import (
    Features,
    OpFn,
    fused_decodes,
    get,
    names,
    parse,
    producers,
    register,
    register_fused_decode,
    signature,
)

__all__ = [
    "Features",
    "OpFn",
    "fused_decodes",
    "get",
    "names",
    "parse",
    "producers",
    "register",
    "register_fused_decode",
    "signature",
]
