"""GHN-2 speed: graph-build time and parameter-prediction time for torchvision resnet50 and vit_b_16.

Run: ``python -m benchmarks.ghn_predict [--threads 1] [--repeats 5]``. The GHN has the default
``GHNConfig`` widened to about 1.6M parameters (the size of the published GHN-2 for ImageNet is larger;
the issue's reference is 0.1 s graph build and 0.24 s prediction for resnet50 with the published code).
Columns (medians over ``--repeats``): ``graph s`` traces the model and ``predict s`` is the rest of
``predict(ghn, model)`` (GHN forward pass writing into the model's parameters), both from the report of the
same calls; ``forward s`` is the GHN forward pass alone on the traced graph, building new tensors (virtual
edges, propagation schedule or distances recomputed, as for a new graph); ``copy s`` copies every
parameter once (``torch.Tensor.copy_``), the floor of writing the predicted parameters, measured in the
same process. A timing is never a test assertion; the first call of a process also imports torch's
meta-kernel machinery (seconds), so it is run once as a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch

from hypernetworks.methods.ghn import GHN, GHNConfig, build_graph, predict

MODELS = {"resnet50": 224, "vit_b_16": 224}


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> None:
    import torchvision

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--encoder", choices=("gated", "transformer"), default="gated",
                        help="GHN-2's gated graph network (1 round) or GHN-3's transformer (3 layers)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rounds = 1 if args.encoder == "gated" else 3
    ghn = GHN(GHNConfig(hidden=128, decoder_hidden=128, block_out=32, block_in=32, kernel=3, encoder=args.encoder,
                        rounds=rounds)).eval()
    n_ghn = sum(p.numel() for p in ghn.parameters())
    print(f"ghn_predict: {args.encoder} GHN of {n_ghn / 1e6:.2f}M parameters, torch threads = "
          f"{torch.get_num_threads()}, medians of {args.repeats} runs")
    print(f"{'model':<10}{'params':>9}{'graph s':>9}{'forward s':>11}{'predict s':>11}{'copy s':>8}{'nodes':>7}"
          "  not predicted")
    for name, side in MODELS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.get_model(name).eval()
        x = torch.zeros(1, 3, side, side)
        graph = build_graph(model, x)  # warm-up
        params = list(model.parameters())

        def forward(graph=graph):
            graph.cache.clear()  # as for a new graph: virtual edges, schedule or distances recomputed
            ghn([graph])

        with torch.no_grad():
            forward()
            t_forward = _time(forward, args.repeats)
            targets = [p.detach().clone() for p in params]
            t_copy = _time(lambda: [t.copy_(p) for t, p in zip(targets, params, strict=True)],  # noqa: B023
                           args.repeats)
        reports = [predict(ghn, model, x) for _ in range(args.repeats)]
        t_graph = statistics.median(r.graph_seconds for r in reports)
        t_predict = statistics.median(r.predict_seconds for r in reports)
        report = reports[-1]
        n = sum(p.numel() for p in params)
        print(f"{name:<10}{n / 1e6:>8.1f}M{t_graph:>9.3f}{t_forward:>11.3f}{t_predict:>11.3f}{t_copy:>8.3f}"
              f"{len(graph):>7}  {len(report.not_predicted)}")


if __name__ == "__main__":
    main()
