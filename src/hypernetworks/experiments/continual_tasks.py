"""Split and Permuted Fashion-MNIST task sequences, and the three evaluation scenarios.

Scenarios (van de Ven & Tolias, 2019; used by von Oswald et al., ICLR 2020):
CL1 task-incremental (task id given), CL2 domain-incremental (one shared output, task id not
given), CL3 class-incremental (the model must also tell which task's classes an input belongs to).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..data import load_fashion_mnist


@dataclass
class Task:
    x: torch.Tensor  # (N, 784) training images
    y: torch.Tensor  # (N,) labels within the task: 0..classes_per_task-1
    xt: torch.Tensor  # test images
    yt: torch.Tensor  # test labels within the task
    offset: int  # global label = offset + local label (class-incremental scenario)


@dataclass
class Benchmark:
    name: str
    tasks: list[Task]
    classes_per_task: int
    scenarios: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        """Outputs of a single head that covers every task's classes (CL3)."""
        return self.classes_per_task * len(self.tasks)


def split_fashion_mnist(num_tasks: int = 5, n_test: int = 1000) -> Benchmark:
    """Task t holds classes 2t and 2t+1."""
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    x, xt = x.flatten(1), xt.flatten(1)
    tasks = []
    for t in range(num_tasks):
        m, mt = (y // 2 == t), (yt // 2 == t)
        tasks.append(Task(x[m], y[m] - 2 * t, xt[mt][:n_test], yt[mt][:n_test] - 2 * t, 2 * t))
    return Benchmark("split", tasks, 2, ("CL1", "CL2", "CL3"))


def permuted_fashion_mnist(num_tasks: int = 10, n_test: int = 1000, n_train: int = 20000, seed: int = 0) -> Benchmark:
    """Task t applies a fixed random pixel permutation (task 0: none) to all ten classes; each task
    trains on the first ``n_train`` training images."""
    x, y = load_fashion_mnist("train")
    xt, yt = load_fashion_mnist("test")
    x, y, xt = x.flatten(1)[:n_train], y[:n_train], xt.flatten(1)[:n_test]
    gen = torch.Generator().manual_seed(seed)
    tasks = []
    for t in range(num_tasks):
        perm = torch.arange(784) if t == 0 else torch.randperm(784, generator=gen)
        tasks.append(Task(x[:, perm], y, xt[:, perm], yt[:n_test], 10 * t))
    return Benchmark("permuted", tasks, 10, ("CL1", "CL2"))


def batches(task: Task, batch_size: int, seed: int):
    """Endless random mini-batches of one task (local labels)."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(task.x), (batch_size,), generator=gen)
        yield task.x[idx], task.y[idx]


def global_batches(task: Task, batch_size: int, seed: int):
    """As ``batches``, with class-incremental (global) labels."""
    for x, y in batches(task, batch_size, seed):
        yield x, y + task.offset
