"""Split and Permuted Fashion-MNIST task sequences, each task with a validation split carved from
its training data (the only data any knob is chosen on) and a held-out test split.

Task-incremental scenario (CL1 of van de Ven & Tolias, 2019; used by von Oswald et al., ICLR 2020):
the task id is given at training and test time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import load_fashion_mnist


@dataclass
class Task:
    x: torch.Tensor  # (N, 784) training images
    y: torch.Tensor  # (N,) labels within the task: 0..classes_per_task-1
    xv: torch.Tensor  # (V, 784) validation images, carved from the training set, never trained on
    yv: torch.Tensor  # (V,)
    xt: torch.Tensor  # (M, 784) test images
    yt: torch.Tensor  # (M,)


@dataclass
class Benchmark:
    name: str
    tasks: list[Task]
    classes_per_task: int


def split_fashion_mnist(num_tasks: int = 5, n_val: int = 1000) -> Benchmark:
    """Task t holds classes 2t and 2t+1: all their training images but the last ``n_val`` (validation),
    and all their test images (2,000)."""
    if not 1 <= num_tasks <= 5:
        raise ValueError(f"split_fashion_mnist: num_tasks must lie in [1, 5], got {num_tasks}.")
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    x, xt = x.flatten(1), xt.flatten(1)
    tasks = []
    for t in range(num_tasks):
        m, mt = (y // 2 == t), (yt // 2 == t)
        xs, ys = x[m], y[m] - 2 * t  # (12000, 784), (12000,)
        tasks.append(Task(xs[:-n_val], ys[:-n_val], xs[-n_val:], ys[-n_val:], xt[mt], yt[mt] - 2 * t))
    return Benchmark("split", tasks, 2)


def permuted_fashion_mnist(num_tasks: int = 10, n_train: int = 20000, n_val: int = 1000, n_test: int = 1000,
                           seed: int = 0) -> Benchmark:
    """Task t applies a fixed random pixel permutation (task 0: none) to all ten classes; each task
    trains on the first ``n_train`` training images, validates on the next ``n_val`` and tests on the
    first ``n_test`` test images."""
    if n_train + n_val > 60000:
        raise ValueError(f"permuted_fashion_mnist: n_train + n_val must be <= 60000, got {n_train + n_val}.")
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    x, xt, yt = x.flatten(1)[: n_train + n_val], xt.flatten(1)[:n_test], yt[:n_test]
    y = y[: n_train + n_val]
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(num_tasks):
        perm = torch.arange(784) if t == 0 else torch.randperm(784, generator=gen)
        xp = x[:, perm]
        tasks.append(Task(xp[:n_train], y[:n_train], xp[n_train:], y[n_train:], xt[:, perm], yt))
    return Benchmark("permuted", tasks, 10)


def batches(task: Task, batch_size: int, seed: int):
    """Endless random mini-batches of one task's training split."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(task.x), (batch_size,), generator=gen)
        yield task.x[idx], task.y[idx]
