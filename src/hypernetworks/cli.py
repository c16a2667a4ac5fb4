"""Command line: ``hypernetworks demo``, ``hypernetworks reproduce NAME [--quick]``, ``hypernetworks list``,
``hypernetworks methods [PATTERN] [-v]``, ``hypernetworks ghn predict --model NAME``,
``hypernetworks results render [--check]``."""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from . import __version__, experiments
from .experiments._common import JobSettings, job_settings

if TYPE_CHECKING:
    from tqdm import tqdm


def _provenance() -> dict[str, Any]:
    here = Path(__file__).parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=here).stdout.strip() or None
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
                                 capture_output=True, text=True, cwd=here).stdout.split("\n")
    except OSError:
        commit, changed = None, []
    dirty = [line[3:] for line in changed if line.strip()]  # the package's tracked files changed since the commit
    return {"hypernetworks": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(), "commit": commit,
            "uncommitted": dirty}


def _progress(**kwargs: Any) -> tqdm:
    from tqdm import tqdm

    return tqdm(leave=True, ncols=80, **kwargs)


def demo(args: argparse.Namespace) -> None:
    from .experiments import demo as demo_run

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, provenance = time.time(), _provenance()
    print(f"hypernetworks demo: γ-conditioned Fashion-MNIST classifier, plain vs MIP "
          f"({args.steps} steps, {args.optimizer}, seed {args.seed}, {args.threads} thread(s))")
    res = demo_run.run(args.steps, args.seed, args.optimizer, out, _progress)
    print("\n" + demo_run.table(res["results"]))
    record = {"command": "hypernetworks demo " + " ".join(sys.argv[2:]), "args": vars(args) | {"func": None},
              "wall_s": round(time.time() - start, 1), **provenance, **res}
    (out / "demo.json").write_text(json.dumps(record, indent=1, default=str))
    print(f"\nwrote {out / 'demo.json'} and {res['plot']} ({record['wall_s']} s)")


def reproduce(args: argparse.Namespace) -> None:
    module = experiments.get(args.name)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start, provenance = time.time(), _provenance()  # the code that runs, before anything changes
    # kept per commit, so --resume never mixes results of different code (uncommitted edits aside)
    store = out / ".jobs" / f"{args.name}{'-quick' if args.quick else ''}" / (provenance["commit"] or "unknown")
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # the job runner's progress lines
    settings = JobSettings(store=store, resume=args.resume, workers=args.workers, label=args.name,
                           backend=args.backend, address=args.address, seeds=args.seeds)
    with job_settings(settings):
        res = module.run(args.quick, out)
    if not res.get("claims"):
        raise RuntimeError(f"reproduce {args.name}: run() returned no claims; build them with "
                           "hypernetworks.experiments._claims so the verdicts are computed.")
    status = "quick" if args.quick else "main"
    record = {"name": args.name, "status": status, "quick": args.quick,
              "command": f"hypernetworks reproduce {args.name}" + (" --quick" if args.quick else "")
              + (f" --seeds {args.seeds}" if args.seeds else ""),
              "wall_s": round(time.time() - start, 1), **provenance, **res}
    path = out / f"{args.name}{'-quick' if args.quick else ''}.json"
    path.write_text(json.dumps(record, indent=1, default=str))
    print(res["table"])
    print(f"\nwrote {path} and {res['plot']} ({record['wall_s']} s)")


def results_render(args: argparse.Namespace) -> None:
    from .experiments._docs import blocks, render

    path = Path(args.docs)
    text = path.read_text()
    new = render(text, Path(args.json_dir))
    names = ", ".join(blocks(text)) or "none"
    if args.check:
        if new != text:
            sys.exit(f"results render --check: {path} differs from what {args.json_dir}/*.json renders "
                     f"(blocks: {names}); run `hypernetworks results render` and commit the result.")
        print(f"{path} matches {args.json_dir}/*.json (blocks: {names})")
        return
    path.write_text(new)
    print(f"rendered {path} from {args.json_dir}/*.json (blocks: {names})")


def ghn_predict(args: argparse.Namespace) -> None:
    import torchvision

    from .methods.ghn import load_pretrained, predict

    torch.set_num_threads(args.threads)
    options = {"num_classes": args.classes}
    if "weights_backbone" in inspect.signature(torchvision.models.get_model_builder(args.model)).parameters:
        options["weights_backbone"] = None  # detection / segmentation: nothing may be downloaded
    model = torchvision.models.get_model(args.model, weights=None, **options)
    ghn = load_pretrained(args.checkpoint) if args.checkpoint else load_pretrained()
    report = predict(ghn, model, torch.zeros(1, args.channels, args.size, args.size))
    n = sum(p.numel() for p in model.parameters())
    print(f"ghn predict {args.model}: {n / 1e6:.2f}M parameters; {report.summary()}")
    for name, why in report.not_predicted.items():
        print(f"  not predicted: {name} ({why})")
    if args.out:
        torch.save(model.state_dict(), args.out)
        print(f"wrote {args.out}")


def methods_list(args: argparse.Namespace) -> None:
    """One line per registered method matching the pattern: how ``methods.create`` builds it; with
    ``-v`` its config's fields and defaults."""
    import dataclasses

    from . import methods

    names = methods.list_methods(args.pattern)
    if not names:
        raise SystemExit(f"hypernetworks methods: no method matches {args.pattern!r}; known: {methods.list_methods()}.")
    for name in names:
        m = methods.get_method(name)
        keywords = "".join(f", {k}=..." for k in methods.keyword_arguments(m.builder))
        call = f"create({name!r}, {'target, ' if m.takes_target else ''}**{m.config.__name__}{keywords})"
        print(f"{name:<13} {call:<52} {m.summary}")
        if args.verbose:
            for f in dataclasses.fields(m.config):
                factory = f.default_factory
                default = f.default if factory is dataclasses.MISSING else factory()
                print(f"    {f.name} = {default!r}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="hypernetworks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train plain and MIP hypernetworks on Fashion-MNIST and print a table (~1 min)")
    p.add_argument("--steps", type=int, default=2000, help="training steps per model (batch 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation and data order")
    p.add_argument("--optimizer", default="adam-1e-4", choices=["adam-1e-4", "adam-1e-3", "adam-1e-2", "sgdm-1e-2",
                                                                 "sgdm-1e-1"], help="optimiser and learning rate")
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)")
    p.add_argument("--out", default="results/demo", help="folder for demo.json and demo.png")
    p.set_defaults(func=demo)
    p = sub.add_parser("reproduce", help="run a registered reproduction")
    p.add_argument("name", help=f"one of {sorted(experiments.REPRODUCTIONS)}")
    p.add_argument("--quick", action="store_true", help="seconds-long run that checks the pipeline, not the claim")
    p.add_argument("--out", default="results", help="folder for NAME.json and the plot")
    p.add_argument("--resume", action="store_true",
                   help="reuse the results of jobs an interrupted run finished (kept in OUT/.jobs/NAME)")
    p.add_argument("--workers", type=int, default=None, help="processes for the jobs (default: the reproduction's)")
    p.add_argument("--seeds", type=int, default=None,
                   help="evaluation seeds 0..N-1 instead of the reproduction's own (verdicts use what ran)")
    p.add_argument("--backend", choices=["processes", "ray"], default="processes",
                   help="run the jobs in a local process pool, or as Ray tasks (the 'ray' extra)")
    p.add_argument("--address", default=None, help="with --backend ray: the cluster to join (default: local)")
    p.set_defaults(func=reproduce)
    p = sub.add_parser("methods", help="list the methods hypernetworks.methods.create builds, and their options")
    p.add_argument("pattern", nargs="?", default="*", help="shell-style pattern over the names, e.g. 'hyper*'")
    p.add_argument("-v", "--verbose", action="store_true", help="also print each method's config fields and defaults")
    p.set_defaults(func=methods_list)
    p = sub.add_parser("ghn", help="graph hypernetwork tools")
    ghn_sub = p.add_subparsers(dest="ghn_command", required=True)
    q = ghn_sub.add_parser("predict", help="predict all parameters of a torchvision model with the shipped GHN")
    q.add_argument("--model", required=True, help="torchvision model name, e.g. resnet18, vit_b_16")
    q.add_argument("--classes", type=int, default=1000, help="number of classes of the model")
    q.add_argument("--channels", type=int, default=3, help="input channels of the example input")
    q.add_argument("--size", type=int, default=224, help="input side of the example input")
    q.add_argument("--checkpoint", default=None, help="GHN checkpoint (default: the shipped one)")
    q.add_argument("--out", default=None, help="save the predicted state_dict here")
    q.add_argument("--threads", type=int, default=1, help="torch threads")
    q.set_defaults(func=ghn_predict)
    p = sub.add_parser("results", help="results documentation tools")
    res_sub = p.add_subparsers(dest="results_command", required=True)
    q = res_sub.add_parser("render", help="re-render the <!-- claims:NAME --> blocks of the docs from committed JSON")
    q.add_argument("--docs", default="docs/results.md", help="markdown file holding the claims blocks")
    q.add_argument("--json-dir", default="docs/results", help="folder of the committed NAME.json of full runs")
    q.add_argument("--check", action="store_true", help="change nothing; exit non-zero if the docs are stale")
    q.set_defaults(func=results_render)
    p = sub.add_parser("list", help="list reproductions")
    p.set_defaults(func=lambda a: print("\n".join(sorted(experiments.REPRODUCTIONS))))
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
