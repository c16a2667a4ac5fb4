"""Methods built on the core layers. Each registers its builder here by a unique lowercase name."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable

_REGISTRY: dict[str, Callable] = {}


def register_method(name: str, builder: Callable) -> None:
    """Register ``builder`` under ``name``; a duplicate or non-lowercase name raises."""
    if name != name.lower() or not name:
        raise ValueError(f"register_method: names are lowercase and non-empty, got {name!r}.")
    if name in _REGISTRY:
        raise ValueError(f"register_method: '{name}' is already registered.")
    _REGISTRY[name] = builder


def get_method(name: str) -> Callable:
    if name not in _REGISTRY:
        raise KeyError(f"get_method: unknown method {name!r}; known: {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def list_methods(pattern: str = "*") -> list[str]:
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


from . import adapters as adapters  # noqa: E402  (each registers itself)
from . import continual as continual  # noqa: E402
from . import ghn as ghn  # noqa: E402
from . import hyperclip as hyperclip  # noqa: E402
from . import inr as inr  # noqa: E402
from . import malmen as malmen  # noqa: E402
from . import mip as mip  # noqa: E402
from . import rl as rl  # noqa: E402
from . import sie as sie  # noqa: E402

__all__ = [
    "adapters", "continual", "get_method", "ghn", "hyperclip", "inr", "list_methods", "malmen", "mip",
    "register_method", "rl", "sie",
]
