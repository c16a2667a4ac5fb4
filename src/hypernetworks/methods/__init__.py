"""Methods built on the core layers, created by name: ``create(name, target, **config)``.

Every method registers one builder under a unique lowercase name, with the config dataclass that
sizes it. The builder takes ``(target, config)`` where the method generates tensors of a module the
caller gives (``mip``, ``continual``, ``hyperformer``, ...), or ``(config)`` where the method builds
its own model (``ghn2``, ``sie``, ``hyperclip``, ...). The shared verbs mean the same in every method:
``generate`` returns tensors, ``materialize`` a plain ``nn.Module``, ``fit`` runs a training loop,
``predict`` fills the parameters of a given model (GHN), and ``save_pretrained`` / ``from_pretrained``
store and rebuild a trained method object.

Example:
    >>> from torch import nn
    >>> from hypernetworks import methods
    >>> hnet = methods.create("mip", nn.Linear(4, 2), hidden=(16,))
    >>> methods.create("mip", nn.Linear(4, 2), depth=2)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    TypeError: create('mip'): MIPConfig: unknown option 'depth'; the options are num_scalars, hidden, ...
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from ._config import DictConfig


@dataclass(frozen=True)
class Method:
    """A registered method: its builder, its config class and whether it takes a target module."""

    name: str
    builder: Callable
    config: type[DictConfig]
    takes_target: bool

    @property
    def summary(self) -> str:
        """The first sentence of the builder's docstring."""
        paragraph = " ".join((self.builder.__doc__ or "").strip().split("\n\n")[0].split())
        return paragraph.split(". ")[0].rstrip(".") + "."


_REGISTRY: dict[str, Method] = {}


def register_method(name: str, builder: Callable, config: type[DictConfig], *, takes_target: bool = True) -> None:
    """Register ``builder(target, config)`` (or ``builder(config)`` with ``takes_target=False``) under ``name``.

    Raises:
        ValueError: the name is not lowercase, or is already registered.
    """
    if name != name.lower() or not name:
        raise ValueError(f"register_method: names are lowercase and non-empty, got {name!r}.")
    if name in _REGISTRY:
        raise ValueError(f"register_method: '{name}' is already registered.")
    _REGISTRY[name] = Method(name, builder, config, takes_target)


def get_method(name: str) -> Method:
    """The registered ``Method`` called ``name``."""
    if name not in _REGISTRY:
        raise KeyError(f"get_method: unknown method {name!r}; known: {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def list_methods(pattern: str = "*") -> list[str]:
    """Registered names matching the shell-style ``pattern``, sorted."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatchcase(n, pattern))


def keyword_arguments(builder: Callable) -> list[str]:
    """Names of the keyword-only arguments a builder takes besides its config (e.g. ``calibration``)."""
    return [p.name for p in inspect.signature(builder).parameters.values() if p.kind is p.KEYWORD_ONLY]


def create(name: str, target: nn.Module | None = None, config: DictConfig | None = None, **options: Any) -> nn.Module:
    """Build the method ``name`` for ``target`` from ``config`` and/or keyword ``options``: its config's fields,
    and the builder's own keyword-only arguments (e.g. ``calibration=`` conditions for the init).

    Raises:
        TypeError: an option that is neither (named), or a target given to a method that builds its own
            model, or none given to one that needs it.
    """
    method = get_method(name)
    extra = {k: options.pop(k) for k in keyword_arguments(method.builder) if k in options}
    try:
        config = method.config.build(config, **options)
    except TypeError as err:
        raise TypeError(f"create({name!r}): {err}") from None
    if not method.takes_target:
        if target is not None:
            raise TypeError(f"create({name!r}): this method builds its own model; pass no target.")
        return method.builder(config, **extra)
    if not isinstance(target, nn.Module):
        raise TypeError(f"create({name!r}): needs the target nn.Module as second argument, got "
                        f"{type(target).__name__}.")
    return method.builder(target, config, **extra)


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
    "Method", "adapters", "continual", "create", "get_method", "ghn", "hyperclip", "inr", "keyword_arguments",
    "list_methods", "malmen",
    "mip", "register_method", "rl", "sie",
]
