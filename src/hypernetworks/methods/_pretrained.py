"""``save_pretrained`` / ``from_pretrained`` for method objects: an ``nn.Module`` with a ``config`` dataclass.

The folder holds ``config.json`` (the class, its config, versions, caller's metadata) and
``model.safetensors`` (the state_dict, each tensor once, without the frozen modules the caller passes in
again), ``huggingface_hub``'s layout, so ``push_to_hub`` uploads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Generic, Self, TypeVar

import torch
from torch import nn

from .._saving import CONFIG_NAME, WEIGHTS_NAME, HubMixin, check_saved, version
from ._config import DictConfig

C = TypeVar("C", bound=DictConfig)


class Pretrained(HubMixin, nn.Module, Generic[C]):
    """Base of method modules built as ``cls(target, config)`` (``cls(config)`` when ``TAKES_TARGET`` is False),
    ``config`` a ``CONFIG`` (the type parameter ``C``).

    ``NOT_SAVED``: state_dict prefixes of a frozen module the caller owns (e.g. a pretrained base model),
    which ``from_pretrained`` takes from the ``target`` it is given instead of the file.
    """

    CONFIG: type[C]
    config: C
    TAKES_TARGET = True
    NOT_SAVED: tuple[str, ...] = ()

    def _saved_state(self) -> dict[str, torch.Tensor]:
        """The state_dict without ``NOT_SAVED`` entries; a tensor tied to an earlier one is left out (stored once)."""
        out: dict[str, torch.Tensor] = {}
        seen: set[tuple[int, int, tuple[int, ...]]] = set()
        for name, t in self.state_dict().items():
            key = (t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape))
            if name.startswith(self.NOT_SAVED) or key in seen:
                continue
            seen.add(key)
            out[name] = t.detach().contiguous()
        return out

    def save_pretrained(self, save_directory: str | Path, **metadata: Any) -> None:
        """Write ``config.json`` (``metadata`` included, e.g. how it was trained) and ``model.safetensors``."""
        from safetensors.torch import save_file

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        cls = type(self)
        record = {"format": f"{cls.__module__}.{cls.__qualname__}/1", "config": self.config.to_dict(), **metadata,
                  "versions": {"hypernetworks": version(), "torch": torch.__version__}}
        (out / CONFIG_NAME).write_text(json.dumps(record, indent=1) + "\n")
        save_file(self._saved_state(), str(out / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, pretrained: str | Path, target: nn.Module | None = None) -> Self:
        """Rebuild the saved object (around ``target``, a fresh module of the saved kind, where the method
        takes one) and load its tensors bit for bit; it is returned in eval mode, as ``transformers`` does.

        Raises:
            TypeError: ``target`` given to a method that builds its own model, or missing.
            ValueError: the folder holds another class, or a tensor does not fit (named, with both shapes).
        """
        from safetensors.torch import load_file

        folder = Path(pretrained)
        record = json.loads((folder / CONFIG_NAME).read_text())
        fmt = f"{cls.__module__}.{cls.__qualname__}/1"
        if record.get("format") != fmt:
            raise ValueError(f"{cls.__name__}.from_pretrained: {folder} holds {record.get('format')!r}, not {fmt!r}.")
        if (target is not None) != cls.TAKES_TARGET:
            need = "needs the target module it was built for" if cls.TAKES_TARGET else "builds its own model"
            raise TypeError(f"{cls.__name__}.from_pretrained: {need}.")
        config = cls.CONFIG.from_dict(record["config"])
        obj = cls(target, config) if cls.TAKES_TARGET else cls(config)
        check_saved(obj._saved_state(), folder / WEIGHTS_NAME, f"{cls.__name__}.from_pretrained",
                    "build the target the saved object was built for.")
        obj.load_state_dict(load_file(str(folder / WEIGHTS_NAME)), strict=False)  # checked above: ties and
        return obj.eval()  # NOT_SAVED entries are the only ones absent
