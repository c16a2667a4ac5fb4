"""Round-tripping of method configs (dataclasses) to and from plain dicts."""

from __future__ import annotations

import warnings
from dataclasses import asdict, fields
from typing import Self


class DictConfig:
    """Mixin for ``@dataclass`` configs: ``to_dict`` / ``from_dict`` (unknown keys warn and are named)."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            warnings.warn(f"{cls.__name__}.from_dict: ignoring unknown keys {unknown}.", stacklevel=2)
        return cls(**{k: v for k, v in data.items() if k in known})
