"""Predicted against measured memory of a per-example training step (``HyperNetwork.memory_estimate``).

Run: ``python -m benchmarks.memory [--write docs/benchmarks-memory.md]``.
Predicted: the estimate's ``step`` part (activations and gradients that the step creates, traced
on fake tensors; parameters and optimiser state exist before the step and are arithmetic).
Measured: the peak of the CPU allocator's own allocation and free events during one real step at
the same batch size (``torch.profiler`` with ``profile_memory=True``), after a warm-up step. The
step: the sum of the outputs, the outputs dropped, backward. The goal: within 10%.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn
from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

import hypernetworks as hn


def mlp_case(batch):
    net = nn.Sequential(nn.Linear(64, 256), nn.BatchNorm1d(256), nn.ReLU(), nn.Linear(256, 10))
    spec = hn.ParamSpec.from_module(net, include=["0.*", "3.*"])
    hnet = hn.HyperNetwork(net, spec, encoder=hn.encoders.Embedding(100, 8),
                           head=hn.heads.Chunked(1024, chunk_dim=8, hidden=(64,)))
    return hnet, (torch.randn(batch, 64),), torch.randint(0, 100, (batch,))


def cnn_case(batch):
    net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                        nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10))
    hnet = hn.HyperNetwork(net, encoder=hn.encoders.Scalars(1), head=hn.heads.Full(hidden=(32,)))
    return hnet, (torch.randn(batch, 1, 28, 28),), torch.rand(batch, 1)


def cnn_shared_case(batch):  # one weight set for the batch: plain (ungrouped) convolutions
    hnet, inputs, _ = cnn_case(batch)
    return hnet, inputs, torch.rand(1)


def lora_case(batch):
    net = nn.Sequential(nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 512))
    hnet = hn.HyperNetwork(net, hn.ParamSpec.from_module(net, include=["*.weight"]), mode="lora", rank=8,
                           encoder=hn.encoders.Embedding(64, 16), head=hn.heads.PerTensor(hidden=(32,)),
                           freeze_target=True)
    return hnet, (torch.randn(batch, 64, 512),), torch.randint(0, 64, (batch,))


CASES = {  # name: (builder, batch sizes)
    "MLP 64-256-BN-10, chunked head": (mlp_case, (512, 4096)),
    "CNN 28x28 (2 conv + linear), full head": (cnn_case, (64, 256)),
    "the same CNN, one weight set for the batch": (cnn_shared_case, (256,)),
    "Linear 512-512-512 LoRA r=8, sequence 64": (lora_case, (32, 256)),
}


def step(hnet, inputs, cond) -> None:
    loss = hnet(*inputs, cond=cond).sum()
    loss.backward()


def allocator_peak(fn) -> int:
    """Peak bytes of the CPU allocator's live allocations during ``fn()`` (from the profiler's
    allocation and free events, in time order; what existed before counts as 0)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = []

    def walk(nodes):
        for node in nodes:
            if node.tag == _EventType.Allocation:
                events.append((node.start_time_ns, node.extra_fields.alloc_size))
            walk(node.children)

    walk(prof.profiler.kineto_results.experimental_event_tree())
    live = peak = 0
    for _, size in sorted(events):
        live += size
        peak = max(peak, live)
    return peak


def measure(build, batch: int) -> tuple[dict, int]:
    torch.manual_seed(0)
    hnet, inputs, cond = build(batch)
    step(hnet, inputs, cond)  # warm-up
    hnet.zero_grad(set_to_none=True)
    predicted = hnet.memory_estimate(*inputs, cond=cond)
    measured = allocator_peak(lambda: step(hnet, inputs, cond))
    return predicted, measured


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", default="docs/benchmarks-memory.md", help="markdown file for the table ('' = none)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    lines = [f"torch {torch.__version__}, CPU, threads={torch.get_num_threads()}; per-example weights unless said; "
             "MiB", "",
             "| case | B | parameters | Adam state | step predicted | step measured | predicted / measured |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, (build, batches) in CASES.items():
        for batch in batches:
            p, m = measure(build, batch)
            lines.append(f"| {name} | {batch} | {p['parameters'] / 2**20:.2f} | {p['optimizer'] / 2**20:.2f} | "
                         f"{p['step'] / 2**20:.2f} | {m / 2**20:.2f} | {p['step'] / m:.2f} |")
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    if args.write:
        Path(args.write).write_text("# Memory of a training step: predicted and measured\n\nWritten by "
                                    f"`python -m benchmarks.memory` (run by `make bench`).\n\n{table}\n")


if __name__ == "__main__":
    main()
