"""What the methods' ``fit`` loops share: batches for epochs or steps, progress, a plain Adam loop."""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import AbstractContextManager
from typing import Any, Protocol

import torch


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


def batches_for(batches: Iterable[Any], epochs: int | None, steps: int | None) -> tuple[Iterator[Any], int | None]:
    """Batches from ``batches`` for ``epochs`` passes, or exactly ``steps`` batches (re-iterating), and
    their number (None when ``batches`` has no length)."""
    if epochs is not None and steps is None:
        total = epochs * len(batches) if isinstance(batches, Sized) else None
        return itertools.chain.from_iterable(batches for _ in range(epochs)), total
    if steps is not None and epochs is None:
        return itertools.islice(_passes(batches), steps), steps
    raise ValueError(f"fit: give exactly one of epochs and steps, got epochs={epochs}, steps={steps}.")


def _passes(batches: Iterable[Any]) -> Iterator[Any]:
    """``batches`` pass after pass; a pass that yields nothing (a spent iterator) is an error, not an endless loop."""
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("fit: the batches ran out before the steps did; pass a list or DataLoader (read "
                             "again each pass), an endless iterator, or fewer steps.")


def adam_steps(params: Iterable[torch.nn.Parameter], step_loss: Callable[[Any], torch.Tensor],
               batches: Iterable[Any], *, epochs: int | None, steps: int | None, lr: float,
               progress: bool | Bar | None, desc: str) -> list[float]:
    """Adam at rate ``lr`` on ``params``, one step per batch minimising ``step_loss(batch)``; the loss per step.

    Exactly one of ``epochs`` / ``steps`` (see ``batches_for``); a generator of batches is read lazily, one
    batch per step, so batches drawn from a seeded generator come out the same as in a hand-written loop.
    """
    opt = torch.optim.Adam(params, lr=lr)
    stream, total = batches_for(batches, epochs, steps)
    losses: list[float] = []
    with progress_bar(progress, total, desc) as bar:
        for batch in stream:
            loss = step_loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            bar.update(1)
    return losses
