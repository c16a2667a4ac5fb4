"""Pieces every reproduction shares: running its jobs (with progress, and resumable), and its plots."""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import pickle
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobSettings:
    """How ``run_jobs`` runs, set by the command line for one reproduction (``job_settings``).

    Attributes:
        store: folder where each finished job's result is kept (None: kept nowhere).
        resume: reuse results found in ``store`` instead of running those jobs again.
        workers: processes, overriding the reproduction's own choice (None: its own).
        label: the name shown in progress lines.
        backend: ``"processes"`` (a local process pool) or ``"ray"`` (Ray tasks, locally or on a cluster).
        address: the Ray cluster to join (``ray.init(address=...)``; None: a local instance).
        seeds: evaluation seeds, overriding the reproduction's own count (None: its own; see ``configured``).
    """

    store: Path | None = None
    resume: bool = False
    workers: int | None = None
    label: str = "jobs"
    backend: str = "processes"
    address: str | None = None
    seeds: int | None = None

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"JobSettings: backend must be one of {BACKENDS}, got {self.backend!r}.")
        if self.seeds is not None and self.seeds < 1:
            raise ValueError(f"JobSettings: seeds must be >= 1, got {self.seeds}.")


BACKENDS = ("processes", "ray")
_settings: contextvars.ContextVar[JobSettings | None] = contextvars.ContextVar("job_settings", default=None)


@contextlib.contextmanager
def job_settings(settings: JobSettings) -> Iterator[None]:
    """Run the enclosed reproduction's ``run_jobs`` calls with ``settings``."""
    token = _settings.set(settings)
    try:
        yield
    finally:
        _settings.reset(token)


def sweep_lines(title: str, names: dict, models, sweep: list[dict], score: str, cell: Callable[[float], str],
                width: int) -> list[str]:
    """A learning-rate sweep as table lines: a row per model (``names[kind]``, ``width`` wide), a column
    per rate, ``cell(value)`` of each run's ``score``, the best rate per model marked *."""
    lrs = sorted({r["lr"] for r in sweep})
    col = len(cell(0.0)) + 1
    lines = ["", title, f"{'model':<{width}} " + " ".join(f"{lr:>{col}.0e}" for lr in lrs)]
    for kind in models:
        values = {r["lr"]: r[score] for r in sweep if r["kind"] == kind}
        best = max(values, key=lambda lr: values[lr])
        lines.append(f"{names[kind]:<{width}} " + " ".join(f"{cell(values[lr])}{'*' if lr == best else ' '}"
                                                           for lr in lrs))
    return lines


def configured(cfg: dict) -> dict:
    """A reproduction's configuration with the command line's ``--seeds N`` applied: its ``"seeds"``
    entry (a count, a tuple of seeds, or a dict of counts per part) becomes N, seeds 0..N-1, or N for
    every part. A copy; ``cfg`` is left as it is."""
    settings = _settings.get() or JobSettings()
    if settings.seeds is None:
        return dict(cfg)
    if "seeds" not in cfg:
        raise ValueError("--seeds: this reproduction has no seed count to override.")
    seeds, n = cfg["seeds"], settings.seeds
    new = {k: n for k in seeds} if isinstance(seeds, dict) else tuple(range(n)) if isinstance(seeds, tuple) else n
    return {**cfg, "seeds": new}


def _key(fn: Callable, job) -> str | None:
    """A name for a job's stored result: its function and arguments, hashed (None if not picklable)."""
    try:
        blob = pickle.dumps((fn.__module__, fn.__qualname__, job))
    except (pickle.PicklingError, TypeError, AttributeError):
        return None
    return hashlib.sha256(blob).hexdigest()[:24]


log = logging.getLogger("hypernetworks.experiments")


class _Progress:
    """A bar with an ETA on a terminal; otherwise one ``logging`` line per finished job (the CLI shows them)."""

    def __init__(self, label: str, total: int, done: int):
        self.label, self.total, self.done, self.start = label, total, done, time.time()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=label, ncols=80, leave=True)
        elif done:
            log.info("%s: %d/%d jobs found in the store", label, done, total)

    def step(self, ran: int) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.update(1)
            return
        elapsed = time.time() - self.start
        eta = elapsed / ran * (self.total - self.done)
        log.info("%s: job %d/%d done (%.0f s, about %.0f s left)", self.label, self.done, self.total, elapsed, eta)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_jobs(fn: Callable, jobs: Sequence, workers: int) -> list:
    """``[fn(job) for job in jobs]``, spread over ``workers`` processes when more than one.

    Shows progress; under ``job_settings`` with a store, each result is saved as its job finishes and,
    with ``resume``, a result already there is used instead of running its job again (the list
    returned is the same either way).
    """
    settings = _settings.get() or JobSettings()
    workers = settings.workers or workers
    store = settings.store
    keys = [_key(fn, job) if store else None for job in jobs]
    results: list = [None] * len(jobs)
    todo = []
    for i, key in enumerate(keys):
        path = None if key is None or store is None else store / f"{key}.pkl"
        if settings.resume and path is not None and path.exists():
            results[i] = pickle.loads(path.read_bytes())
        else:
            todo.append(i)
    progress = _Progress(settings.label, len(jobs), len(jobs) - len(todo))
    ran = 0

    def finished(i: int, result) -> None:
        nonlocal ran
        results[i], ran = result, ran + 1
        if keys[i] is not None and store is not None:
            store.mkdir(parents=True, exist_ok=True)
            tmp = store / f"{keys[i]}.tmp"
            tmp.write_bytes(pickle.dumps(result))
            tmp.replace(store / f"{keys[i]}.pkl")  # whole or absent, even if interrupted
        progress.step(ran)

    try:
        if settings.backend == "ray":
            for i, result in _ray_results(fn, jobs, todo, settings.address):
                finished(i, result)
        elif workers <= 1:
            for i in todo:
                finished(i, fn(jobs[i]))
        else:
            with ProcessPoolExecutor(workers) as pool:
                futures = {pool.submit(fn, jobs[i]): i for i in todo}
                for future in as_completed(futures):
                    finished(futures[future], future.result())
    finally:
        progress.close()
    return results


def _ray_results(fn: Callable, jobs: Sequence, todo: list[int], address: str | None) -> Iterator[tuple[int, object]]:
    """``(index, fn(job))`` as Ray tasks finish (the ``ray`` extra); Ray is started locally when no
    instance is running and no ``address`` is given, and left running for the next call."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    task = ray.remote(fn)
    pending = {task.remote(jobs[i]): i for i in todo}  # pyright: ignore[reportCallIssue]  (ray's stubs: no args)
    while pending:
        (done,), _ = ray.wait(list(pending), num_returns=1)
        yield pending.pop(done), ray.get(done)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (imported on first use)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
