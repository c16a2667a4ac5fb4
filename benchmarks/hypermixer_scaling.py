"""HyperMixer vs self-attention token mixing: time and memory against sequence length.

Run: ``python -m benchmarks.hypermixer_scaling [--threads 1]``. One mixing layer (dim 64, batch 4),
forward+backward; memory = bytes autograd saves for backward. The claim (Mai et al., ACL 2023):
HyperMixer grows linearly in N, attention quadratically; compare t(4N)/t(N) (4 = linear, 16 = quadratic).
"""

from __future__ import annotations

import argparse

import torch

from benchmarks.binding import timed
from benchmarks.peers import saved_bytes
from hypernetworks.layers import AttentionMixing, HyperMixing


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row")
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096], help="sequence lengths N")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dim, batch = 64, 4
    layers = {"hypermixer": HyperMixing(dim, 64), "attention": AttentionMixing(dim, heads=1)}
    print(f"torch {torch.__version__}, threads={torch.get_num_threads()}, dim {dim}, batch {batch}, "
          f"ms per forward+backward (median of {args.steps})")
    print(f"{'N':>6} " + " ".join(f"{name + ' ms':>15} {name + ' MiB':>16}" for name in layers))
    times = {name: [] for name in layers}
    for n in args.lengths:
        x = torch.randn(batch, n, dim, requires_grad=True)
        row = []
        for name, layer in layers.items():
            t = timed(lambda layer=layer, x=x: layer(x).square().mean().backward(), args.steps, warmup=2)
            mib = saved_bytes(lambda layer=layer, x=x: layer(x).square().mean()) / 2**20
            times[name].append(t)
            row.append(f"{t:15.2f} {mib:16.2f}")
        print(f"{n:>6} " + " ".join(row))
    for name, ts in times.items():
        ratios = ", ".join(f"{b / a:.1f}" for a, b in zip(ts, ts[1:], strict=False))
        print(f"{name}: t(4N)/t(N) = {ratios}")


if __name__ == "__main__":
    main()
