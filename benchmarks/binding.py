"""Per-example binding speed: our batched path vs hand-written bmm / grouped conv vs shared weights.

Run: ``python -m benchmarks.binding [--threads 1] [--steps 30] [--device cuda]``. Prints ms per
forward+backward (median over steps, after warm-up, the variants of a row interleaved step by step;
on a GPU the clock is read after ``torch.cuda.synchronize()``), ratios, the thread count, and the
binding's fixed cost per call on a tiny input.
Nothing here is a test.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import hypernetworks as hn

DEVICE = torch.device("cpu")


def _sync() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, steps: int, warmup: int = 5) -> float:
    """Median ms of ``fn()`` (forward + backward) over ``steps`` runs after ``warmup``."""
    return timed_together({"fn": fn}, steps, warmup)["fn"]


def timed_together(fns: dict, steps: int, warmup: int = 5) -> dict[str, float]:
    """Median ms of each ``fn()``, interleaved step by step so drift on a shared machine hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(steps):
        for name, fn in fns.items():
            _sync()
            t0 = time.perf_counter()
            fn()
            _sync()
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(ts) for name, ts in times.items()}


def mlp_rows(batch: int, steps: int) -> dict[str, float]:
    net = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10)).to(DEVICE)
    x = torch.randn(batch, 256, device=DEVICE)
    per = {k: (v.detach() + 0.01 * torch.randn(batch, *v.shape, device=DEVICE)).requires_grad_()
           for k, v in net.named_parameters()}

    def ours():
        hn.functional_call(net, per, (x,), per_example=True).square().sum().backward()

    def reference():  # hand-written bmm
        h = torch.baddbmm(per["0.bias"].unsqueeze(1), x.unsqueeze(1), per["0.weight"].mT).relu()
        y = torch.baddbmm(per["2.bias"].unsqueeze(1), h, per["2.weight"].mT)
        y.square().sum().backward()

    def shared():
        net(x).square().sum().backward()

    rank = 4
    lora = {k: hn.LoRA((0.01 * torch.randn(batch, rank, v.shape[1], device=DEVICE)).requires_grad_(),
                       (0.01 * torch.randn(batch, v.shape[0], rank, device=DEVICE)).requires_grad_())
            for k, v in net.named_parameters() if v.dim() == 2}

    def ours_lora():
        hn.functional_call(net, lora, (x,), per_example=True, mode="lora",
                           strict=False).square().sum().backward()

    # Each comparison is interleaved on its own, so a heavy variant does not slow its light partner.
    return {**timed_together({"ours": ours, "reference": reference}, steps),
            **timed_together({"shared": shared, "lora_r4": ours_lora}, steps)}


def cnn_rows(batch: int, steps: int) -> dict[str, float]:
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(32, 10)).to(DEVICE)
    x = torch.randn(batch, 1, 28, 28, device=DEVICE)
    per = {k: (v.detach() + 0.01 * torch.randn(batch, *v.shape, device=DEVICE)).requires_grad_()
           for k, v in net.named_parameters()}

    def ours():
        hn.functional_call(net, per, (x,), per_example=True).square().sum().backward()

    def conv(h, w, b):  # hand-written grouped conv
        y = F.conv2d(h.reshape(1, -1, *h.shape[2:]), w.reshape(-1, *w.shape[2:]),
                     b.reshape(-1), padding=1, groups=batch)
        return y.reshape(batch, -1, *y.shape[2:])

    def reference():
        h = F.max_pool2d(conv(x, per["0.weight"], per["0.bias"]).relu(), 2)
        h = F.adaptive_avg_pool2d(conv(h, per["3.weight"], per["3.bias"]).relu(), 1).flatten(1)  # as the target
        y = torch.baddbmm(per["7.bias"].unsqueeze(1), h.unsqueeze(1), per["7.weight"].mT)
        y.square().sum().backward()

    def shared():
        net(x).square().sum().backward()

    return {**timed_together({"ours": ours, "reference": reference}, steps), "shared": timed(shared, steps)}


def overhead_rows(steps: int) -> dict[str, float]:
    """µs per forward of the CNN on a tiny input (B = 2, 4x4), no grad: the binding's fixed cost per call
    (checks, the plan, the target's shadow) is the difference to the plain module."""
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(32, 10)).to(DEVICE)
    x = torch.randn(2, 1, 4, 4, device=DEVICE)
    per = {k: v.detach() + 0.01 * torch.randn(2, *v.shape, device=DEVICE) for k, v in net.named_parameters()}
    shared = {k: v[0] for k, v in per.items()}
    calls = 50  # per timed step, so the clock's resolution does not matter

    def repeat(fn):
        def run():
            with torch.no_grad():
                for _ in range(calls):
                    fn()
        return run

    times = timed_together({"plain": repeat(lambda: net(x)),
                            "shared": repeat(lambda: hn.functional_call(net, shared, (x,))),
                            "per_example": repeat(lambda: hn.functional_call(net, per, (x,), per_example=True))},
                           steps)
    return {k: v * 1e3 / calls for k, v in times.items()}  # ms per 50 calls -> µs per call


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 64, 256],
                        help="per-example batch sizes B")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    args = parser.parse_args(argv)
    global DEVICE
    DEVICE = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    where = torch.cuda.get_device_name() if DEVICE.type == "cuda" else platform.processor() or platform.machine()
    print(f"torch {torch.__version__}, {args.device} ({where}), threads={torch.get_num_threads()}, "
          f"ms per forward+backward (median of {args.steps})")
    for label, rows in (("MLP 256-512-10", mlp_rows), ("CNN 1-16-32-10 on 28x28", cnn_rows)):
        print(f"\n{label}")
        print(f"{'B':>5} {'shared':>9} {'reference':>10} {'ours':>9} {'ours/ref':>9}"
              + (f" {'lora r4':>9} {'lora/shared':>12}" if rows is mlp_rows else ""))
        for b in args.batches:
            r = rows(b, args.steps)
            line = (f"{b:>5} {r['shared']:9.2f} {r['reference']:10.2f} {r['ours']:9.2f} "
                    f"{r['ours'] / r['reference']:9.2f}")
            if "lora_r4" in r:
                line += f" {r['lora_r4']:9.2f} {r['lora_r4'] / r['shared']:12.2f}"
            print(line)
    r = overhead_rows(args.steps)
    print(f"\nFixed cost per call (CNN above, B = 2, 4x4 input, no grad), µs: plain {r['plain']:.0f}, "
          f"shared {r['shared']:.0f} (+{r['shared'] - r['plain']:.0f}), "
          f"per-example {r['per_example']:.0f} (+{r['per_example'] - r['plain']:.0f})")


if __name__ == "__main__":
    main()
