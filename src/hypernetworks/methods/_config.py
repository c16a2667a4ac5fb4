"""Method configs (dataclasses): to and from plain dicts, and built from keyword options."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import Field, asdict, fields
from typing import Any, ClassVar, Self


class DictConfig:
    """Mixin for ``@dataclass`` configs: ``to_dict`` / ``from_dict`` (unknown keys warn and are named) and
    ``build`` (keyword options over a config; an unknown option raises)."""

    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # set by @dataclass on each subclass

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"{cls.__name__}.from_dict: ignoring unknown keys {unknown}.", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def build(cls, config: Self | None = None, **options: Any) -> Self:
        """``config`` (default: the defaults) with ``options`` replacing its fields.

        Raises:
            TypeError: ``config`` is not a ``cls``, or an option is not one of its fields (named).
        """
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"{cls.__name__}: expected a {cls.__name__}, got {type(config).__name__}.")
        known = [f.name for f in fields(cls)]
        unknown = [k for k in options if k not in known]
        if unknown:
            raise TypeError(f"{cls.__name__}: unknown option {unknown[0]!r}; the options are {', '.join(known)}.")
        return cls(**{**(config.to_dict() if config is not None else {}), **options})
