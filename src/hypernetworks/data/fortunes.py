"""Quotes from Debian's ``fortunes`` package, labelled by category (one file per category)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch

FORTUNES_DIR = Path("/usr/share/games/fortunes")
_WORD = re.compile(r"[a-z']+")


def load_fortunes(categories: list[str], path: str | Path = FORTUNES_DIR) -> tuple[list[str], torch.Tensor]:
    """Quotes and labels (index into ``categories``), in file order.

    Raises:
        FileNotFoundError: a category file is missing (``apt-get install fortunes``, which
            ``make install`` does as root).
    """
    texts, labels = [], []
    for label, name in enumerate(categories):
        f = Path(path) / name
        if not f.exists():
            raise FileNotFoundError(f"load_fortunes: {f} not found; install Debian's fortunes package or pass path=.")
        quotes = _quotes(f)
        texts += quotes
        labels += [label] * len(quotes)
    return texts, torch.tensor(labels)


def fortune_categories(min_quotes: int = 1, path: str | Path = FORTUNES_DIR) -> list[str]:
    """Names of the category files under ``path`` holding at least ``min_quotes`` quotes, sorted.

    Raises:
        FileNotFoundError: ``path`` is not a folder (install Debian's fortunes package or pass path=).
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(
            f"fortune_categories: {folder} not found; install Debian's fortunes package or pass path=."
        )
    names = [f.name for f in folder.iterdir() if f.is_file() and not f.suffix and (folder / f"{f.name}.dat").exists()]
    return sorted(n for n in names if len(_quotes(folder / n)) >= min_quotes)


def _quotes(file: Path) -> list[str]:
    return [q.strip() for q in file.read_text(encoding="latin-1").split("\n%\n") if q.strip()]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def build_vocab(texts: list[str], size: int) -> dict[str, int]:
    """The ``size`` - 2 most frequent words -> ids from 2 (0 = padding, 1 = unknown)."""
    counts = Counter(w for t in texts for w in words(t))
    return {w: i + 2 for i, (w, _) in enumerate(counts.most_common(size - 2))}


def encode(texts: list[str], vocab: dict[str, int], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (N, max_len) and a bool mask (N, max_len), True for real tokens (truncated)."""
    ids = torch.zeros(len(texts), max_len, dtype=torch.long)
    for i, t in enumerate(texts):
        toks = [vocab.get(w, 1) for w in words(t)][:max_len] or [1]
        ids[i, : len(toks)] = torch.tensor(toks)
    return ids, ids != 0
