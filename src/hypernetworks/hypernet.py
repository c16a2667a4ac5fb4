"""HyperNetwork: encoder + head + binding around a target network."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from . import functional as F
from ._checks import check_values
from ._config import rebuild, record
from ._memory import training_bytes
from ._saving import CONFIG_NAME, WEIGHTS_NAME, HubMixin, check_saved, version
from .encoders import Encoder
from .heads import Head
from .init import factor_moments, target_moments
from .spec import ParamSpec

__all__ = ["HyperNetwork"]


class HyperNetwork(HubMixin, nn.Module):
    """Generates chosen tensors of ``target`` from a condition and runs the target with them.

    Args:
        target: any module. In ``absolute`` mode the generated tensors of the target are frozen
            (unused); in ``residual`` mode they are θ0 and train; in ``lora`` mode they are the
            frozen W0. Tensors not in ``spec`` keep training as ordinary parameters.
        spec: what to generate (default: every parameter of the target).
        encoder: condition -> z (see ``hypernetworks.encoders``).
        head: z -> tensors (see ``hypernetworks.heads``); built here for ``spec``.
        mode: ``"absolute"`` θ = h(z), ``"residual"`` θ = θ0 + h(z), ``"lora"`` W = W0 + B·A.
        init: ``"hyperfan_in"``, ``"hyperfan_out"``, ``"default_match"``, ``"zero_delta"`` or
            ``"pytorch"`` (see ``hypernetworks.init``).
        rank: generate every >= 2-D tensor as rank-r factors A (r, I), B (O, r) (``ParamSpec.factorized``),
            with any head: multiplied out in ``absolute`` / ``residual`` mode, kept as ``LoRA(A, B)``
            in ``lora`` mode (where it defaults to 4). ``None``: tensors are generated whole.
        calibration: conditions whose features calibrate ``init`` (default: 256 ``encoder.example``
            conditions drawn with ``seed``).
        seed: seed of the calibration draw.
        check_finite: raise a ValueError if a generated tensor holds NaN/inf (costs one device sync
            per call, on any device; never a device-side assert).
        freeze_target: also freeze the target's tensors that are not generated (adapters, edits), so only
            the encoder and head train; in ``residual`` mode θ0 is then frozen too.

    Example:
        >>> target = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> hnet = HyperNetwork(target, encoder=encoders.Embedding(3, 8), head=heads.Full())
        >>> hnet(torch.randn(5, 4), cond=torch.tensor(1)).shape  # one weight set for the batch
        torch.Size([5, 2])
        >>> hnet(torch.randn(5, 4), cond=torch.tensor([0, 1, 2, 1, 0])).shape  # one per example
        torch.Size([5, 2])
    """

    def __init__(self, target: nn.Module, spec: ParamSpec | None = None, *, encoder: Encoder, head: Head,
                 mode: str = "absolute", init: str = "hyperfan_in", rank: int | None = None,
                 calibration: torch.Tensor | None = None, seed: int = 0, check_finite: bool = False,
                 freeze_target: bool = False):
        super().__init__()
        if mode not in F.MODES:
            raise ValueError(f"HyperNetwork: mode must be one of {F.MODES}, got {mode!r}.")
        if not isinstance(encoder, Encoder) or not isinstance(head, Head):
            raise TypeError(f"HyperNetwork: encoder must be an Encoder and head a Head, got "
                            f"{type(encoder).__name__} and {type(head).__name__}.")
        spec = ParamSpec.from_module(target) if spec is None else spec
        if mode == "lora":
            flat = [e.name for e in spec if len(e.shape) < 2]
            if flat:
                raise ValueError(f"HyperNetwork: mode='lora' generates factors of weights only; {flat} "
                                 "are 1-D: exclude them from the spec or use mode='residual'.")
        self.target, self.spec, self.encoder, self.head = target, spec, encoder, head
        self.mode, self.init_scheme, self.check_finite = mode, init, check_finite
        self.seed, self.freeze_target = seed, freeze_target
        self.rank = 4 if rank is None and mode == "lora" else rank
        # what the head produces: the spec itself, or its low-rank factors
        self.generated_spec = spec if self.rank is None else spec.factorized(self.rank)
        if freeze_target:
            target.requires_grad_(False)
        self._freeze_generated()

        head.build(self.generated_spec, encoder.dim)
        moments = target_moments(spec, init, mode, target)
        if moments is None:
            return
        if calibration is None:
            calibration = encoder.example(256, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            z = encoder(calibration)
            if self.rank is None:
                head.init_output(moments, z)
                return
            factors = factor_moments(self.generated_spec, moments)
            head.init_output(factors, z)
            if any(e.factor and e.factor.part == "B" and factors[e.name][1] > 0 for e in self.generated_spec):
                head.init_output(self._corrected(factors, moments, z), z)

    def _corrected(self, factors: dict, moments: dict, z: torch.Tensor) -> dict:
        """B's variance rescaled so that B·A meets each weight's aim on the calibration conditions: A
        and B read the same features, so E[(B·A)²] also grows with their fourth moment."""
        weights = self.generated_spec.assemble(self.head(z), dense=True)
        out = dict(factors)
        for e in self.generated_spec:
            if e.factor is not None and e.factor.part == "B" and factors[e.name][1] > 0:
                got = weights[e.factor.weight].pow(2).mean().item()
                aim = moments[e.factor.weight][1]
                out[e.name] = (0.0, factors[e.name][1] * aim / got) if got > 0 else factors[e.name]
        return out

    def _freeze_generated(self) -> None:
        if self.mode == "residual":
            return
        own = dict(self.target.named_parameters())
        for name in self.spec.names:
            own[name].requires_grad_(False)

    # --- generation and calls --------------------------------------------------------------
    def generate(self, cond: torch.Tensor) -> dict:
        """``{name: tensor}`` (``LoRA`` factors in lora mode), with a leading B for batched ``cond``."""
        return self.decode(self.encoder(cond))

    def decode(self, z: torch.Tensor) -> dict:
        """``generate`` from an encoder output ``z`` ((E,) or (B, E)), for callers that also use ``z``."""
        params = self.head(z)
        if self.rank is not None:
            params = self.generated_spec.assemble(params, dense=self.mode != "lora")
        if self.check_finite:
            for name, value in params.items():
                for t in (value if isinstance(value, tuple) else (value,)):
                    check_values(torch.isfinite(t), f"HyperNetwork: generated '{name}' is not finite.", True)
        return params

    def forward(self, *args, cond: torch.Tensor | None = None, **kwargs):
        """``target(*args, **kwargs)`` with tensors generated from ``cond`` (always by name).

        ``cond`` of the encoder's ``cond_shape`` gives one weight set for the whole batch;
        ``(B, *cond_shape)`` gives one per example (B == the batch of the inputs). Every positional
        and keyword input goes to the target: ``hnet(x, cond=c)``, ``hnet(q, k, v, cond=c)``,
        ``hnet(input_ids, attention_mask=m, cond=c)``. Generated tensors are cast to the dtype of
        the target tensor they replace (``functional_call(cast=True)``), so a bf16 target can be
        driven by an fp32 generator; under ``torch.autocast`` they stay in autocast's dtype.
        """
        if cond is None:
            raise TypeError("HyperNetwork: pass the condition by name, e.g. hnet(x, cond=c); every positional "
                            "input goes to the target.")
        per_example = self.encoder.is_batched(cond)  # checks the condition's shape first
        return F.functional_call(self.target, self.generate(cond), args, kwargs, spec=self.spec,
                                 per_example=per_example, mode=self.mode, cast=True)

    def forward_sets(self, *args, conds: torch.Tensor, **kwargs):
        """The same inputs under each of K conditions ``conds (K, *cond_shape)``: outputs stacked
        ``(K, *output)`` (e.g. every learned task's network on one batch, as HyperCL's regulariser and
        task inference need). See ``functional_call_sets``."""
        if not self.encoder.is_batched(conds):
            raise ValueError(f"HyperNetwork.forward_sets: conds needs a leading K, got {tuple(conds.shape)}.")
        return F.functional_call_sets(self.target, self.generate(conds), args, kwargs, spec=self.spec,
                                      mode=self.mode, cast=True)

    def materialize(self, cond: torch.Tensor) -> nn.Module:
        """A plain copy of the target with the weights for one condition baked in."""
        if self.encoder.is_batched(cond):
            raise ValueError(f"HyperNetwork.materialize: needs one condition of shape {self.encoder.cond_shape}, "
                             f"got a batch {tuple(cond.shape)}.")
        with torch.no_grad():
            return F.materialize(self.target, self.generate(cond), spec=self.spec, mode=self.mode, cast=True)

    # --- saving and loading -----------------------------------------------------------------
    def save_pretrained(self, save_directory: str | Path) -> None:
        """Write ``config.json`` (encoder, head, spec names, options, versions) and ``model.safetensors``
        (every tensor of the state_dict, the target's included) into ``save_directory``.

        The layout is ``huggingface_hub``'s (``push_to_hub`` uploads the same two files).
        """
        from safetensors.torch import save_model

        out = Path(save_directory)
        out.mkdir(parents=True, exist_ok=True)
        config = {"format": "hypernetworks.HyperNetwork/1", "encoder": record(self.encoder), "head": record(self.head),
                  "spec": self.spec.names,
                  "options": {"mode": self.mode, "init": self.init_scheme, "rank": self.rank, "seed": self.seed,
                              "check_finite": self.check_finite, "freeze_target": self.freeze_target},
                  "versions": {"hypernetworks": version(), "torch": torch.__version__}}
        (out / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_model(self, str(out / WEIGHTS_NAME))

    @classmethod
    def from_pretrained(cls, pretrained: str | Path, *, target: nn.Module) -> HyperNetwork:
        """Rebuild a saved hypernetwork around ``target`` (a freshly built module of the saved kind)
        and load its tensors bit for bit.

        Raises:
            ValueError: ``target`` does not fit the saved one (the message names the first tensor
                that differs, with both shapes).
        """
        from safetensors.torch import load_model

        folder = Path(pretrained)
        config = json.loads((folder / CONFIG_NAME).read_text())
        spec = ParamSpec.from_module(target)
        missing = [n for n in config["spec"] if n not in spec]
        if missing:
            raise ValueError(f"HyperNetwork.from_pretrained: the target has no parameter {missing[0]!r}, which the "
                             "saved hypernetwork generates; build the target the saved one was built from.")
        hnet = cls(target, spec.subset(config["spec"]), encoder=rebuild(config["encoder"]),
                   head=rebuild(config["head"]), **config["options"])
        check_saved(hnet.state_dict(), folder / WEIGHTS_NAME, "HyperNetwork.from_pretrained",
                    "build the target the saved one was built from.")
        load_model(hnet, str(folder / WEIGHTS_NAME), strict=True)
        return hnet

    # --- sizes ---------------------------------------------------------------------------------
    @property
    def num_generated(self) -> int:
        """Values of the target produced per condition (P)."""
        return self.spec.numel

    @property
    def num_trainable(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def memory_estimate(self, *args, cond: torch.Tensor, batch_size: int | None = None, optimizer: str = "adam",
                        **kwargs) -> dict[str, int]:
        """Bytes of one training step ``hnet(*args, cond=cond, **kwargs)`` -> backward -> optimiser
        step, estimated on fake tensors: nothing is computed or allocated, so a batch that would not
        fit can be sized first.

        Args:
            args, kwargs: example inputs of the target; only shapes, dtypes and devices are read.
            cond: an example condition; batched (``(B, *cond_shape)``) for per-example weights.
            batch_size: replaces dim 0 of every tensor input and of a batched ``cond`` (None: as given).
            optimizer: ``"adam"`` / ``"adamw"`` (2 values of state per trainable value),
                ``"sgd_momentum"`` (1) or ``"sgd"`` (0).

        Returns:
            ``{"parameters", "optimizer", "step", "total"}`` in bytes; ``step`` is the peak of the
            activations and gradients (the loss is the sum of the outputs). Not counted: work buffers
            a kernel frees before it returns, and the allocator's rounding (see
            ``benchmarks/memory.py`` for how close it comes).
        """
        if batch_size is not None and self.encoder.is_batched(cond):
            cond = cond[:1].expand(batch_size, *cond.shape[1:])  # a view: nothing allocated
        return training_bytes(self, lambda hnet, a, kw: hnet(*a, cond=cond, **kw), (args, kwargs), batch_size,
                              optimizer)

    def summary(self, batch_size: int = 64, *, inputs: tuple | None = None, cond: torch.Tensor | None = None) -> str:
        """Per-tensor shapes, generated vs own parameter counts, per-example weights at ``batch_size``;
        with example ``inputs`` (the target's positional inputs) and a batched ``cond``, also the
        estimated memory of a per-example Adam training step at ``batch_size`` (``memory_estimate``)."""
        own = sum(p.numel() for n, p in self.target.named_parameters() if n not in self.spec and p.requires_grad)
        gen_params = sum(p.numel() for n, p in self.named_parameters()
                         if p.requires_grad and not n.startswith("target."))
        itemsize = next(self.parameters()).element_size()
        lines = [f"HyperNetwork(mode={self.mode}, init={self.init_scheme}, head={type(self.head).__name__}, "
                 f"encoder={type(self.encoder).__name__})",
                 f"{'tensor':<40} {'shape':<20} {'numel':>10}"]
        lines += [f"{e.name:<40} {str(tuple(e.shape)):<20} {e.numel:>10,}" for e in self.spec]
        lines += [f"generated per condition (P): {self.num_generated:,}",
                  f"hypernetwork parameters:     {gen_params:,}",
                  f"target's own trainable:      {own:,}",
                  f"trainable in all:            {self.num_trainable:,}",
                  f"per-example weights at B={batch_size}: "
                  f"{batch_size * self.num_generated * itemsize / 2**20:,.3f} MiB"]
        if (inputs is None) != (cond is None):
            raise ValueError("HyperNetwork.summary: pass both inputs= and cond= for a memory estimate, or neither.")
        if inputs is not None and cond is not None:
            est = self.memory_estimate(*inputs, cond=cond, batch_size=batch_size)
            mib = {k: v / 2**20 for k, v in est.items()}
            lines.append(f"training step at B={batch_size} (Adam), estimated: {mib['total']:,.1f} MiB = parameters "
                         f"{mib['parameters']:,.1f} + Adam state {mib['optimizer']:,.1f} + activations and "
                         f"gradients {mib['step']:,.1f}")
        return "\n".join(lines)
