"""Cost of the continual-learning output regulariser vs the number of earlier tasks.

Run: ``python -m benchmarks.continual_regularizer [--threads 1]``. Times forward+backward of
β/(T-1)·Σ_t ‖h(e_t, Θ*) − h(e_t, Θ)‖² computed in one batched pass (ours) and with a Python loop
over the earlier tasks (the baseline), for a hypernetwork generating an MLP 64-100-100-10.
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from benchmarks.binding import timed
from hypernetworks.methods.continual import HyperCL


def learner_with(num_earlier: int, head: str) -> HyperCL:
    target = nn.Sequential(nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 100), nn.ReLU(), nn.Linear(100, 10))
    kwargs = {"head": "chunked", "chunk_size": 2000, "hidden": (100, 100)} if head == "chunked" else \
        {"head": "full", "hidden": (100, 100)}
    learner = HyperCL(target, num_tasks=num_earlier + 1, embedding_dim=8, **kwargs)
    with torch.no_grad():
        learner.targets.copy_(learner.hnet.spec.flatten(learner.generate(torch.arange(num_earlier + 1))) + 0.01)
        learner.learned[:num_earlier] = True
    return learner


def steps_for(learner: HyperCL, n: int):
    """(batched, loop): forward+backward of the regulariser over the ``n`` earlier tasks."""

    def batched():
        learner.regularizer(n).backward()

    def loop():
        total = sum((learner.hnet.spec.flatten(learner.generate(torch.tensor([t]))) - learner.targets[t]).square().sum()
                    for t in range(n)) / n
        total.backward()

    return batched, loop


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per row")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, ms per forward+backward "
          f"(median of {args.steps}); target MLP 64-100-100-10, hypernetwork MLP 100-100")
    print(f"{'head':<8} {'earlier tasks':>13} {'batched':>9} {'loop':>9} {'loop/batched':>13}")
    for head in ("full", "chunked"):
        for n in (1, 4, 9, 19):
            batched, loop = steps_for(learner_with(n, head), n)
            b, lp = timed(batched, args.steps), timed(loop, args.steps)
            print(f"{head:<8} {n:>13} {b:9.2f} {lp:9.2f} {lp / b:13.2f}")


if __name__ == "__main__":
    main()
