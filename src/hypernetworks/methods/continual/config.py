"""Configuration of a task-conditioned continual-learning hypernetwork."""

from __future__ import annotations

from dataclasses import dataclass

from .._config import DictConfig

HEADS = ("full", "chunked")


@dataclass
class HyperCLConfig(DictConfig):
    """von Oswald et al. (ICLR 2020): one hypernetwork, one learned embedding per task."""

    num_tasks: int = 5  # how many task embeddings to allocate
    include: str | list[str] | None = None  # the target's tensors to generate, by ParamSpec rules (None: all)
    embedding_dim: int = 32  # size of each task embedding e_t
    head: str = "full"  # "full" or "chunked"
    hidden: tuple[int, ...] = (50, 50)  # hidden widths of the hypernetwork
    chunk_size: int = 2000  # values per chunk (chunked head)
    chunk_dim: int = 16  # size of the learned chunk embeddings (chunked head)
    beta: float = 0.01  # strength of the output regulariser (0: plain fine-tuning of the hypernetwork)
    lookahead: bool = False  # regularise h(e_t, Θ + ΔΘ) with ΔΘ the task loss's Adam step (detached)
    lr: float = 1e-3  # Adam learning rate of the hypernetwork and the current task embedding
    init: str = "hyperfan_in"  # initialisation scheme of the head
    seed: int = 0  # seed of the initialisation's calibration draw

    def __post_init__(self):
        self.hidden = tuple(self.hidden)
        self.include = self.include if self.include is None or isinstance(self.include, str) else list(self.include)
        if self.head not in HEADS:
            raise ValueError(f"HyperCLConfig: head must be one of {HEADS}, got {self.head!r}.")
        if self.num_tasks < 1 or self.beta < 0 or self.lr <= 0:
            raise ValueError(f"HyperCLConfig: need num_tasks >= 1, beta >= 0, lr > 0; got "
                             f"{self.num_tasks}, {self.beta}, {self.lr}.")
