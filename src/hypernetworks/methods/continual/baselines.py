"""Weight-regularisation baselines for continual learning, on the same target and harness.

* ``finetune``: no protection (with a multi-head model: multi-head fine-tuning).
* ``ewc``: Kirkpatrick et al., "Overcoming catastrophic forgetting in neural networks", PNAS 2017:
  λ/2 · Σ_t Σ_i F_t,i (θ_i − θ*_t,i)², with F_t the diagonal empirical Fisher after task t.
* ``online_ewc``: Schwarz et al., "Progress & Compress", ICML 2018: one running Fisher
  F ← γ·F + F_t anchored at the latest θ*.
* ``si``: Zenke, Poole, Ganguli, "Continual Learning Through Synaptic Intelligence", ICML 2017:
  c · Σ_i Ω_i (θ_i − θ*_i)², Ω accumulated from the path integral of the loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._fit import Bar, batches_for, progress_bar

METHODS = ("finetune", "ewc", "online_ewc", "si")


class MultiHead(nn.Module):
    """A shared body and one output layer per task: ``(x, task_id) -> (N, out_features)``."""

    def __init__(self, body: nn.Module, in_features: int, out_features: int, num_heads: int) -> None:
        super().__init__()
        self.body = body
        self.heads = nn.ModuleList(nn.Linear(in_features, out_features) for _ in range(num_heads))

    def forward(self, x: torch.Tensor, task_id: int | torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if isinstance(task_id, int) or task_id.dim() == 0:
            return self.heads[int(task_id)](h)
        outs = torch.stack([head(h) for head in self.heads])  # (H, N, C)
        return outs[task_id, torch.arange(len(h), device=h.device)]


class RegularizedCL(nn.Module):
    """A continual learner that trains ``model`` directly, with an optional weight penalty.

    Args:
        model: called as ``model(x)``, or ``model(x, task_id)`` when ``multi_head``.
        method: one of ``finetune``, ``ewc``, ``online_ewc``, ``si``.
        strength: λ (EWC, online EWC) or c (SI); ignored by ``finetune``.
        lr: Adam learning rate.
        gamma: decay of online EWC's running Fisher.
        xi: SI's damping ξ.
        fisher_samples: examples used to estimate the Fisher.
    """

    def __init__(self, model: nn.Module, method: str = "finetune", strength: float = 0.0, *, multi_head: bool = False,
                 lr: float = 1e-3, gamma: float = 1.0, xi: float = 0.1, fisher_samples: int = 512) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"RegularizedCL: method must be one of {METHODS}, got {method!r}.")
        self.model, self.method, self.strength, self.multi_head = model, method, strength, multi_head
        self.lr, self.gamma, self.xi, self.fisher_samples = lr, gamma, xi, fisher_samples
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        # The penalty Σ_t w_t (θ − a_t)² is kept as Σ w_t θ² − 2 Σ w_t a_t θ + Σ w_t a_t²: O(1) per step.
        self.importance: dict[str, torch.Tensor | None] = {n: None for n in names}  # Σ w_t
        self.weighted_anchor: dict[str, torch.Tensor | None] = {n: None for n in names}  # Σ w_t a_t
        self.constant: dict[str, torch.Tensor | None] = {n: None for n in names}  # Σ w_t a_t²

    def forward(self, x: torch.Tensor, task_id: int | torch.Tensor | None = None) -> torch.Tensor:
        """Logits (N, C) of ``model``; a multi-head model needs ``task_id`` (an int, or (N,) ids)."""
        if not self.multi_head:
            return self.model(x)
        if task_id is None:
            raise ValueError("RegularizedCL: a multi-head model needs task_id.")
        return self.model(x, task_id)

    def penalty(self) -> torch.Tensor:
        total = torch.zeros(())
        for n, p in self.model.named_parameters():
            w, anchor, const = self.importance.get(n), self.weighted_anchor.get(n), self.constant.get(n)
            if w is not None and anchor is not None and const is not None:  # set together, by _consolidate
                total = total + (w * p.square() - 2 * anchor * p + const).sum()
        scale = 0.5 * self.strength if self.method in ("ewc", "online_ewc") else self.strength
        return scale * total

    def fit(self, batches: Iterable[Any], task_id: int, *, epochs: int | None = None, steps: int | None = None,
            loss_fn: Callable[..., torch.Tensor] = F.cross_entropy, progress: bool | Bar | None = None) -> list[float]:
        """Learn task ``task_id`` from ``(x, y)`` batches under the weight penalty; returns the task loss per
        step (exactly one of ``epochs`` / ``steps``; ``progress`` as in ``HyperCL.fit``)."""
        params = {n: p for n, p in self.model.named_parameters() if p.requires_grad}
        opt = torch.optim.Adam(params.values(), lr=self.lr, fused=True)
        start = {n: p.detach().clone() for n, p in params.items()}
        path = {n: torch.zeros_like(p) for n, p in params.items()}  # SI's ω
        losses: list[float] = []
        seen: list[tuple[torch.Tensor, torch.Tensor]] = []
        stream, total_steps = batches_for(batches, epochs, steps)
        with progress_bar(progress, total_steps, f"task {task_id}") as bar:
            for x, y in stream:
                opt.zero_grad(set_to_none=True)
                loss = loss_fn(self(x, task_id), y)
                total = loss + self.penalty() if self.method != "finetune" else loss
                total.backward()
                before = {n: p.detach().clone() for n, p in params.items()} if self.method == "si" else None
                opt.step()
                if before is not None:
                    for n, p in params.items():
                        if p.grad is not None:
                            path[n] -= p.grad * (p.detach() - before[n])
                if len(seen) * len(x) < self.fisher_samples:
                    seen.append((x, y))
                losses.append(loss.item())
                bar.update(1)
        if self.method in ("ewc", "online_ewc"):
            self._consolidate(self._fisher(seen, task_id, loss_fn), params)
        elif self.method == "si":
            omega = {n: path[n] / ((p.detach() - start[n]).square() + self.xi) for n, p in params.items()}
            self._consolidate(omega, params, decay=1.0, anchor_latest=True)
        return losses

    def _consolidate(self, weights: Mapping[str, torch.Tensor], params: Mapping[str, torch.Tensor],
                     decay: float | None = None, anchor_latest: bool | None = None) -> None:
        """Add this task's importance ``weights`` anchored at the current θ."""
        online = self.method in ("online_ewc", "si") if anchor_latest is None else anchor_latest
        decay = self.gamma if decay is None else decay
        for n, p in params.items():
            w, a = weights[n].detach(), p.detach().clone()
            old, anchor, const = self.importance[n], self.weighted_anchor[n], self.constant[n]  # None together
            if old is None or anchor is None or const is None or online:  # online: one importance, at the latest θ*
                imp = w if old is None else decay * old + w
                self.importance[n], self.weighted_anchor[n], self.constant[n] = imp, imp * a, imp * a.square()
            else:
                self.importance[n] = old + w
                self.weighted_anchor[n] = anchor + w * a
                self.constant[n] = const + w * a.square()

    def _fisher(self, seen: list[tuple[torch.Tensor, torch.Tensor]], task_id: int,
                loss_fn: Callable[..., torch.Tensor]) -> dict[str, torch.Tensor]:
        """Diagonal empirical Fisher: mean of squared per-example gradients of the task loss."""
        x = torch.cat([b[0] for b in seen])[: self.fisher_samples]
        y = torch.cat([b[1] for b in seen])[: self.fisher_samples]
        params = {n: p.detach() for n, p in self.model.named_parameters() if p.requires_grad}

        def example_loss(p, xi, yi):
            args = (xi.unsqueeze(0), task_id) if self.multi_head else (xi.unsqueeze(0),)
            return loss_fn(torch.func.functional_call(self.model, p, args), yi.unsqueeze(0))

        grads = torch.func.vmap(torch.func.grad(example_loss), in_dims=(None, 0, 0))(params, x, y)
        return {n: g.square().mean(0) for n, g in grads.items()}
