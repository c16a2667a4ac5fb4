"""The same training steps with hypernetworks, hyperlight 0.0.5 and hypnettorch 0.0.4, in one process.

Run: ``python -m benchmarks.peers [--threads 1] [--steps 50]`` (needs the ``bench`` extra).
Every row runs twice, with the same optimiser on both sides: plain ``torch.optim.Adam`` (as the
peers' documentation shows) and ``Adam(fused=True)`` (as this library's training code uses); the
ratio ours/peer is per optimiser. Each entry: ms per training step (median after warm-up) and its
parts (forward, backward, optimiser step; medians, so they need not add up exactly), training
memory (parameters + gradients + Adam state + tensors saved for backward, MiB), the loss after the
timed steps (same data and seed: a numerics sanity check).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

import hypernetworks as hn
from hypernetworks.methods.continual import HyperCL

BATCH = 64


def digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32)
    return (x - x.mean(0)) / (x.std(0) + 1e-6), torch.tensor(d.target)


def mlp(sizes):
    layers = []
    for a, b in zip(sizes, sizes[1:], strict=False):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def saved_bytes(fn) -> int:
    """Bytes of the tensors autograd saves for backward during ``fn()``."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def measure_all(entries: dict, steps: int) -> dict:
    """Time each ``step()`` (which returns its forward, backward and optimiser seconds), interleaving
    the entries step by step so that drift on a shared machine hits them alike; estimate each one's
    training memory.

    ``entries``: ``{name: ((step, loss_of), module)}``.
    """
    for (step, _), _ in entries.values():
        for _ in range(5):
            step()
    parts = {name: [] for name in entries}
    for _ in range(steps):
        for name, ((step, _), _) in entries.items():
            t0 = time.perf_counter()
            split = step()
            parts[name].append(((time.perf_counter() - t0) * 1e3, *(t * 1e3 for t in split)))
    out = {}
    for name, ((_, loss_of), module) in entries.items():
        param_bytes = sum(p.numel() * p.element_size() for p in module.parameters() if p.requires_grad)
        memory = 4 * param_bytes + saved_bytes(loss_of)  # θ, grad, Adam m and v
        ms, fwd, bwd, opt = (statistics.median(col) for col in zip(*parts[name], strict=True))
        out[name] = {"ms": ms, "fwd": fwd, "bwd": bwd, "opt": opt, "mib": memory / 2**20,
                     "loss": loss_of().item(), "params": param_bytes // 4}
    return out


def trainer(forward, params, fused: bool):
    """A step function over ``forward() -> loss`` with Adam (fused or not); the step returns the
    seconds of its forward, backward and optimiser parts."""
    opt = torch.optim.Adam(params, lr=1e-3, fused=fused)

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = forward()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    return step, forward


def both_optimisers(makers, steps: int) -> dict:
    """``measure_all`` of every ``make(fused)`` in ``makers`` (``(name, make)`` pairs), once with plain
    and once with fused Adam on all sides: ``{"plain": results, "fused": results}``."""
    return {kind: measure_all({name: make(fused) for name, make in makers}, steps)
            for kind, fused in (("plain", False), ("fused", True))}


def batches(x, y, seed=0):
    gen = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        yield x[idx], y[idx]


# --- row 1: scalar-conditioned hypernetwork for an MLP 64-32-32-10 -------------------------------


def row_scalar(steps, x, y, mip: bool):
    import hyperlight as hl

    sizes, hidden = [64, 32, 32, 10], [16, 64, 128]
    def peer(fused):
        torch.manual_seed(0)
        target = mlp(sizes)
        shapes = {n: tuple(p.shape) for n, p in target.named_parameters()}
        hnet = hl.HyperNet({"gamma": (1,)}, shapes, hidden, encoding="cos|sin" if mip else None)
        data = batches(x, y)
        gen = torch.Generator().manual_seed(1)

        def forward():
            xb, yb = next(data)
            weights = hnet(gamma=torch.rand(1, generator=gen))
            return F.cross_entropy(torch.func.functional_call(target, weights, (xb,)), yb)

        return trainer(forward, list(hnet.parameters()), fused=fused), hnet

    def ours(fused):
        torch.manual_seed(0)
        hnet = hn.methods.mip.hypernetwork(mlp(sizes), hidden=tuple(hidden), encoding="mip" if mip else "none",
                                           residual=mip)
        data = batches(x, y)
        gen = torch.Generator().manual_seed(1)

        def forward():
            xb, yb = next(data)
            return F.cross_entropy(hnet(xb, cond=torch.rand(1, generator=gen)), yb)

        return trainer(forward, [p for p in hnet.parameters() if p.requires_grad], fused=fused), hnet

    return both_optimisers((("hyperlight", peer), ("ours", ours)), steps)


# --- row 2: task-conditioned HMLP / ChunkedHMLP for an MLP 64-100-100-10 -------------------------


def row_task(steps, x, y, chunked: bool):
    from hypnettorch.hnets import HMLP, ChunkedHMLP
    from hypnettorch.mnets import MLP

    def peer(fused):
        torch.manual_seed(0)
        mnet = MLP(n_in=64, n_out=10, hidden_layers=(100, 100), no_weights=True, verbose=False)
        kw = {"layers": (100, 100), "cond_in_size": 8, "num_cond_embs": 5, "verbose": False}
        hnet = ChunkedHMLP(mnet.param_shapes, chunk_size=2000, chunk_emb_size=8, **kw) if chunked \
            else HMLP(mnet.param_shapes, **kw)
        data = batches(x, y)

        def forward():
            xb, yb = next(data)
            return F.cross_entropy(mnet.forward(xb, weights=hnet.forward(cond_id=2)), yb)

        return trainer(forward, list(hnet.parameters()), fused=fused), hnet

    def ours(fused):
        torch.manual_seed(0)
        head = (hn.heads.Chunked(2000, chunk_dim=8, hidden=(100, 100)) if chunked
                else hn.heads.Full(hidden=(100, 100)))
        hnet = hn.HyperNetwork(mlp([64, 100, 100, 10]), encoder=hn.encoders.Embedding(5, 8), head=head)
        data = batches(x, y)
        task = torch.tensor(2)

        def forward():
            xb, yb = next(data)
            return F.cross_entropy(hnet(xb, cond=task), yb)

        return trainer(forward, [p for p in hnet.parameters() if p.requires_grad], fused=fused), hnet

    return both_optimisers((("hypnettorch", peer), ("ours", ours)), steps)


# --- row 3: the continual-learning output regulariser ------------------------------------------


def row_regulariser(steps, earlier: int):
    from hypnettorch.hnets import HMLP
    from hypnettorch.mnets import MLP
    from hypnettorch.utils import hnet_regularizer as reg

    torch.manual_seed(0)
    mnet = MLP(n_in=64, n_out=10, hidden_layers=(100, 100), no_weights=True, verbose=False)
    peer = HMLP(mnet.param_shapes, layers=(100, 100), cond_in_size=8, num_cond_embs=earlier + 1, verbose=False)
    targets = reg.get_current_targets(earlier, peer)

    def peer_loss():
        return reg.calc_fix_target_reg(peer, earlier, targets=targets)

    learner = HyperCL(mlp([64, 100, 100, 10]), num_tasks=earlier + 1, embedding_dim=8, hidden=(100, 100))
    with torch.no_grad():
        learner.targets.copy_(learner.hnet.spec.flatten(learner.generate(torch.arange(earlier + 1))))
        learner.learned[:earlier] = True

    def ours_loss():
        return learner.regularizer(earlier)

    def step_of(loss):  # no optimiser: the regulariser's forward and backward only
        def step():
            t0 = time.perf_counter()
            value = loss()
            t1 = time.perf_counter()
            value.backward()
            return t1 - t0, time.perf_counter() - t1, 0.0
        return step

    entries = {name: ((step_of(loss), loss), module)
               for name, loss, module in (("hypnettorch", peer_loss, peer), ("ours", ours_loss, learner))}
    return {"none": measure_all(entries, steps)}


# --- row 4: per-example weights, B different conditions in one batch ------------------------------


def row_per_example(steps, x, y):
    import hyperlight as hl
    from hypnettorch.hnets import HMLP
    from hypnettorch.mnets import MLP

    sizes, hidden = [64, 32, 32, 10], [16, 64, 128]
    def hyperlight_vmap(fused):
        torch.manual_seed(0)
        target = mlp(sizes)
        shapes = {n: tuple(p.shape) for n, p in target.named_parameters()}
        hnet = hl.HyperNet({"gamma": (1,)}, shapes, hidden)
        data = batches(x, y)

        def forward():
            xb, yb = next(data)
            weights = hnet(gamma=torch.rand(BATCH, 1))  # (B, ...) per example
            one = lambda w, xi: torch.func.functional_call(target, w, (xi.unsqueeze(0),)).squeeze(0)  # noqa: E731
            return F.cross_entropy(torch.func.vmap(one)(weights, xb), yb)

        return trainer(forward, list(hnet.parameters()), fused=fused), hnet

    def hypnettorch_loop(fused):
        torch.manual_seed(0)
        mnet = MLP(n_in=64, n_out=10, hidden_layers=(32, 32), no_weights=True, verbose=False)
        hnet = HMLP(mnet.param_shapes, layers=(64, 128), cond_in_size=8, num_cond_embs=BATCH, verbose=False)
        data = batches(x, y)

        def forward():
            xb, yb = next(data)
            weights = hnet.forward(cond_id=list(range(BATCH)))
            logits = torch.cat([mnet.forward(xb[i:i + 1], weights=w) for i, w in enumerate(weights)])
            return F.cross_entropy(logits, yb)

        return trainer(forward, list(hnet.parameters()), fused=fused), hnet

    def ours(fused):
        torch.manual_seed(0)
        hnet = hn.methods.mip.hypernetwork(mlp(sizes), hidden=tuple(hidden))
        data = batches(x, y)

        def forward():
            xb, yb = next(data)
            return F.cross_entropy(hnet(xb, cond=torch.rand(BATCH, 1)), yb)

        return trainer(forward, [p for p in hnet.parameters() if p.requires_grad], fused=fused), hnet

    makers = (("hyperlight + vmap", hyperlight_vmap), ("hypnettorch loop", hypnettorch_loop), ("ours", ours))
    return both_optimisers(makers, steps)


# --- row 5: a CNN target, eager and compiled --------------------------------------------------


def row_cnn(steps):
    import hyperlight as hl

    def cnn():
        return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))

    x, y = torch.randn(512, 1, 28, 28), torch.randint(0, 10, (512,))
    def peer(fused):
        torch.manual_seed(0)
        target = cnn()
        hnet = hl.HyperNet({"gamma": (1,)}, {n: tuple(p.shape) for n, p in target.named_parameters()}, [64, 64])
        data = batches(x, y)

        def forward():
            xb, yb = next(data)
            return F.cross_entropy(torch.func.functional_call(target, hnet(gamma=torch.rand(1)), (xb,)), yb)

        return trainer(forward, list(hnet.parameters()), fused=fused), hnet

    def ours(compiled):
        def make(fused):
            torch.manual_seed(0)
            hnet = hn.methods.mip.hypernetwork(cnn(), hidden=(64, 64))
            model = torch.compile(hnet, fullgraph=True, dynamic=False) if compiled else hnet
            data = batches(x, y)

            def forward():
                xb, yb = next(data)
                return F.cross_entropy(model(xb, cond=torch.rand(1)), yb)

            return trainer(forward, [p for p in hnet.parameters() if p.requires_grad], fused=fused), hnet
        return make

    def plain(compiled):  # the target network alone, trained directly: what compile does to the convs
        def make(fused):
            torch.manual_seed(0)
            target = cnn()
            model = torch.compile(target, dynamic=False) if compiled else target
            data = batches(x, y)

            def forward():
                xb, yb = next(data)
                return F.cross_entropy(model(xb), yb)

            return trainer(forward, list(target.parameters()), fused=fused), target
        return make

    makers = (("hyperlight", peer), ("ours", ours(False)), ("ours, torch.compile", ours(True)),
              ("plain CNN, no hypernetwork", plain(False)), ("plain CNN, torch.compile", plain(True)))
    return both_optimisers(makers, steps)


def render(rows: list[tuple[str, dict]], threads: int, steps: int) -> str:
    lines = [f"torch {torch.__version__}, threads={threads}, batch {BATCH}, median of {steps} steps after warm-up", "",
             "| row | library | Adam | ms / step | fwd | bwd | optimiser | memory MiB | trainable | loss after "
             "| ours / this |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for title, by_optimiser in rows:
        for kind, result in by_optimiser.items():
            ours = result["ours"]["ms"]
            for name, r in result.items():
                ratio = "" if name.startswith("ours") else f"{ours / r['ms']:.2f}"
                lines.append(f"| {title} | {name} | {kind} | {r['ms']:.2f} | {r['fwd']:.2f} | {r['bwd']:.2f} | "
                             f"{r['opt']:.2f} | {r['mib']:.2f} | {r['params']:,} | {r['loss']:.3f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per row")
    parser.add_argument("--write", default="docs/benchmarks-peers.md", help="markdown file for the table ('' = none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x, y = digits()
    rows = [("1. scalar MLP, MIP off", row_scalar(args.steps, x, y, mip=False)),
            ("1. scalar MLP, MIP on", row_scalar(args.steps, x, y, mip=True)),
            ("2. HMLP(100,100)", row_task(args.steps, x, y, chunked=False)),
            ("2. ChunkedHMLP", row_task(args.steps, x, y, chunked=True)),
            ("3. regulariser, 4 earlier", row_regulariser(args.steps, 4)),
            ("3. regulariser, 19 earlier", row_regulariser(args.steps, 19)),
            ("4. per-example, B=64", row_per_example(args.steps, x, y)),
            ("5. CNN target", row_cnn(args.steps))]
    table = render(rows, torch.get_num_threads(), args.steps)
    print(table)
    if args.write:
        Path(args.write).write_text(f"# Peers: hyperlight and hypnettorch\n\nWritten by `python -m benchmarks.peers "
                                    f"--steps {args.steps} --threads {args.threads}` (run by `make bench`); what the "
                                    f"columns mean and how the goals stand: [benchmarks.md](benchmarks.md).\n\n"
                                    f"{table}\n")


if __name__ == "__main__":
    main()
