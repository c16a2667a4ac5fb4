"""Continual learning with a task-conditioned hypernetwork.

von Oswald, Henning, Grewe, Sacramento, "Continual learning with hypernetworks", ICLR 2020
(reference code: chrhenning/hypercl). One hypernetwork h(e_t, Θ) generates the whole target for
task t from a learned embedding e_t. While learning task T, an output regulariser keeps the
weights it generates for earlier tasks where they were:

    β/(T-1) · Σ_{t<T} ‖h(e_t, Θ*) − h(e_t, Θ + ΔΘ)‖²

with Θ* the hypernetwork before task T and ΔΘ an optional look-ahead (the Adam step the task loss
alone would take, detached). Earlier task embeddings stay fixed. All earlier tasks are
regularised in one batched pass. Without a task id, the task is inferred as the one whose
generated network is most confident (lowest predictive entropy).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ...encoders import Embedding
from ...heads import Chunked, Full
from ...hypernet import HyperNetwork
from ...spec import ParamSpec
from .._fit import Bar, batches_for, progress_bar
from .._pretrained import Pretrained
from .config import HyperCLConfig


class HyperCL(Pretrained[HyperCLConfig]):
    """A continual learner whose target network is generated per task.

    Args:
        target: the network to generate (e.g. an MLP classifier); the tensors ``config.include`` selects
            (default: all its parameters) are generated.
        config: a ``HyperCLConfig``; keyword ``options`` replace its fields.

    Example:
        >>> learner = HyperCL(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)), num_tasks=3)
        >>> task_0 = [(torch.randn(4, 8), torch.randint(0, 2, (4,))) for _ in range(3)]  # (x, y) batches
        >>> losses = learner.fit(task_0, task_id=0, epochs=1)  # one loss per step
        >>> learner(torch.randn(5, 8), task_id=0).shape  # logits; task_id=None infers the task
        torch.Size([5, 2])
        >>> learner.materialize(0)  # task 0's network, a plain module
        Sequential(
          (0): Linear(in_features=8, out_features=16, bias=True)
          (1): ReLU()
          (2): Linear(in_features=16, out_features=2, bias=True)
        )
    """

    CONFIG = HyperCLConfig
    targets: torch.Tensor  # buffers: (num_tasks, P) weights generated before the current task, (num_tasks,) bool
    learned: torch.Tensor

    def __init__(self, target: nn.Module, config: HyperCLConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = cfg = HyperCLConfig.build(config, **options)
        head = (Full(hidden=cfg.hidden) if cfg.head == "full"
                else Chunked(cfg.chunk_size, cfg.chunk_dim, hidden=cfg.hidden))
        spec = None if cfg.include is None else ParamSpec.from_module(target, include=cfg.include)
        self.hnet = HyperNetwork(target, spec, encoder=Embedding(cfg.num_tasks, cfg.embedding_dim), head=head,
                                 mode="absolute", init=cfg.init, seed=cfg.seed)
        self.register_buffer("targets", torch.zeros(cfg.num_tasks, self.hnet.num_generated))  # h(e_t, Θ*)
        self.register_buffer("learned", torch.zeros(cfg.num_tasks, dtype=torch.bool))

    @property
    def learned_tasks(self) -> list[int]:
        return torch.nonzero(self.learned).flatten().tolist()

    def _check_task(self, task_id: int) -> None:
        if not 0 <= task_id < self.config.num_tasks:
            raise ValueError(f"HyperCL: task_id must lie in [0, {self.config.num_tasks}), got {task_id}.")

    def generate(self, task_id: int | torch.Tensor) -> dict[str, torch.Tensor]:
        """The target's generated tensors for ``task_id``: ``{name: (*shape)}``, or ``(T, *shape)`` for ids (T,)."""
        return self.hnet.generate(torch.as_tensor(task_id, device=self.targets.device))

    def materialize(self, task_id: int) -> nn.Module:
        """Task ``task_id``'s network: a plain copy of the target with its generated weights."""
        return self.hnet.materialize(torch.as_tensor(task_id, device=self.targets.device))

    def _flat(self, ids: torch.Tensor, head_params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """(T, P) flat weights generated for task ``ids`` (T,), with the head's parameters replaced if given."""
        z = self.hnet.encoder(ids)
        head = self.hnet.head
        out = head(z) if head_params is None else torch.func.functional_call(head, head_params, (z,))
        return self.hnet.spec.flatten(out)

    def regularizer(self, task_id: int, delta: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Mean over earlier learned tasks of ‖h(e_t, Θ*) − h(e_t, Θ + ΔΘ)‖² (one batched pass).

        ``delta`` maps names of ``self.hnet.head`` parameters to a look-ahead step ΔΘ.
        """
        prev = [t for t in self.learned_tasks if t != task_id]
        if not prev:
            return torch.zeros(())
        ids = torch.tensor(prev, device=self.targets.device)
        params: dict[str, torch.Tensor] | None = None
        if delta is not None:
            params = {n: p + delta[n] if n in delta else p for n, p in self.hnet.head.named_parameters()}
        return (self._flat(ids, params) - self.targets[ids]).square().sum(-1).mean()

    def fit(self, batches: Iterable[Any], task_id: int, *, epochs: int | None = None, steps: int | None = None,
            loss_fn: Callable[..., torch.Tensor] = F.cross_entropy, progress: bool | Bar | None = None) -> list[float]:
        """Learn task ``task_id`` from ``(x, y)`` batches; returns the task loss per step.

        Exactly one of ``epochs`` / ``steps``. Earlier tasks are protected by the output regulariser.
        ``progress``: ``True`` for a progress bar, or a bar to update (``update(n)``).
        """
        self._check_task(task_id)
        cfg = self.config
        with torch.no_grad():  # Θ*: what the hypernetwork generates for every task before this one
            self.targets.copy_(self._flat(torch.arange(cfg.num_tasks, device=self.targets.device)))
        table = cast(Embedding, self.hnet.encoder).table.weight
        frozen_rows = table.detach().clone()
        head_params = dict(self.hnet.head.named_parameters())
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=cfg.lr, fused=True)
        cond = torch.tensor(task_id, device=self.targets.device)
        losses: list[float] = []
        stream, total = batches_for(batches, epochs, steps)
        with progress_bar(progress, total, f"task {task_id}") as bar:
            for x, y in stream:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(self.hnet(x, cond=cond), y)
                loss.backward()
                if cfg.beta > 0 and any(t != task_id for t in self.learned_tasks):
                    delta = _adam_lookahead(opt, head_params) if cfg.lookahead else None
                    (cfg.beta * self.regularizer(task_id, delta)).backward()
                opt.step()
                with torch.no_grad():  # only the current task's embedding moves
                    keep = torch.ones(table.shape[0], dtype=torch.bool, device=table.device)
                    keep[task_id] = False
                    table[keep] = frozen_rows[keep]
                losses.append(loss.item())
                bar.update(1)
        self.learned[task_id] = True
        return losses

    def forward(self, x: torch.Tensor, task_id: int | torch.Tensor | None = None) -> torch.Tensor:
        """Target outputs (N, C) with the weights of ``task_id`` (an int, or (N,) ids per example); with
        ``task_id=None`` each example uses its inferred task (``infer_task``)."""
        if task_id is None:
            task_id = self.infer_task(x)
        return self.hnet(x, cond=torch.as_tensor(task_id, device=self.targets.device))

    @torch.no_grad()
    def infer_task(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) id of the learned task whose generated network has the lowest predictive entropy."""
        tasks = self.learned_tasks
        if not tasks:
            raise RuntimeError("HyperCL.infer_task: no task has been learned yet.")
        ids = torch.tensor(tasks, device=self.targets.device)
        logits = self.hnet.forward_sets(x, conds=ids)  # (T, N, C)
        probs = logits.softmax(-1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1)  # (T, N)
        return ids[entropy.argmin(0)]


def _adam_lookahead(opt: torch.optim.Adam, params: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The step Adam would take from the current gradients, without touching its state (detached)."""
    group = opt.param_groups[0]
    (b1, b2), eps, lr = group["betas"], group["eps"], group["lr"]
    delta: dict[str, torch.Tensor] = {}
    for name, p in params.items():
        if p.grad is None:
            continue
        state = opt.state.get(p, {})
        step = float(state.get("step", 0)) + 1
        m = b1 * state["exp_avg"] + (1 - b1) * p.grad if state else (1 - b1) * p.grad
        v = b2 * state["exp_avg_sq"] + (1 - b2) * p.grad.square() if state else (1 - b2) * p.grad.square()
        m_hat, v_hat = m / (1 - b1 ** step), v / (1 - b2 ** step)
        delta[name] = (-lr * m_hat / (v_hat.sqrt() + eps)).detach()
    return delta
