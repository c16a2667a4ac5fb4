"""Progress reporting shared by the methods' ``fit`` loops."""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from typing import Protocol


class Bar(Protocol):
    """A progress bar: ``tqdm``, or anything with ``update(n)``."""

    def update(self, n: int = 1) -> object: ...


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


def progress_bar(progress: bool | Bar | None, total: int | None, desc: str) -> AbstractContextManager[Bar]:
    """A context manager yielding an object with ``update(n)``.

    ``progress``: ``True`` for a ``tqdm`` bar over ``total`` steps (closed on exit), ``None`` / ``False``
    for none, or a bar the caller owns (anything with ``update(n)``, left open).
    """
    if progress is True:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, leave=False)
    return contextlib.nullcontext(progress or _Silent())
