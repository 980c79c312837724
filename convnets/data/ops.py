"""Named per-example preprocessing ops and the parser for big_vision-style op strings.

A preprocessing spec is a ``|``-separated chain of op calls, for example::

    'decode|resize(32)|random_crop(32, pad=2)|flip_lr|value_range(-0.1, 1.175)'

Each element is an op name, optionally called with Python literals (positional and/or
keyword). ``parse(spec)`` returns ``fn(features, seed) -> features`` that applies the ops
left to right.

Conventions:

* An op factory ``op(*args, **kwargs)`` returns ``fn(features, seed) -> features``.
  ``features`` is a dict of tensors for ONE example; ops read and write
  ``features['image']`` (HWC) and leave every other key (``'label'``, ...) untouched.
* ``seed`` is a shape-[2] int64 stateless seed for that example. ``parse`` gives every op
  its own seed, ``stateless_fold_in(stateless_fold_in(seed, position), crc32(name))``, so
  two random ops in one chain never share randomness, and random ops only use
  ``tf.random.stateless_*`` / ``tf.image.stateless_random_*``. Hence the output is a pure
  function of (example, seed): this is what makes resumed runs and runs on different
  device or process counts bitwise identical.
* Until a value op (``value_range``, ``normalize``, ``to_float``) runs, pixel values are
  in 0..255 units, whether the dtype is uint8 or float32 (``resize`` returns float32).
  Value ops return float32.

Adding an op is a few lines::

    @register('my_op')
    def my_op(arg, key=default):
        def fn(features, seed):
            return _with_image(features, do_something(features['image'], arg, key))
        return fn
"""

from __future__ import annotations

import ast
import inspect
import zlib
from collections.abc import Callable, Sequence

import tensorflow as tf

Features = dict[str, tf.Tensor]
OpFn = Callable[[Features, tf.Tensor], Features]

_REGISTRY: dict[str, Callable[..., OpFn]] = {}


def register(name: str) -> Callable[[Callable[..., OpFn]], Callable[..., OpFn]]:
    """Decorator registering an op factory under ``name`` for use in spec strings."""

    def wrap(factory: Callable[..., OpFn]) -> Callable[..., OpFn]:
        if name in _REGISTRY:
            raise ValueError(f"preprocessing op {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    """Returns the sorted names of all registered ops."""
    return sorted(_REGISTRY)


def get(name: str, *args, **kwargs) -> OpFn:
    """Builds the op ``name`` with the given arguments; ValueError for unknown names or bad args."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown preprocessing op {name!r}; valid ops: {', '.join(names())}")
    factory = _REGISTRY[name]
    full = inspect.signature(factory)
    # Shown without annotations: 'random_crop(size, pad=0)' reads like the spec syntax.
    bare = full.replace(
        parameters=[p.replace(annotation=p.empty) for p in full.parameters.values()],
        return_annotation=full.empty,
    )
    signature = f"{name}{bare}"
    try:
        full.bind(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for preprocessing op {signature}: {e}") from None
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad arguments for preprocessing op {signature}: {e}") from None


def _split_chain(node: ast.expr) -> list[ast.expr]:
    """Flattens ``a | b | c`` (a left-nested BitOr tree) into [a, b, c]."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _split_chain(node.left) + _split_chain(node.right)
    return [node]


def _parse_call(node: ast.expr, spec: str) -> tuple[str, tuple, dict]:
    """Returns (name, args, kwargs) of one element of a spec."""
    text = ast.get_source_segment(spec, node) or ast.dump(node)
    if isinstance(node, ast.Name):
        return node.id, (), {}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        try:
            args = tuple(ast.literal_eval(a) for a in node.args)
            kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords if k.arg is not None}
        except ValueError:
            raise ValueError(
                f"arguments of preprocessing op {text!r} must be Python literals (in spec {spec!r})"
            ) from None
        if any(k.arg is None for k in node.keywords):
            raise ValueError(f"**kwargs are not supported in preprocessing op {text!r}")
        return node.func.id, args, kwargs
    raise ValueError(f"cannot parse preprocessing op {text!r} in spec {spec!r}: expected name or name(args)")


def parse(spec: str) -> OpFn:
    """Parses ``'op1(args)|op2|...'`` into ``fn(features, seed) -> features``.

    An empty (or whitespace-only) spec is the identity. Raises ValueError for syntax
    errors, unknown op names (listing the valid ones) and bad arguments (giving the op's
    signature).
    """
    if not spec.strip():
        return lambda features, seed: dict(features)
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"cannot parse preprocessing spec {spec!r}: {e.msg}") from None
    source = spec.strip()
    steps = []
    for position, node in enumerate(_split_chain(tree.body)):
        name, args, kwargs = _parse_call(node, source)
        # The per-op seed salt depends on the position and the name, so the same op
        # twice in a chain, or a different op at the same position, get independent draws.
        steps.append((position, zlib.crc32(name.encode()) & 0x7FFFFFFF, get(name, *args, **kwargs)))

    def apply(features: Features, seed: tf.Tensor) -> Features:
        seed = tf.cast(seed, tf.int64)
        for position, salt, fn in steps:
            op_seed = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(seed, position), salt
            )
            features = fn(features, op_seed)
        return features

    return apply


# ----------------------------------------------------------------------------- helpers


def _with_image(features: Features, image: tf.Tensor) -> Features:
    """Returns a copy of ``features`` with the image replaced (ops never mutate inputs)."""
    out = dict(features)
    out["image"] = image
    return out


def _hw(size: int | Sequence[int], op: str) -> tuple[int, int]:
    """Normalizes an int or (h, w) size argument."""
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"{op}: size must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def _channels(image: tf.Tensor) -> int | tf.Tensor:
    """Static channel count when known, else the dynamic one."""
    return image.shape[-1] if image.shape[-1] is not None else tf.shape(image)[-1]


def _per_channel(values: float | Sequence[float], op: str) -> list[float]:
    """Normalizes a number or per-channel list of numbers to a list of floats."""
    values = [values] if isinstance(values, int | float) else list(values)
    if not values or not all(isinstance(v, int | float) for v in values):
        raise ValueError(f"{op}: expected a number or a list of numbers, got {values!r}")
    return [float(v) for v in values]


# ----------------------------------------------------------------------------- ops


@register("decode")
def decode(channels: int | None = None) -> OpFn:
    """Decodes PNG/JPEG/GIF/BMP bytes to uint8 HWC; a no-op if the image is already decoded.

    ``channels=None`` keeps the encoded channel count (then only known statically if
    the image was already decoded, e.g. by the pipeline, which decodes with the dataset's
    declared channel count before running the spec).
    """

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        if image.dtype != tf.string:
            return dict(features)
        image = tf.io.decode_image(image, channels=channels or 0, dtype=tf.uint8, expand_animations=False)
        if channels:
            image.set_shape([None, None, channels])
        return _with_image(features, image)

    return fn


@register("resize")
def resize(size: int | Sequence[int], method: str = "bilinear") -> OpFn:
    """Resizes to ``size`` (int or (h, w)); returns float32 still in 0..255 units."""
    hw = _hw(size, "resize")
    if method not in ("bilinear", "nearest", "bicubic", "area"):
        raise ValueError(f"resize: unsupported method {method!r}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(features["image"], tf.float32)
        return _with_image(features, tf.image.resize(image, hw, method=method))

    return fn


@register("center_crop")
def center_crop(size: int | Sequence[int]) -> OpFn:
    """Crops the central (h, w) window (offsets round down, like tf.image.central_crop)."""
    h, w = _hw(size, "center_crop")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        shape = tf.shape(image)
        # crop_to_bounding_box (unlike plain slicing) fails loudly on a too-small image.
        top, left = (shape[0] - h) // 2, (shape[1] - w) // 2
        return _with_image(features, tf.image.crop_to_bounding_box(image, top, left, h, w))

    return fn


@register("pad")
def pad(pad: int) -> OpFn:
    """Zero-pads ``pad`` pixels on every side (LeNet-5: 28x28 MNIST -> 32x32 with pad(2))."""
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"pad: pad must be a non-negative int, got {pad!r}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _with_image(features, tf.pad(features["image"], [[pad, pad], [pad, pad], [0, 0]]))

    return fn


@register("random_crop")
def random_crop(size: int | Sequence[int], pad: int = 0) -> OpFn:
    """Zero-pads ``pad`` pixels on every side, then crops a uniformly random (h, w) window.

    With ``pad > 0`` and ``size`` equal to the image size this is the random-shift
    augmentation of the ResNet CIFAR recipe (pad 4, crop 32).
    """
    h, w = _hw(size, "random_crop")
    if not isinstance(pad, int) or pad < 0:
        raise ValueError(f"random_crop: pad must be a non-negative int, got {pad!r}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        if pad:
            image = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        channels = image.shape[-1]
        crop = tf.image.stateless_random_crop(image, [h, w, _channels(image)], seed=seed)
        crop.set_shape([h, w, channels])
        return _with_image(features, crop)

    return fn


@register("flip_lr")
def flip_lr() -> OpFn:
    """Flips the image left-right with probability 0.5."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _with_image(features, tf.image.stateless_random_flip_left_right(features["image"], seed))

    return fn


@register("to_rgb")
def to_rgb() -> OpFn:
    """Replicates a single channel to three; a no-op for 3-channel images."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        if image.shape[-1] == 3:
            return dict(features)
        if image.shape[-1] != 1:
            raise ValueError(f"to_rgb expects 1 or 3 (static) channels, got shape {image.shape}")
        return _with_image(features, tf.image.grayscale_to_rgb(image))

    return fn


@register("to_grayscale")
def to_grayscale() -> OpFn:
    """Converts RGB to one luma channel (ITU-R 601 weights); a no-op for 1-channel images."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = features["image"]
        if image.shape[-1] == 1:
            return dict(features)
        if image.shape[-1] != 3:
            raise ValueError(f"to_grayscale expects 1 or 3 (static) channels, got shape {image.shape}")
        return _with_image(features, tf.image.rgb_to_grayscale(image))

    return fn


@register("value_range")
def value_range(lo: float, hi: float) -> OpFn:
    """Maps 0..255 linearly to [lo, hi] as float32 (LeNet-5: lo=-0.1, hi=1.175)."""
    lo, hi = float(lo), float(hi)

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(features["image"], tf.float32)
        return _with_image(features, lo + image * ((hi - lo) / 255.0))

    return fn


@register("normalize")
def normalize(mean: float | Sequence[float], std: float | Sequence[float]) -> OpFn:
    """Per-channel ``(x - mean) / std`` with mean and std in 0..255 units; float32."""
    mean_l, std_l = _per_channel(mean, "normalize"), _per_channel(std, "normalize")
    if any(s <= 0 for s in std_l):
        raise ValueError(f"normalize: std must be positive, got {std!r}")

    def fn(features: Features, seed: tf.Tensor) -> Features:
        image = tf.cast(features["image"], tf.float32)
        return _with_image(features, (image - tf.constant(mean_l)) / tf.constant(std_l))

    return fn


@register("to_float")
def to_float() -> OpFn:
    """Maps 0..255 to 0..1 float32."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        return _with_image(features, tf.cast(features["image"], tf.float32) / 255.0)

    return fn


# The ImageNet ops of AlexNet, ZF Net and VGG live in their own module and register here.
from convnets.data import ops_imagenet, ops_inception  # noqa: E402, F401
