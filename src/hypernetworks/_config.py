"""Constructor records: how to rebuild an encoder or a head from JSON.

Classes deriving from ``Recorded`` remember the arguments their most-derived ``__init__`` was
called with. ``record(obj)`` turns them into ``{"class": "module.Qualname", "kwargs": {...}}``
(JSON: classes such as an activation become ``{"class": ...}``, tuples become lists), and
``rebuild(record)`` imports the class and calls it again.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any


class Recorded:
    """Mixin: instances keep the keyword arguments of their class's own ``__init__`` call."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return

        @functools.wraps(init)
        def recording_init(self, *args, **kw):
            init(self, *args, **kw)
            if type(self) is cls:  # the most-derived call only
                self.__dict__["_init_kwargs"] = _keywords(init, self, args, kw)

        cls.__init__ = recording_init


def _keywords(init, self, args, kw) -> dict:
    """The call's arguments by name, defaults filled in, ``**kwargs`` merged."""
    signature = inspect.signature(init)
    bound = signature.bind(self, *args, **kw)
    bound.apply_defaults()
    out = {}
    for name, value in list(bound.arguments.items())[1:]:
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            out.update(value)
        elif kind is inspect.Parameter.VAR_POSITIONAL:
            if value:
                raise TypeError(f"{type(self).__name__}: *args cannot be recorded; pass them by name.")
        else:
            out[name] = value
    return out


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _encode(value: Any) -> Any:
    if isinstance(value, type):
        return {"class": _name(value)}
    if isinstance(value, tuple | list):
        return [_encode(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"record: cannot store a constructor argument of type {type(value).__name__} as JSON.")


def _decode(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"class"}:
        return _import(value["class"])
    if isinstance(value, list):
        return tuple(_decode(v) for v in value)
    return value


def _import(name: str) -> Any:
    module, _, qualname = name.rpartition(".")
    while module:  # nested classes: peel the qualname until the module imports
        try:
            obj = importlib.import_module(module)
            break
        except ModuleNotFoundError:
            module, _, outer = module.rpartition(".")
            qualname = f"{outer}.{qualname}"
    else:
        raise ImportError(f"rebuild: cannot import {name!r}.")
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def record(obj: Recorded) -> dict:
    """``{"class": ..., "kwargs": {...}}`` that ``rebuild`` turns back into an equal, fresh object."""
    kwargs = getattr(obj, "_init_kwargs", None)
    if kwargs is None:
        raise TypeError(f"record: {type(obj).__name__} does not record its constructor arguments.")
    return {"class": _name(type(obj)), "kwargs": {k: _encode(v) for k, v in kwargs.items()}}


def rebuild(entry: dict) -> Any:
    """A fresh object from ``record``'s output."""
    return _import(entry["class"])(**{k: _decode(v) for k, v in entry["kwargs"].items()})
