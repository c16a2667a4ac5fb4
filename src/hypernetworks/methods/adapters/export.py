"""Export one condition's generated LoRA in PEFT's standard format.

The files (``adapter_config.json`` + ``adapter_model.safetensors``) are written through PEFT's
public API (``LoraConfig``, ``get_peft_model``, ``set_peft_model_state_dict``, ``save_pretrained``),
so ``peft.PeftModel.from_pretrained(base, path)`` loads them without this library.
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from .model import GeneratedAdapters

__all__ = ["export_peft"]


def export_peft(model: GeneratedAdapters, cond: torch.Tensor, path: str | Path) -> Path:
    """Write the adapter that ``model`` generates for one condition as a PEFT LoRA adapter.

    PEFT's scaling ``lora_alpha / r`` is set to 1, so the adapter adds exactly ``B·A`` as the
    hypernetwork does.

    Args:
        model: the generator (its ``target`` is the base model the adapter is for).
        cond: one condition of shape ``cond_shape`` (a task id ``()``, or a text embedding ``(F,)``).
        path: output directory.

    Returns:
        ``path``, holding ``adapter_config.json`` and ``adapter_model.safetensors``.

    Raises:
        ValueError: a batch of conditions, or a model with conditional norms (a LoRA adapter
            cannot hold LayerNorm shifts).
    """
    import peft

    if model.encoder.is_batched(cond):
        raise ValueError(f"export_peft: needs one condition of shape {model.encoder.cond_shape}, "
                         f"got a batch {tuple(cond.shape)}.")
    if model.norms is not None:
        raise ValueError("export_peft: this model also generates LayerNorm shifts, which a PEFT LoRA adapter "
                         "cannot hold; export a model built without norm_modules.")
    with torch.no_grad():
        lora = model.generate(cond)["lora"]
    modules = [name.rpartition(".")[0] for name in lora]
    config = peft.LoraConfig(r=model.config.rank, lora_alpha=model.config.rank, lora_dropout=0.0, bias="none",
                             target_modules=modules)
    wrapped = peft.get_peft_model(copy.deepcopy(model.target), config)
    state = {}
    for name, (a, b) in lora.items():
        module = name.rpartition(".")[0]
        state[f"base_model.model.{module}.lora_A.weight"] = a.detach().clone()  # (r, I)
        state[f"base_model.model.{module}.lora_B.weight"] = b.detach().clone()  # (O, r)
    result = peft.set_peft_model_state_dict(wrapped, state)
    missing = [k for k in result.missing_keys if "lora_" in k]
    if result.unexpected_keys or missing:
        raise RuntimeError(f"export_peft: PEFT did not take the adapter: unexpected {result.unexpected_keys}, "
                           f"missing {missing}.")
    path = Path(path)
    wrapped.save_pretrained(str(path))
    return path
