"""The two tasks of the ``hypermixer`` reproduction, each as train / validation / test token ids.

- ``fortunes``: topic of a Debian ``fortunes`` quote, over every category file with at least
  ``MIN_QUOTES`` quotes (32 categories, 14.7k quotes); word tokens, trained on the first 32 words and
  also tested on up to 128.
- ``far-match``: a synthetic long-range task. A sequence of ``length`` random symbols has one marked
  symbol in its first quarter and one in its last quarter (so at least ``length / 2`` positions
  apart); the label says whether the two marked symbols are the same (half the sequences). Pooling
  per-token features cannot tell (the answer depends on a pair of tokens), so the token mixing must
  carry one marked token to the other.

A task is a dict: ``"train"``, ``"val"``, ``"test"`` (and ``"longer"`` or None), each
``(ids (N, L) long, mask (N, L) bool, labels (N,))``; ``"vocab"``, ``"classes"``, ``"length"`` (L).
The validation split is carved from the training data; the test split is never used for choices.
"""

from __future__ import annotations

import torch

from ..data import fortune_categories, load_fortunes
from ..data.fortunes import build_vocab, encode

MIN_QUOTES = 100  # categories with fewer quotes are left out
SPLIT_SEED = 0  # the same splits and synthetic sequences for every run
WORDS, LONGER_WORDS, VOCAB = 32, 128, 5000
FAR_SYMBOLS = 8  # distinct symbols of far-match; ids 2..9 plain, 10..17 marked (0 padding, 1 unused)


def fortunes(quick: bool) -> dict:
    """Quotes of every category with >= ``MIN_QUOTES`` quotes: 80% train (of which 10% validation), 20% test."""
    categories = fortune_categories(MIN_QUOTES)
    texts, labels = load_fortunes(categories)
    order = torch.randperm(len(texts), generator=torch.Generator().manual_seed(SPLIT_SEED)).tolist()
    cut, val_cut = int(0.8 * len(texts)), int(0.08 * len(texts))
    val_idx, train_idx, test_idx = order[:val_cut], order[val_cut:cut], order[cut:]
    if quick:
        val_idx, train_idx, test_idx = val_idx[:100], train_idx[:300], test_idx[:100]
    vocab = build_vocab([texts[i] for i in train_idx], VOCAB)

    def split(idx: list[int], words: int = WORDS):
        ids, mask = encode([texts[i] for i in idx], vocab, words)
        return ids, mask, labels[idx]

    return {"train": split(train_idx), "val": split(val_idx), "test": split(test_idx),
            "longer": split(test_idx, LONGER_WORDS), "vocab": VOCAB, "classes": len(categories), "length": WORDS,
            "categories": categories}


def far_match_sequences(n: int, length: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` far-match sequences: ids (n, length) and labels (n,) (1: the two marked symbols are equal).

    Plain symbols are ids 2..``FAR_SYMBOLS`` + 1; a marked symbol s is s + ``FAR_SYMBOLS``. The first mark
    is in positions [0, length / 4), the second in [3 length / 4, length).
    """
    if length < 4:
        raise ValueError(f"far_match_sequences: length must be >= 4, got {length}.")
    ids = torch.randint(2, FAR_SYMBOLS + 2, (n, length), generator=gen)
    quarter = length // 4
    first = torch.randint(0, quarter, (n,), generator=gen)
    second = torch.randint(length - quarter, length, (n,), generator=gen)
    labels = torch.randint(0, 2, (n,), generator=gen)
    a = ids[torch.arange(n), first]
    shift = torch.randint(1, FAR_SYMBOLS, (n,), generator=gen)  # a different symbol when the label is 0
    b = torch.where(labels == 1, a, (a - 2 + shift) % FAR_SYMBOLS + 2)
    ids[torch.arange(n), first] = a + FAR_SYMBOLS
    ids[torch.arange(n), second] = b + FAR_SYMBOLS
    return ids, labels


def far_match(quick: bool, length: int = 64) -> dict:
    """Far-match sets: 20,000 train, 2,000 validation, 5,000 test sequences of ``length`` tokens."""
    gen = torch.Generator().manual_seed(SPLIT_SEED)
    sizes = (300, 100, 100) if quick else (20_000, 2_000, 5_000)

    def split(n: int):
        ids, labels = far_match_sequences(n, length, gen)
        return ids, torch.ones_like(ids, dtype=torch.bool), labels

    train, val, test = (split(n) for n in sizes)
    return {"train": train, "val": val, "test": test, "longer": None, "vocab": 2 * FAR_SYMBOLS + 2, "classes": 2,
            "length": length}


TASKS = {"fortunes": fortunes, "far-match": far_match}
