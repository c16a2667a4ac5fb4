"""MALMEN: Tan, Zhang, Fu, "Massive Editing for Large Language Models via Meta Learning", ICLR 2024
(https://arxiv.org/abs/2311.04661; reference code: https://github.com/ChenmienTan/malmen).

For every edited ``Linear`` layer, edit i contributes its key u_i (the layer input) and value
gradient δ_i = ∂ℓ_i/∂v_i. A MEND-style hypernetwork (Mitchell et al., ICLR 2022) maps
(u_i, δ_i, layer id) to a pseudo key ũ_i and pseudo gradient δ̃_i; the value shift the edit asks
for is d_i = -η (u_i·ũ_i) δ̃_i, the change of the layer's output at u_i that the single-edit shift
ũ_i d̃_iᵀ (d̃_i = -η δ̃_i) would make. The shifts are aggregated into one weight change S (I, O):

* ``least_squares`` (MALMEN): S* = argmin ‖US - D‖² + λ‖S‖² = (UᵀU + λI)⁻¹UᵀD, by ``torch.linalg.solve``
  (with fewer edits than key features N < I, the equal and cheaper Uᵀ(UUᵀ + λI)⁻¹D);
* ``sum`` (MEND): S = Σ_i ũ_i d̃_iᵀ, which lets edits cancel or overwhelm each other as N grows.

Every pass runs over chunks of edits: the normal equation only needs UᵀU (I, I) and UᵀD (I, O),
and the meta-gradient is taken in MALMEN's two decoupled passes (the base model's backward gives
∂L/∂S; the solve's adjoint gives ∂L/∂D and ∂L/∂λ; the hypernetwork is then re-run chunk by chunk),
so memory does not grow with the number of simultaneous edits N.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from ...functional import functional_call
from .._fit import Bar, batches_for, progress_bar
from .._pretrained import Pretrained
from .config import MALMENConfig
from .net import ShiftNet

Cache = dict[str, tuple[torch.Tensor, torch.Tensor]]  # layer -> (keys U (N, I), value gradients Δ (N, O))
Episode = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # x (n, ...), y (n,), x_gen (n, ...), x_loc


def _per_example_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels, reduction="none")


def _recorder(seen: dict, name: str):
    """A forward hook that stores (layer input, layer output) in ``seen[name]``."""

    def hook(module, inputs, output):
        if not output.requires_grad:  # a frozen layer on a frozen input: make the value a leaf
            output = output.detach().requires_grad_()
        seen[name] = (inputs[0].detach(), output)
        return output

    return hook


class MALMEN(Pretrained[MALMENConfig]):
    """A meta-trainable editor for the ``nn.Linear`` layers ``config.layers`` of ``model``.

    Layers of one shape share a ``ShiftNet`` and are told apart by their layer id. The editor keeps
    no reference to ``model``: it reads the layers' shapes here, and every call takes the model.

    Args:
        model: the model to edit.
        config: a ``MALMENConfig``; keyword ``options`` replace its fields.

    Example:
        >>> model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).eval()
        >>> editor = MALMEN(model, layers=["0", "2"], aggregation="least_squares")
        >>> x_edit, y_new = torch.randn(6, 8), torch.randint(0, 4, (6,))
        >>> cache = editor.cache(model, x_edit, y_new)  # {layer: (keys U, value gradients Δ)}
        >>> editor.observe(cache)  # statistics for the normaliser and η
        >>> shifts = editor.shifts(cache)  # {layer: S (I, O)}
        >>> shifts["2"].shape
        torch.Size([16, 4])
        >>> editor.edited(model, shifts, x_edit).shape  # the post-edit model's outputs, model unchanged
        torch.Size([6, 4])
        >>> episodes = [(x_edit, y_new, x_edit + 0.1 * torch.randn(6, 8), torch.randn(10, 8))]  # edit, paraphrase, keep
        >>> losses = editor.fit(model, episodes, steps=2)  # meta-training: one meta-loss per step
    """

    CONFIG = MALMENConfig

    def __init__(self, model: nn.Module, config: MALMENConfig | None = None, **options):
        super().__init__()
        self.config = MALMENConfig.build(config, **options)
        if not self.config.layers:
            raise ValueError("MALMEN: config.layers names no layer to edit; give the nn.Linear submodules' names.")
        self.layers: dict[str, tuple[int, int]] = {}  # {name: (in_features I, out_features O)}
        for name in self.config.layers:
            module = model.get_submodule(name)
            if not isinstance(module, nn.Linear):
                raise TypeError(f"MALMEN: '{name}' must be an nn.Linear, got {type(module).__name__}.")
            self.layers[name] = (module.in_features, module.out_features)
        groups: dict[str, list[str]] = {}
        for name, (i, o) in self.layers.items():
            groups.setdefault(f"{i}x{o}", []).append(name)
        self.where = {n: (key, names.index(n)) for key, names in groups.items() for n in names}
        with torch.random.fork_rng():  # seeded init without touching the caller's global RNG
            torch.manual_seed(self.config.seed)
            self.nets = nn.ModuleDict({
                key: ShiftNet(*self.layers[names[0]], len(names), self.config.rank, self.config.blocks)
                for key, names in groups.items()})
        self.log_lr = nn.Parameter(torch.full((len(self.layers),), math.log(self.config.lr)))
        self.log_reg = nn.Parameter(torch.full((len(self.layers),), math.log(self.config.reg)))

    def _chunks(self, n: int):
        return (slice(s, s + self.config.chunk_size) for s in range(0, n, self.config.chunk_size))

    def cache(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
              loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = _per_example_ce) -> Cache:
        """Keys and value gradients of every edit, computed chunk by chunk on the base model.

        Args:
            model: the model to edit (in eval mode: edits must not interact through the batch).
            x: edit inputs (N, ...).
            y: edit targets (N, ...), e.g. the new labels.
            loss_fn: per-edit losses (N,) from ``(model(x), y)``; default cross-entropy.

        Returns:
            ``{layer: (U (N, I), Δ (N, O))}``, detached (a layer applied to (N, T, I) inputs gives
            N·T rows, one key per position, as for tokens in the paper).
        """
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"MALMEN.cache: expected as many targets as inputs (N >= 1), got {len(x)} and {len(y)}.")
        out: dict[str, tuple[list, list]] = {n: ([], []) for n in self.layers}
        for part in self._chunks(len(x)):
            seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
            handles = [model.get_submodule(n).register_forward_hook(_recorder(seen, n)) for n in self.layers]
            try:
                with torch.enable_grad():
                    loss = loss_fn(model(x[part]), y[part]).sum()  # a sum, so each δ_i is edit i's own gradient
                    grads = torch.autograd.grad(loss, [seen[n][1] for n in self.layers])
            finally:
                for h in handles:
                    h.remove()
            for n, g in zip(self.layers, grads, strict=True):
                out[n][0].append(seen[n][0].reshape(-1, self.layers[n][0]))
                out[n][1].append(g.reshape(-1, self.layers[n][1]))
        return {n: (torch.cat(us), torch.cat(ds)) for n, (us, ds) in out.items()}

    def _net(self, key: str) -> ShiftNet:
        """The hypernetwork shared by the layers of shape ``key`` (``"IxO"``)."""
        return cast(ShiftNet, self.nets[key])

    def observe(self, cache: Cache) -> None:
        """Add the cached edits to each hypernetwork's input statistics (used to normalise and set η)."""
        for name, (u, delta) in cache.items():
            self._net(self.where[name][0]).observe(u, delta)

    def pseudo(self, name: str, keys: torch.Tensor, value_grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Pseudo keys ũ (N, I) and scaled pseudo gradients d̃ = -η δ̃ (N, O) for one layer's edits."""
        key, layer = self.where[name]
        net = self._net(key)
        u_t, delta_t = net(keys, value_grads, layer)
        eta = self.log_lr[list(self.layers).index(name)].exp() / net.mean_key_sq_norm()
        return u_t, -eta * delta_t

    def _reg(self, name: str) -> torch.Tensor:
        return self.log_reg[list(self.layers).index(name)].exp()

    def _dual(self, name: str, keys: torch.Tensor) -> bool:
        """Fewer edits than key features: solve the N x N system (UUᵀ + λI) instead (push-through identity)."""
        return len(keys) < self.layers[name][0]

    def _system(self, name: str, keys: torch.Tensor) -> torch.Tensor:
        """UᵀU + λI (I, I), accumulated over chunks, or UUᵀ + λI (N, N) when :meth:`_dual`."""
        if self._dual(name, keys):
            gram = keys @ keys.T  # (N, N)
        else:
            gram = torch.zeros(keys.shape[1], keys.shape[1], dtype=keys.dtype)
            for part in self._chunks(len(keys)):
                gram += keys[part].T @ keys[part]  # (I, I)
        return gram + self._reg(name) * torch.eye(len(gram), dtype=keys.dtype)

    def _value_diffs(self, name: str, keys: torch.Tensor, value_grads: torch.Tensor) -> torch.Tensor:
        """The value shifts d_i = (u_i·ũ_i) d̃_i of all edits, (N, O), computed chunk by chunk."""
        out = []
        for part in self._chunks(len(keys)):
            u_t, d_t = self.pseudo(name, keys[part], value_grads[part])
            out.append((keys[part] * u_t).sum(-1, keepdim=True) * d_t)  # (n, O)
        return torch.cat(out)

    def _shift(self, name: str, keys: torch.Tensor, value_grads: torch.Tensor) -> torch.Tensor:
        if self.config.aggregation == "least_squares" and self._dual(name, keys):
            d = self._value_diffs(name, keys, value_grads)
            return keys.T @ torch.linalg.solve(self._system(name, keys), d)  # (I, O): Uᵀ(UUᵀ + λI)⁻¹D
        i, o = self.layers[name]
        acc = torch.zeros(i, o, dtype=keys.dtype)
        for part in self._chunks(len(keys)):
            u_t, d_t = self.pseudo(name, keys[part], value_grads[part])
            if self.config.aggregation == "sum":
                acc = acc + u_t.T @ d_t  # (I, O): Σ_i ũ_i d̃_iᵀ
            else:
                d = (keys[part] * u_t).sum(-1, keepdim=True) * d_t  # (n, O): value shifts d_i
                acc = acc + keys[part].T @ d  # (I, O): UᵀD
        if self.config.aggregation == "sum":
            return acc
        return torch.linalg.solve(self._system(name, keys), acc)  # (I, O): (UᵀU + λI)⁻¹UᵀD

    def shifts(self, cache: Cache, *, differentiable: bool = False) -> dict[str, torch.Tensor]:
        """The aggregated weight change S (I, O) of every edited layer (the layer's W becomes W + Sᵀ).

        Args:
            cache: from :meth:`cache`.
            differentiable: keep the autograd graph through the hypernetwork and the solve (memory
                grows with N); by default nothing is kept, and :meth:`meta_backward` gives the gradient.
        """
        with torch.set_grad_enabled(differentiable):
            return {n: self._shift(n, u, delta) for n, (u, delta) in cache.items()}

    def edited(self, model: nn.Module, shifts: dict[str, torch.Tensor], *args: Any, **kwargs: Any) -> Any:
        """``model(*args, **kwargs)`` with every edited weight W replaced by W + Sᵀ (model unchanged)."""
        deltas = {f"{n}.weight" if n else "weight": s.T for n, s in shifts.items()}
        return functional_call(model, deltas, args, kwargs, mode="residual", strict=False)

    def backward_from(self, cache: Cache, shifts: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> None:
        """Accumulate the meta-gradient of the editor's parameters given G = ∂L/∂S (I, O) per layer.

        Least squares: with A = UᵀU + λI and X = A⁻¹G, ∂L/∂D = UX and ∂L/∂log λ = -λ⟨X, S⟩
        (the same quantities through K = UUᵀ + λI when there are fewer edits than key features).
        Sum: S is a sum over chunks, so each chunk's contribution is paired with G directly.
        The hypernetwork is re-run one chunk at a time with a graph, then backpropagated. Call it
        directly to compute G yourself, e.g. accumulated over chunks of post-edit inputs.
        """
        for name, (keys, value_grads) in cache.items():
            g = grads[name]
            if self.config.aggregation == "least_squares":
                with torch.no_grad():
                    a = self._system(name, keys)  # symmetric, so solving with it applies A⁻ᵀ
                    if self._dual(name, keys):  # K = UUᵀ + λI: ∂L/∂D = K⁻¹UG, ∂L/∂log λ = -λ⟨K⁻¹UG, K⁻¹D⟩
                        d = self._value_diffs(name, keys, value_grads)
                        dl_dd, kd = torch.linalg.solve(a, torch.cat([keys @ g, d], -1)).split(g.shape[1], -1)
                        dl_dlog_reg = -self._reg(name) * (dl_dd * kd).sum()
                    else:
                        x = torch.linalg.solve(a, g)  # (I, O)
                        dl_dd = None  # U X, formed chunk by chunk below
                        dl_dlog_reg = -self._reg(name) * (x * shifts[name]).sum()
                    reg_grad = torch.zeros_like(self.log_reg)
                    reg_grad[list(self.layers).index(name)] = dl_dlog_reg
                self.log_reg.backward(reg_grad)
            for part in self._chunks(len(keys)):
                u_t, d_t = self.pseudo(name, keys[part], value_grads[part])
                if self.config.aggregation == "sum":
                    surrogate = ((u_t @ g) * d_t).sum()  # ⟨G, ũᵀd̃⟩
                else:
                    d = (keys[part] * u_t).sum(-1, keepdim=True) * d_t  # (n, O)
                    upstream = keys[part] @ x if dl_dd is None else dl_dd[part]  # (n, O): ∂L/∂D on this chunk
                    surrogate = (upstream * d).sum()
                surrogate.backward()

    def fit(self, model: nn.Module, episodes: Iterable[Episode], *, epochs: int | None = None,
            steps: int | None = None, lr: float = 1e-3, scalar_lr: float = 0.1, loc_coef: float = 1.0,
            max_grad_norm: float = 1.0, on_step: Callable[[int, float], bool] | None = None,
            progress: bool | Bar | None = None) -> list[float]:
        """Meta-train the editor on ``episodes`` of edits to ``model`` (which stays unchanged).

        Each episode is ``(x, y, x_gen, x_loc)``: n edit inputs and their new labels ``(n,)``, n nearby
        inputs (paraphrases) that should take the same new labels, and m unrelated inputs whose outputs
        should not move. The meta-loss is the post-edit cross-entropy on ``x`` and ``x_gen`` plus
        ``loc_coef`` times KL(post-edit ‖ pre-edit) on ``x_loc`` (Tan et al.'s edit and locality terms),
        minimised by Adam: rate ``lr`` for the hypernetworks, ``scalar_lr`` for log η and log λ, gradients
        clipped to norm ``max_grad_norm`` as in the paper's code. ``on_step(step, loss)`` runs after each
        step (from 1) and stops training by returning True (e.g. early stopping on validation edits).
        Exactly one of ``epochs`` / ``steps``; returns the meta-loss per step.
        """
        nets = [p for k, p in self.named_parameters() if k.startswith("nets.")]
        opt = torch.optim.Adam([{"params": nets, "lr": lr}, {"params": [self.log_lr, self.log_reg], "lr": scalar_lr}])
        stream, total = batches_for(episodes, epochs, steps)
        losses: list[float] = []
        with progress_bar(progress, total, "MALMEN") as bar:
            for x, y, x_gen, x_loc in stream:
                x_edit, y_edit = torch.cat([x, x_gen]), y.repeat(2)
                with torch.no_grad():
                    ref = F.log_softmax(model(x_loc), -1)

                def meta_loss(shifts, x_edit=x_edit, y_edit=y_edit, x_loc=x_loc, ref=ref):
                    post_loc = F.log_softmax(self.edited(model, shifts, x_loc), -1)
                    return (F.cross_entropy(self.edited(model, shifts, x_edit), y_edit)
                            + loc_coef * F.kl_div(post_loc, ref, log_target=True, reduction="batchmean"))

                opt.zero_grad(set_to_none=True)
                losses.append(self.meta_backward(self.cache(model, x, y), meta_loss).item())
                nn.utils.clip_grad_norm_(self.parameters(), max_grad_norm)
                opt.step()
                bar.update(1)
                if on_step is not None and on_step(len(losses), losses[-1]):
                    break
        return losses

    def meta_backward(self, cache: Cache, meta_loss: Callable[[dict[str, torch.Tensor]], torch.Tensor]) -> torch.Tensor:
        """MALMEN's decoupled meta-gradient step (gradients accumulate in ``.grad``; no optimiser step).

        Args:
            cache: the edits, from :meth:`cache`.
            meta_loss: maps the shifts ``{layer: S}`` to a scalar loss of the post-edit model,
                typically through :meth:`edited` on generalisation and locality inputs.

        Returns:
            The meta-loss, detached.
        """
        shifts = self.shifts(cache)
        leaves = {n: s.detach().requires_grad_() for n, s in shifts.items()}
        loss = meta_loss(leaves)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        grads = {n: torch.zeros_like(s) if g is None else g for (n, s), g in zip(leaves.items(), grads, strict=True)}
        self.backward_from(cache, shifts, grads)
        return loss.detach()
