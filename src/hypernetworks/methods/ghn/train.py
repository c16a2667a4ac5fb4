"""Meta-batch training of a GHN on sampled architectures (GHN-2, Knyazev et al., NeurIPS 2021, Sec. 4).

Each step samples ``meta_batch`` architectures, predicts all their parameters in one GHN forward pass,
runs each network on the same image batch with the predicted parameters (``functional_call``) and
minimises the mean cross-entropy. Under ``torchrun`` the GHN is wrapped in DDP and the meta-batch is
split across ranks (each rank predicts and runs its own architectures; gradients are averaged).

Run: ``torchrun --nproc_per_node 2 -m hypernetworks.methods.ghn.train --steps 400 --out ghn.pt`` (or
``python -m hypernetworks.methods.ghn.train ...`` for one process); an existing ``--out`` is resumed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ...functional import functional_call
from .._config import DictConfig
from .config import GHNConfig
from .graph import build_graph
from .model import GHN
from .sampler import Net, sample_genotype

__all__ = ["TrainConfig", "fit", "load_checkpoint", "save_checkpoint", "train_images"]


@dataclass
class TrainConfig(DictConfig):
    """Meta-training of a GHN.

    Attributes:
        steps: optimisation steps.
        meta_batch: architectures per step (over all ranks).
        batch_size: images per step (every architecture of the step sees the same images).
        lr: Adam learning rate (cosine-decayed to 0).
        archs: size of the fixed pool of training architectures.
        side: images are average-pooled to side x side (28 keeps Fashion-MNIST as it is).
        images: how many training images (the first ones; the reproduction keeps the last 5,000 of
            Fashion-MNIST's 60,000 for validation).
        norms: comma-separated normalisations of the sampled networks (``bn``, ``gn``, ``none``).
        seed: seed of the architecture pool, GHN init and data order.
        grad_clip: gradient-norm clip.
    """

    steps: int = 300
    meta_batch: int = 8
    batch_size: int = 32
    lr: float = 2e-3
    archs: int = 500
    side: int = 7
    images: int = 60000
    norms: str = "bn"
    seed: int = 0
    grad_clip: float = 5.0

    def __post_init__(self):
        for name in ("steps", "meta_batch", "batch_size", "archs", "side", "images"):
            if getattr(self, name) < 1:
                raise ValueError(f"TrainConfig: {name} must be >= 1, got {getattr(self, name)}.")
        if 28 % self.side:
            raise ValueError(f"TrainConfig: side must divide 28, got {self.side}.")
        from .sampler import NORMS

        if not set(self.norms.split(",")) <= set(NORMS):
            raise ValueError(f"TrainConfig: norms must be a comma-separated subset of {NORMS}, got {self.norms!r}.")


def train_images(side: int, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images (N, 1, side, side), standardised, and labels (N,)."""
    from ...data import load_fashion_mnist

    x, y = load_fashion_mnist(split)
    x = F.avg_pool2d(x, 28 // side) if side != 28 else x
    return (x - 0.2860) / 0.3530, y


class ArchPool:
    """A fixed list of sampled genotypes, with their modules and graphs built on first use."""

    def __init__(self, genotypes: list[dict], side: int):
        self.genotypes, self.side = genotypes, side
        self._built: dict[int, tuple] = {}

    @classmethod
    def sample(cls, n: int, seed: int, side: int, max_params: int = 100_000, **space) -> ArchPool:
        """``n`` genotypes drawn with ``sample_genotype(**space)``, redrawn while above ``max_params``."""
        rng, out = random.Random(seed), []
        while len(out) < n:
            g = sample_genotype(rng, **space)
            if sum(p.numel() for p in Net(g).parameters()) <= max_params:
                out.append(g)
        return cls(out, side)

    def __len__(self) -> int:
        return len(self.genotypes)

    def get(self, i: int):
        """(module, graph) of architecture ``i``."""
        if i not in self._built:
            net = Net(self.genotypes[i])
            self._built[i] = (net, build_graph(net, torch.zeros(1, 1, self.side, self.side)))
        return self._built[i]


def save_checkpoint(path: str | Path, ghn: GHN, opt: torch.optim.Optimizer | None = None, step: int = 0,
                    train_config: TrainConfig | None = None,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None) -> None:
    """Save the GHN (config + weights), and the optimiser, scheduler and step when given (for resuming)."""
    state = {"config": ghn.config.to_dict(), "state_dict": ghn.state_dict(), "step": step,
             "train_config": None if train_config is None else train_config.to_dict()}
    if opt is not None:
        state["optimizer"] = opt.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    torch.save(state, path)


def load_checkpoint(path: str | Path) -> tuple[GHN, dict[str, Any]]:
    """The GHN saved at ``path`` and the raw checkpoint dict (optimizer, step)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    ghn = GHN(GHNConfig.from_dict(state["config"]))
    ghn.load_state_dict(state["state_dict"])
    return ghn, state


def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def meta_loss(ghn: nn.Module, pool: ArchPool, arch_ids: list[int], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of the architectures ``arch_ids`` run with GHN-predicted parameters on (x, y);
    ``ghn`` is a ``GHN`` or its ``DistributedDataParallel`` wrapper."""
    built = [pool.get(i) for i in arch_ids]
    predicted = ghn([g for _, g in built])
    losses = []
    for (net, _), params in zip(built, predicted, strict=True):
        net.train()
        losses.append(F.cross_entropy(functional_call(net, params, (x,), strict=False), y))
    return torch.stack(losses).mean()


def fit(ghn: GHN, pool: ArchPool, data: tuple[torch.Tensor, torch.Tensor], config: TrainConfig, *,
        checkpoint: str | Path | None = None, stop: int | None = None,
        log: Callable[[str], None] | None = None) -> list[float]:
    """Train ``ghn`` in place on architectures of ``pool`` (split across ranks under torchrun).

    Args:
        ghn: the GHN (wrapped in DDP here when a process group is initialised).
        pool: training architectures.
        data: images (N, 1, S, S) and labels (N,).
        config: optimisation settings.
        checkpoint: saved to (rank 0) at the end; when it exists, training resumes from it.
        stop: end after this step (of ``config.steps``) and save the checkpoint, to resume later.
        log: called with a one-line progress string every 25 steps (rank 0).

    Returns:
        The loss of each step run (this rank's share of the meta-batch).
    """
    rank, world = _rank_world()
    if config.meta_batch % world:
        raise ValueError(f"fit: meta_batch {config.meta_batch} must divide by the world size {world}.")
    model = torch.nn.parallel.DistributedDataParallel(ghn) if world > 1 else ghn
    opt = torch.optim.Adam(ghn.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, config.steps)
    start = 0
    if checkpoint is not None and Path(checkpoint).exists():
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
        ghn.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start = state["step"]
    x, y = data
    losses, t0 = [], time.time()
    share = config.meta_batch // world
    end = config.steps if stop is None else min(stop, config.steps)
    for step in range(start, end):
        gen = torch.Generator().manual_seed(config.seed * 100003 + step)  # same draw on every rank
        archs = torch.randint(0, len(pool), (config.meta_batch,), generator=gen).tolist()
        idx = torch.randint(0, len(x), (config.batch_size,), generator=gen)
        loss = meta_loss(model, pool, archs[rank * share:(rank + 1) * share], x[idx], y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ghn.parameters(), config.grad_clip)
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log is not None and rank == 0 and (step + 1) % 25 == 0:
            recent = losses[-25:]
            log(f"ghn step {step + 1}/{config.steps} loss {sum(recent) / len(recent):.3f} "
                f"({time.time() - t0:.0f} s)")
    if checkpoint is not None and rank == 0:
        save_checkpoint(checkpoint, ghn, opt, max(end, start), config, sched)
    return losses


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Train a GHN on sampled architectures (Fashion-MNIST).")
    for name, default in TrainConfig().to_dict().items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default)
    parser.add_argument("--hidden", type=int, default=GHNConfig().hidden)
    parser.add_argument("--out", required=True, help="checkpoint path (resumed from when it exists)")
    args = vars(parser.parse_args(argv))
    torch.set_num_threads(1)
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
    out, hidden = args.pop("out"), args.pop("hidden")
    config = TrainConfig(**args)
    torch.manual_seed(config.seed)
    ghn = GHN(GHNConfig(hidden=hidden))
    pool = ArchPool.sample(config.archs, config.seed, config.side, norms=tuple(config.norms.split(",")))
    x, y = train_images(config.side)
    losses = fit(ghn, pool, (x[:config.images], y[:config.images]), config, checkpoint=out, log=print)
    rank, world = _rank_world()
    if rank == 0:
        cli = " ".join(sys.argv[1:] if argv is None else argv)
        meta = {"command": f"torchrun --nproc_per_node {world} -m hypernetworks.methods.ghn.train {cli}",
                "world_size": world, "train_config": config.to_dict(), "final_loss": losses[-1] if losses else None}
        Path(out).with_suffix(".json").write_text(json.dumps(meta, indent=1))
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
