"""Shared pieces of ``save_pretrained`` / ``from_pretrained``: safetensors files checked against a module,
the library's version, and ``push_to_hub`` (``huggingface_hub``'s layout: ``config.json`` + ``model.safetensors``)."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


def version() -> str:
    from . import __version__

    return __version__


def shares_storage(state: dict[str, torch.Tensor], name: str) -> bool:
    """Whether ``state[name]`` shares its storage with another entry (a tie, which is stored once)."""
    ptr = state[name].untyped_storage().data_ptr()
    return any(k != name and t.untyped_storage().data_ptr() == ptr for k, t in state.items())


def check_saved(own: dict[str, torch.Tensor], path: Path, who: str, hint: str) -> None:
    """Refuse a safetensors file whose tensors do not match ``own`` (name -> tensor), naming the first that differs.

    A tensor of ``own`` absent from the file passes when it shares storage with another (a tie, stored once).

    Raises:
        ValueError: ``"{who}: 'name' is (shape) in {path}, (shape) here; {hint}"``.
    """
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as saved:
        shapes = {name: tuple(saved.get_slice(name).get_shape()) for name in saved.keys()}
    for name in [*own, *(n for n in shapes if n not in own)]:  # in module order
        want, got = shapes.get(name, "absent"), tuple(own[name].shape) if name in own else "absent"
        if want != got and not (name in own and name not in shapes and shares_storage(own, name)):
            raise ValueError(f"{who}: '{name}' is {want} in {path.parent}, {got} here; {hint}")


class HubMixin:
    """``push_to_hub`` for classes with ``save_pretrained(folder)``."""

    save_pretrained: Callable[[str | Path], None]

    def push_to_hub(self, repo_id: str, **kwargs) -> str:
        """Save to a temporary folder and upload it with ``huggingface_hub`` (needs a network and the
        package); ``kwargs`` go to ``HfApi.upload_folder``. Returns the commit URL."""
        from huggingface_hub import HfApi

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            api = HfApi()
            api.create_repo(repo_id, exist_ok=True)
            return str(api.upload_folder(repo_id=repo_id, folder_path=tmp, **kwargs))
