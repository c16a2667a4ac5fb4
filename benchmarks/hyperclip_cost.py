"""Training cost of HyperCLIP vs the plain SigLIP model of the same and of matched size.

Run: ``python -m benchmarks.hyperclip_cost [--steps 50]``. The three models are timed interleaved
step by step in one process (so load changes on a shared machine hit all alike): median ms per
training step (forward, backward, Adam), batch 128, a 4-class task, and the ratio to the plain
model. Nothing here is a test.
"""

from __future__ import annotations

import argparse

import torch

from hypernetworks.methods.hyperclip import HyperCLIP, siglip_loss

from .binding import timed_together


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per model")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    models = {"plain, width 8": HyperCLIP(width=8, hypernetwork=False),
              "plain, width 16 (matched)": HyperCLIP(width=16, hypernetwork=False),
              "HyperCLIP, width 8": HyperCLIP(width=8)}
    text = torch.nn.functional.normalize(torch.randn(4, 384), dim=-1)  # (classes, text features)
    x, y = torch.randn(128, 1, 28, 28), torch.randint(0, 4, (128,))

    def step(model, opt):
        def run():
            loss = siglip_loss(model(x, text), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return run

    fns = {name: step(m, torch.optim.Adam(m.parameters(), 2e-3)) for name, m in models.items()}
    ms = timed_together(fns, args.steps, warmup=10)
    base = ms["plain, width 8"]
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, ms per training step "
          f"(median of {args.steps}, interleaved)")
    for name, t in ms.items():
        print(f"{name:<28} {t:8.1f} {t / base:6.2f}x")


if __name__ == "__main__":
    main()
