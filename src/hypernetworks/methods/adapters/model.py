"""Generated adapters for a frozen model: LoRA factors (and LayerNorm shifts) from a task or a text.

HyperFormer (Karimi Mahabadi et al., ACL 2021, https://arxiv.org/abs/2106.04489): a learned task
embedding plus layer / position embeddings -> adapter weights and conditional LayerNorm.
Text-to-LoRA (Charakorn et al., ICML 2025, https://arxiv.org/abs/2506.06105): a sentence embedding of
a task description -> LoRA, so an unseen description gets an adapter zero-shot. Here both share one
design: an encoder (task ids or text embeddings) and the ``Layerwise`` head inside core
``HyperNetwork``s, in ``lora`` mode for the LoRA factors and ``residual`` mode for the norms, run
together in one ``functional_call`` with a per-tensor mode.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ... import encoders
from ...functional import functional_call
from ...hypernet import HyperNetwork
from ...spec import NoMatchingParamsError, ParamSpec
from .._pretrained import Pretrained
from .config import AdapterConfig
from .generator import Layerwise

__all__ = ["GeneratedAdapters", "hyperformer", "lora_spec", "norm_spec", "text_to_lora"]

def lora_spec(target: nn.Module, target_modules: str | Sequence[str],
              exclude_modules: str | Sequence[str] | None = None) -> ParamSpec:
    """The weights (>= 2-D) of the modules that PEFT's ``target_modules`` rules select.

    Raises:
        NoMatchingParamsError: nothing selected, or only 1-D tensors (the message lists names).
    """
    spec = ParamSpec.from_module(target, include=target_modules, exclude=exclude_modules)
    weights = [e.name for e in spec if e.role == "weight" and len(e.shape) >= 2]
    if not weights:
        raise NoMatchingParamsError(f"lora_spec: target_modules={target_modules!r} selected only {spec.names}; "
                                    "LoRA needs weights of >= 2 dims (Linear, Conv, Embedding).")
    return spec.subset(weights)


def norm_spec(target: nn.Module, norm_modules: str | Sequence[str]) -> ParamSpec:
    """γ and β of the normalisation layers (``module_kind`` "norm") that ``norm_modules`` selects.

    Raises:
        NoMatchingParamsError: no normalisation layer selected.
    """
    spec = ParamSpec.from_module(target, include=norm_modules)
    norms = [e.name for e in spec if e.kind == "norm"]
    if not norms:
        raise NoMatchingParamsError(f"norm_spec: norm_modules={norm_modules!r} selected no normalisation layer, "
                                    f"only {spec.names}.")
    return spec.subset(norms)


class GeneratedAdapters(Pretrained[AdapterConfig]):
    """A frozen ``target`` run with LoRA factors (and LayerNorm shifts) generated from a condition.

    Every parameter of ``target`` is frozen; only the encoder and the generator heads train. Both
    start at zero delta: at step 0 the model computes exactly what ``target`` computes.
    ``save_pretrained`` stores the encoder and heads only; ``from_pretrained(folder, target)`` takes
    the frozen model from ``target``.

    Args:
        target: any module (a ``transformers`` model, or plain PyTorch).
        config: what to adapt and how the generator is sized; keyword ``options`` replace its fields.
        calibration: typical conditions ``(n, *cond_shape)`` that calibrate the init of A (default:
            the encoder's own draw; pass real text embeddings when the condition is text).

    Example:
        >>> target = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> model = GeneratedAdapters(target, cond_features=6, target_modules=["0", "2"], rank=2)
        >>> x, text_emb = torch.randn(5, 8), torch.randn(5, 6)  # one text embedding per example
        >>> torch.equal(model(x, cond=text_emb), target(x))  # zero delta at the start
        True
        >>> lora = model.generate(text_emb)["lora"]  # {name: LoRA(A (B, r, I), B (B, O, r))}
        >>> tuple(lora["0.weight"].A.shape), tuple(lora["0.weight"].B.shape)
        ((5, 2, 8), (5, 16, 2))
    """

    CONFIG = AdapterConfig
    norms: HyperNetwork | None  # set with object.__setattr__: shares the target and encoder of self.lora
    NOT_SAVED = ("lora.target.",)  # the frozen model: from_pretrained takes it from its target

    def __init__(self, target: nn.Module, config: AdapterConfig | None = None, *,
                 calibration: torch.Tensor | None = None, **options):
        super().__init__()
        self.config = config = AdapterConfig.build(config, **options)
        if config.num_tasks is not None:
            encoder = encoders.Embedding(config.num_tasks, config.cond_dim)
        else:
            assert config.cond_features is not None  # AdapterConfig checks that exactly one of the two is set
            encoder = encoders.Projection(config.cond_features, config.cond_dim)
        head = {"hidden": config.hidden, "layer_dim": config.layer_dim, "type_dim": config.type_dim}
        self.lora = HyperNetwork(target, lora_spec(target, config.target_modules, config.exclude_modules),
                                 encoder=encoder, head=Layerwise(**head), mode="lora", init="zero_delta",
                                 rank=config.rank, calibration=calibration, seed=config.seed, freeze_target=True)
        norms = None
        if config.norm_modules is not None:
            norms = HyperNetwork(target, norm_spec(target, config.norm_modules), encoder=encoder,
                                 head=Layerwise(**head), mode="residual", init="zero_delta",
                                 calibration=calibration, seed=config.seed, freeze_target=True)
        # The target and encoder are registered once, inside ``self.lora``; the norms' hypernetwork
        # shares them, so only its head is registered here (a state_dict holds each tensor once).
        self.norm_head = None if norms is None else norms.head
        object.__setattr__(self, "norms", norms)

    @property
    def target(self) -> nn.Module:
        return self.lora.target

    @property
    def encoder(self) -> encoders.Encoder:
        return self.lora.encoder

    def generate(self, cond: torch.Tensor) -> dict[str, dict]:
        """``{"lora": {name: LoRA(A (..., r, I), B (..., O, r))}, "norms": {name: Δ (..., *shape)}}``,
        with a leading B for a batched ``cond``."""
        z = self.encoder(cond)  # (..., E), shared by both generators
        norms = {} if self.norms is None else self.norms.decode(z)
        return {"lora": self.lora.decode(z), "norms": norms}

    def forward(self, *args, cond: torch.Tensor, **kwargs):
        """``target(*args, **kwargs)`` under the adapter for ``cond``: one condition for the whole
        batch, or ``(B, *cond_shape)`` for one adapter per example (no (B, O, I) tensor is built)."""
        params = self.generate(cond)
        modes = dict.fromkeys(params["lora"], "lora") | dict.fromkeys(params["norms"], "residual")
        # One call with the tensors of both hypernetworks (LoRA factors and residual norm shifts, each
        # with its own mode): a single HyperNetwork cannot run another's tensors, so the binding is used.
        return functional_call(self.target, params["lora"] | params["norms"], args, kwargs, mode=modes,
                               per_example=self.encoder.is_batched(cond), strict=False)

    def fit(self, batches: Iterable[tuple[tuple, torch.Tensor, Any]], *, steps: int | None = None, lr: float = 1e-3,
            loss_fn: Callable[[Any, Any], torch.Tensor] = F.cross_entropy,
            extra_params: Iterable[nn.Parameter] = ()) -> list[float]:
        """Train the encoder and generator heads with Adam; returns the loss per step.

        Each batch is ``(inputs, cond, target)``: the loss is ``loss_fn(self(*inputs, cond=cond), target)``,
        with ``cond`` one condition for the batch or ``(B, *cond_shape)``, one per example (several tasks
        in one batch, as HyperFormer and Text-to-LoRA train). ``extra_params`` (e.g. a readout that
        ``loss_fn`` uses) train alongside.

        Args:
            batches: an iterable of ``(inputs, cond, target)``; may be endless when ``steps`` is set.
            steps: batches to train on (None: all of ``batches``).
            lr: Adam's learning rate.
            loss_fn: ``(output, target) -> scalar loss``.
            extra_params: more parameters to train with the same optimiser.

        Raises:
            ValueError: ``batches`` ran out before ``steps``.

        Example:
            >>> target = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
            >>> model = hyperformer(target, num_tasks=2, target_modules=["0", "2"], rank=2)
            >>> x = torch.randn(64, 4)
            >>> tasks = torch.arange(64) % 2  # task 0: is x[0] > 0; task 1: is x[1] > 0
            >>> y = (x[torch.arange(64), tasks] > 0).long()
            >>> losses = model.fit(itertools.repeat(((x,), tasks, y)), steps=60, lr=1e-2)
            >>> losses[-1] < 0.5 * losses[0]
            True
        """
        params = [p for p in self.parameters() if p.requires_grad] + list(extra_params)
        opt = torch.optim.Adam(params, lr=lr)
        losses: list[float] = []
        for inputs, cond, target in itertools.islice(batches, steps):
            loss = loss_fn(self(*inputs, cond=cond), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        if steps is not None and len(losses) < steps:
            raise ValueError(f"GeneratedAdapters.fit: batches ran out after {len(losses)} of {steps} steps; pass "
                             "an endless iterable (itertools.cycle) or fewer steps.")
        return losses

    @property
    def num_trainable(self) -> int:
        """Trainable parameters (encoder and generator heads; the target is frozen)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


def hyperformer(target: nn.Module, config: AdapterConfig | None = None, *,
                calibration: torch.Tensor | None = None, **options: Any) -> GeneratedAdapters:
    """HyperFormer-style: a learned task embedding -> LoRA factors and (with ``norm_modules``)
    conditional LayerNorm; the condition is a task id.

    Example:
        >>> target = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.Linear(16, 2))
        >>> model = hyperformer(target, num_tasks=3, target_modules=["0", "2"], norm_modules=["1"])
        >>> model(torch.randn(4, 8), cond=torch.tensor([0, 2, 1, 0])).shape  # one task id per example
        torch.Size([4, 2])
    """
    config = AdapterConfig.build(config, **options)
    if config.num_tasks is None:
        raise ValueError("hyperformer: config.num_tasks must be set (the condition is a task id).")
    return GeneratedAdapters(target, config, calibration=calibration)


def text_to_lora(target: nn.Module, config: AdapterConfig | None = None, *,
                 calibration: torch.Tensor | None = None, **options: Any) -> GeneratedAdapters:
    """Text-to-LoRA-style: a sentence embedding of a task description -> LoRA factors.

    Example:
        >>> target = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2))
        >>> model = text_to_lora(target, cond_features=6, target_modules=["0", "2"])
        >>> model(torch.randn(4, 8), cond=torch.randn(6)).shape  # one description for the whole batch
        torch.Size([4, 2])
    """
    config = AdapterConfig.build(config, **options)
    if config.cond_features is None:
        raise ValueError("text_to_lora: config.cond_features must be set (the width of the text embedding).")
    return GeneratedAdapters(target, config, calibration=calibration)
