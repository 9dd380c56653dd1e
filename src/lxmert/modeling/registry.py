"""The model classes by name, so that a checkpoint's recorded class name loads that class.

`save_pretrained` records `type(model).__name__` in the weights; `from_pretrained` on the
base class looks the name up here. Checkpoint I/O (`lxmert.checkpoint`) therefore never
imports a model class. Classes register with `@register_model`.
"""

from __future__ import annotations

from typing import TypeVar

from lxmert.errors import CheckpointError

__all__ = ["register_model", "model_class", "model_names"]

T = TypeVar("T", bound=type)
_MODELS: dict[str, type] = {}


def register_model(cls: T) -> T:
    """Class decorator: make `cls` loadable by its name."""
    name = cls.__name__
    if name in _MODELS and _MODELS[name] is not cls:
        raise ValueError(f"two model classes are named {name}: {_MODELS[name]} and {cls}")
    _MODELS[name] = cls
    return cls


def model_class(name: str) -> type:
    """The registered class called `name`."""
    try:
        return _MODELS[name]
    except KeyError:
        raise CheckpointError(f"unknown model class {name!r} (known: {', '.join(sorted(_MODELS))})") from None


def model_names() -> list[str]:
    return sorted(_MODELS)
