"""The op registry, the spec parser, and the helpers every op module shares.

An op factory ``op(*args, **kwargs)`` returns ``fn(features, seed) -> features``; see the package docstring
(``convnets.data.ops``) for the conventions. This module imports no op module, so op modules can import it
without a cycle; ``convnets.data.ops`` imports all of them to fill the registry.
"""

from __future__ import annotations

import ast
import inspect
import zlib
from collections.abc import Callable, Sequence

import tensorflow as tf

Features = dict[str, tf.Tensor]
OpFn = Callable[[Features, tf.Tensor], Features]

RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")

_REGISTRY: dict[str, Callable[..., OpFn]] = {}
# Keys an op writes whatever its arguments (ops with an `outkey` argument are found from its default).
_PRODUCES: dict[str, tuple[str, ...]] = {}
# Ops that can take the ENCODED image from a `decode` right before them and decode only what they keep (a crop
# window of the original image): name -> factory(channels, *op_args, **op_kwargs) -> fn(features, seed), whose fn
# is only called with features[key] an encoded scalar string. See `register_fused_decode`.
_FUSED_DECODE: dict[str, Callable[..., OpFn]] = {}


def register(name: str, produces: Sequence[str] = ()) -> Callable[[Callable[..., OpFn]], Callable[..., OpFn]]:
    """Decorator registering an op factory under ``name`` for use in spec strings.

    ``produces`` names the feature keys the op creates (e.g. ``pad_boxes`` -> ``box_mask``), so that the
    pipeline can say which op would produce a key that a batch misses.
    """

    def wrap(factory: Callable[..., OpFn]) -> Callable[..., OpFn]:
        if name in _REGISTRY:
            raise ValueError(f"preprocessing op {name!r} is already registered")
        _REGISTRY[name] = factory
        _PRODUCES[name] = tuple(produces)
        return factory

    return wrap


def register_fused_decode(name: str) -> Callable[[Callable[..., OpFn]], Callable[..., OpFn]]:
    """Decorator registering the fused form of op ``name`` when it directly follows ``decode`` on the same key.

    The factory takes ``decode``'s ``channels`` then the op's own arguments, and returns ``fn(features, seed)``
    for an example whose ``features[key]`` is still one encoded image (a scalar string); ``fn`` must give
    exactly the features that ``decode`` then the op give (same pixels, same draws from ``seed``), only faster
    (e.g. ``tf.io.decode_and_crop_jpeg`` decodes the crop window only). ``parse`` substitutes it (see there).
    """

    def wrap(factory: Callable[..., OpFn]) -> Callable[..., OpFn]:
        if name in _FUSED_DECODE:
            raise ValueError(f"a fused decode for op {name!r} is already registered")
        _FUSED_DECODE[name] = factory
        return factory

    return wrap


def names() -> list[str]:
    """Returns the sorted names of all registered ops."""
    return sorted(_REGISTRY)


def producers(key: str) -> list[str]:
    """Sorted names of the ops that write ``key`` by default (declared ``produces`` or ``outkey`` default)."""
    found = []
    for name, factory in _REGISTRY.items():
        outkey = inspect.signature(factory).parameters.get("outkey")
        if key in _PRODUCES[name] or (outkey is not None and outkey.default == key):
            found.append(name)
    return sorted(found)


def signature(name: str) -> str:
    """The op's call signature as written in a spec, e.g. ``random_crop(size, pad=0, *, key='image', ...)``."""
    full = inspect.signature(_REGISTRY[name])
    # Shown without annotations: 'random_crop(size, pad=0)' reads like the spec syntax.
    bare = full.replace(
        parameters=[p.replace(annotation=p.empty) for p in full.parameters.values()],
        return_annotation=full.empty,
    )
    return f"{name}{bare}"


def get(name: str, *args, **kwargs) -> OpFn:
    """Builds the op ``name`` with the given arguments; ValueError for unknown names or bad args."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown preprocessing op {name!r}; valid ops: {', '.join(names())}")
    factory = _REGISTRY[name]
    try:
        inspect.signature(factory).bind(*args, **kwargs)
    except TypeError as e:
        raise ValueError(f"bad arguments for preprocessing op {signature(name)}: {e}") from None
    try:
        return factory(*args, **kwargs)
    except (TypeError, ValueError) as e:
        raise ValueError(f"bad arguments for preprocessing op {signature(name)}: {e}") from None


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


def _calls(spec: str) -> list[tuple[str, tuple, dict]]:
    """(name, args, kwargs) of every op of a non-empty spec, in order."""
    try:
        tree = ast.parse(spec.strip(), mode="eval")
    except SyntaxError as e:
        raise ValueError(f"cannot parse preprocessing spec {spec!r}: {e.msg}") from None
    return [_parse_call(node, spec.strip()) for node in _split_chain(tree.body)]


def _fusable(calls: list[tuple[str, tuple, dict]], position: int) -> bool:
    """Whether op ``position`` is a `decode` whose next op has a fused decode and works on the same key."""
    if position + 1 >= len(calls) or calls[position][0] != "decode" or calls[position + 1][0] not in _FUSED_DECODE:
        return False
    return calls[position][2].get("key", "image") == calls[position + 1][2].get("key", "image")


def _decode_channels(args: tuple, kwargs: dict) -> int | None:
    return inspect.signature(_REGISTRY["decode"]).bind(*args, **kwargs).arguments.get("channels")


def _fused(decode_fn: OpFn, op_fn: OpFn, fused_fn: OpFn, key: str) -> OpFn:
    """``decode`` then the op, or the fused op when ``features[key]`` is one encoded image (a scalar string)."""

    def fn(features: Features, seed: tf.Tensor) -> Features:
        # The choice is made while tracing, from the static dtype and rank: no runtime branch between the two.
        image = features.get(key)
        if image is not None and image.dtype == tf.string and image.shape.rank == 0:
            return fused_fn(features, seed)
        # decode draws nothing, so it may share the op's seed.
        return op_fn(decode_fn(features, seed), seed)

    return fn


def parse(spec: str, fuse_decode: bool = True) -> OpFn:
    """Parses ``'op1(args)|op2|...'`` into ``fn(features, seed) -> features``.

    An empty (or whitespace-only) spec is the identity. Raises ValueError for syntax
    errors, unknown op names (listing the valid ones) and bad arguments (giving the op's
    signature).

    With ``fuse_decode`` (default), ``decode`` directly followed by an op with a fused decode
    (``register_fused_decode``, e.g. ``inception_crop``) on the same key becomes one step that, when the
    image is still encoded, decodes only what the op keeps. The step keeps the op's position and name, so it
    draws from the same seed as the unfused chain and yields the same pixels; an already decoded image goes
    through ``decode`` (a no-op) and the op as before.
    """
    if not spec.strip():
        return lambda features, seed: dict(features)
    calls = _calls(spec)
    steps = []
    fused_into_next = False
    for position, (name, args, kwargs) in enumerate(calls):
        fn = get(name, *args, **kwargs)
        if fused_into_next:
            decode_fn = steps.pop()[2]
            fused_fn = _FUSED_DECODE[name](_decode_channels(*calls[position - 1][1:]), *args, **kwargs)
            fn = _fused(decode_fn, fn, fused_fn, kwargs.get("key", "image"))
        fused_into_next = fuse_decode and _fusable(calls, position)
        # The per-op seed salt depends on the position and the name, so the same op
        # twice in a chain, or a different op at the same position, get independent draws.
        steps.append((position, zlib.crc32(name.encode()) & 0x7FFFFFFF, fn))

    def apply(features: Features, seed: tf.Tensor) -> Features:
        seed = tf.cast(seed, tf.int64)
        for position, salt, fn in steps:
            op_seed = tf.random.experimental.stateless_fold_in(
                tf.random.experimental.stateless_fold_in(seed, position), salt
            )
            features = fn(features, op_seed)
        return features

    return apply


def fused_decodes(spec: str, fuse_decode: bool = True) -> dict[str, int | None]:
    """``{key: channels}`` if the spec STARTS with a fused decode (see ``parse``) of ``key``, else ``{}``.

    The pipeline decodes every encoded image before the spec runs, except one whose first op is a fused decode
    with the dataset's own channel count: that one is left encoded for the fused op (``records.example_fn``).
    """
    if not fuse_decode or not spec.strip():
        return {}
    calls = _calls(spec)
    if not _fusable(calls, 0):
        return {}
    _, args, kwargs = calls[0]
    return {kwargs.get("key", "image"): _decode_channels(args, kwargs)}


# ----------------------------------------------------------------------------- helpers for op modules


def replace(features: Features, key: str, value: tf.Tensor) -> Features:
    """Returns a copy of ``features`` with ``features[key] = value`` (ops never mutate their input)."""
    out = dict(features)
    out[key] = value
    return out


def read(features: Features, key: str, op: str) -> tf.Tensor:
    """``features[key]``, or a ValueError naming the op, the key and the keys that exist."""
    if key not in features:
        raise ValueError(
            f"{op}: the example has no feature {key!r} (it has {', '.join(sorted(features))}); name the feature "
            "with the op's key argument, or add the op that writes it earlier in the spec"
        )
    return features[key]


def hw_size(size: int | Sequence[int], op: str) -> tuple[int, int]:
    """Normalizes an int or (h, w) size argument to (h, w) of positive ints."""
    if isinstance(size, int):
        size = (size, size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"{op}: size must be a positive int or (height, width), got {size!r}")
    return int(size[0]), int(size[1])


def positive_int(value, op: str, what: str) -> int:
    """``value`` if it is a positive int (not a bool), else a ValueError naming the op and the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{op}: {what} must be a positive int, got {value!r}")
    return value


def non_negative_int(value, op: str, what: str) -> int:
    """``value`` if it is an int >= 0 (not a bool), else a ValueError naming the op and the argument."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{op}: {what} must be a non-negative int, got {value!r}")
    return value


def resize_method(method: str, op: str) -> str:
    """``method`` if tf.image.resize supports it here, else a ValueError listing the supported ones."""
    if method not in RESIZE_METHODS:
        raise ValueError(f"{op}: unsupported method {method!r}; use one of {', '.join(RESIZE_METHODS)}")
    return method


def per_channel(values: float | Sequence[float], op: str) -> list[float]:
    """Normalizes a number or per-channel list of numbers to a list of floats."""
    values = [values] if isinstance(values, int | float) else list(values)
    if not values or not all(isinstance(v, int | float) for v in values):
        raise ValueError(f"{op}: expected a number or a list of numbers, got {values!r}")
    return [float(v) for v in values]


def check_image_rank(image: tf.Tensor, op: str, key: str) -> int:
    """Static rank of an image ``[H, W, C]`` or a clip ``[T, H, W, C]``; ValueError for anything else."""
    rank = image.shape.rank
    if rank not in (3, 4):
        raise ValueError(
            f"{op}: features[{key!r}] must be an image [H, W, C] or a clip [T, H, W, C] of known rank, "
            f"got shape {image.shape}"
        )
    return rank
