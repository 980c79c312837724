"""Name -> model constructor registry.

Every model module registers its constructors at import time with :func:`register`; the training code
builds a model from a config's ``model`` section with ``get_model(cfg.model.name, **rest)``.

A constructor is a ``flax.linen.Module`` subclass, or a ``functools.partial`` of one (for variants and
aliases such as ``convnet_bn``). Keyword arguments are checked against the module's dataclass fields so
that a typo in a config fails loudly, naming the bad key and listing the valid ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import flax.linen as nn

Constructor = Callable[..., nn.Module]
C = TypeVar("C", bound=Constructor)

_REGISTRY: dict[str, Constructor] = {}

# Dataclass fields every flax Module has that are not hyperparameters of the model.
_FLAX_INTERNAL_FIELDS = frozenset({"parent", "name"})


class UnknownModelArgumentError(TypeError, ValueError):
    """An unknown keyword argument was passed to :func:`get_model`.

    Subclasses both ``TypeError`` (what Python raises for an unexpected keyword) and ``ValueError`` (what
    a bad config value usually raises), so callers may catch either.
    """


def _module_class(ctor: Constructor) -> type[nn.Module]:
    """Unwraps (possibly nested) ``functools.partial`` objects down to the Module class."""
    while isinstance(ctor, functools.partial):
        ctor = ctor.func
    if not (isinstance(ctor, type) and issubclass(ctor, nn.Module)):
        raise TypeError(f"A model constructor must be a flax Module class or a partial of one, got {ctor!r}")
    return ctor


def model_fields(name: str) -> list[str]:
    """The keyword arguments (Module fields) accepted by the model registered as ``name``, in order."""
    cls = _module_class(_lookup(name))
    return [f.name for f in dataclasses.fields(cls) if f.init and f.name not in _FLAX_INTERNAL_FIELDS]


def register(name: str, constructor: C | None = None) -> Any:
    """Registers ``constructor`` under ``name``.

    Usable as a class decorator (``@register("convnet")``) or as a function
    (``register("convnet_bn", functools.partial(ConvNet, batch_norm=True))``). Returns the constructor.
    Registering a different constructor under a name already taken raises ``ValueError``; re-registering
    the same class (e.g. after ``importlib.reload``) replaces the entry.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"Model name must be a non-empty string, got {name!r}")

    def _register(ctor: C) -> C:
        _module_class(ctor)  # validates
        old = _REGISTRY.get(name)
        if old is not None and old is not ctor and _qualname(old) != _qualname(ctor):
            raise ValueError(f"Model name {name!r} is already registered to {_qualname(old)}")
        _REGISTRY[name] = ctor
        return ctor

    if constructor is None:
        return _register
    return _register(constructor)


def _qualname(ctor: Constructor) -> str:
    """A printable identity for a constructor (class path plus partial keywords)."""
    cls = _module_class(ctor)
    keywords = ctor.keywords if isinstance(ctor, functools.partial) else {}
    path = f"{cls.__module__}.{cls.__qualname__}"
    return f"{path}({keywords})" if keywords else path


def _lookup(name: str) -> Constructor:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        valid = list_models()
        close = difflib.get_close_matches(str(name), valid, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown model name {name!r}.{hint} Valid names: {', '.join(valid)}") from None


def list_models() -> list[str]:
    """All registered model names, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, **kwargs: Any) -> nn.Module:
    """Builds the model registered as ``name`` with hyperparameters ``kwargs``.

    Raises ``ValueError`` for an unknown name (listing the valid names and suggesting the closest one) and
    :class:`UnknownModelArgumentError` (a ``TypeError`` and ``ValueError``) for a keyword that is not a
    field of the model.
    """
    ctor = _lookup(name)
    fields = model_fields(name)
    unknown = [k for k in kwargs if k not in fields]
    if unknown:
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(k, fields, n=1)
            hints.append(f"{k!r} (did you mean {close[0]!r}?)" if close else repr(k))
        raise UnknownModelArgumentError(
            f"Unknown argument(s) for model {name!r}: {', '.join(hints)}. Valid fields: {', '.join(fields)}"
        )
    return ctor(**kwargs)
