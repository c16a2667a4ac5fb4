import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from hypernetworks.methods.continual import HyperCL, HyperCLConfig, MultiHead, RegularizedCL
from hypernetworks.methods.continual.hypercl import _adam_lookahead


def digits_tasks():
    """Two tasks from scikit-learn digits: 0 vs 1 and 2 vs 3 (local labels 0/1)."""
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32) / 16
    y = torch.tensor(d.target)
    tasks = []
    for t in range(2):
        m = (y // 2 == t) & (y < 4)
        tasks.append((x[m], y[m] - 2 * t))
    return tasks


def target():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))


def loader(task, batch=32):
    x, y = task
    return [(x[i:i + batch], y[i:i + batch]) for i in range(0, len(x), batch)]


def flat(learner, ids):
    """(T, P) flat weights the learner generates for task ``ids`` (T,)."""
    return learner.hnet.spec.flatten(learner.generate(ids))


def test_regulariser_is_batched_mean_over_earlier_tasks():
    torch.manual_seed(0)
    learner = HyperCL(target(), num_tasks=4, hidden=(8,))
    tasks = digits_tasks()
    learner.fit(loader(tasks[0]), 0, steps=3)
    learner.fit(loader(tasks[1]), 1, steps=3)
    with torch.no_grad():  # targets are snapshotted at the start of fit; move away from them
        learner.targets.copy_(flat(learner, torch.arange(4)) + torch.randn(4, learner.hnet.num_generated))
    loop = sum((flat(learner, torch.tensor([t])) - learner.targets[t]).square().sum() for t in (0, 1)) / 2
    torch.testing.assert_close(learner.regularizer(task_id=2), loop)
    assert learner.regularizer(task_id=0).item() == pytest.approx(
        (flat(learner, torch.tensor([1])) - learner.targets[1]).square().sum().item(), rel=1e-5)


def test_output_regulariser_protects_earlier_tasks_and_beta_zero_forgets():
    tasks = digits_tasks()
    drift, acc = {}, {}
    for beta in (0.0, 1.0):
        torch.manual_seed(0)
        learner = HyperCL(target(), num_tasks=2, hidden=(16,), beta=beta, lr=3e-3)
        learner.fit(loader(tasks[0]), 0, epochs=8)
        before = learner.hnet.spec.flatten(learner.hnet.generate(torch.tensor(0))).detach().clone()
        acc_before = (learner(tasks[0][0], 0).argmax(1) == tasks[0][1]).float().mean().item()
        learner.fit(loader(tasks[1]), 1, epochs=8)
        after = learner.hnet.spec.flatten(learner.hnet.generate(torch.tensor(0)))
        drift[beta] = (after - before).norm().item() / before.norm().item()
        acc[beta] = (learner(tasks[0][0], 0).argmax(1) == tasks[0][1]).float().mean().item()
        assert acc_before > 0.95
        assert (learner(tasks[1][0], 1).argmax(1) == tasks[1][1]).float().mean() > 0.95
    assert drift[1.0] < drift[0.0] / 5
    assert acc[1.0] > 0.95


def test_only_the_current_task_embedding_moves():
    torch.manual_seed(0)
    learner = HyperCL(target(), num_tasks=3, hidden=(8,))
    table = learner.hnet.encoder.table.weight
    before = table.detach().clone()
    learner.fit(loader(digits_tasks()[0]), 1, steps=5)
    assert torch.equal(table[0], before[0]) and torch.equal(table[2], before[2])
    assert not torch.equal(table[1], before[1])
    assert learner.learned_tasks == [1]


def test_lookahead_equals_the_adam_step():
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(5))
    opt = torch.optim.Adam([p], lr=0.1, fused=True)
    for _ in range(3):  # warm state, then compare one more step
        opt.zero_grad()
        (p.sin().sum()).backward()
        delta = _adam_lookahead(opt, {"p": p})["p"]
        before = p.detach().clone()
        opt.step()
        torch.testing.assert_close(p.detach() - before, delta)


def test_checkpoint_mid_sequence_gives_identical_predictions(tmp_path):
    torch.manual_seed(0)
    tasks = digits_tasks()
    learner = HyperCL(target(), num_tasks=3, hidden=(8,), lookahead=True)
    learner.fit(loader(tasks[0]), 0, steps=10)
    learner.fit(loader(tasks[1]), 1, steps=10)
    torch.save(learner.state_dict(), tmp_path / "cl.pt")
    fresh = HyperCL(target(), num_tasks=3, hidden=(8,), lookahead=True)
    fresh.load_state_dict(torch.load(tmp_path / "cl.pt"))
    x = tasks[1][0]
    assert torch.equal(fresh(x, 1), learner(x, 1))
    assert torch.equal(fresh(x), learner(x))  # inferred task
    assert fresh.learned_tasks == [0, 1]
    torch.testing.assert_close(fresh.regularizer(2), learner.regularizer(2))


def test_infer_task_and_errors():
    torch.manual_seed(0)
    learner = HyperCL(target(), num_tasks=3, hidden=(8,))
    with pytest.raises(RuntimeError, match="no task has been learned"):
        learner.infer_task(torch.randn(2, 64))
    tasks = digits_tasks()
    learner.fit(loader(tasks[0]), 0, steps=20)
    learner.fit(loader(tasks[1]), 2, steps=20)
    ids = learner.infer_task(torch.cat([tasks[0][0], tasks[1][0]]))
    assert set(ids.tolist()) <= {0, 2}
    with pytest.raises(ValueError, match=r"task_id must lie in \[0, 3\)"):
        learner.fit(loader(tasks[0]), 3, steps=1)
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        learner.fit(loader(tasks[0]), 0)
    with pytest.raises(ValueError, match="head must be one of"):
        HyperCLConfig(head="perlayer")


def test_ewc_penalty_matches_the_explicit_sum():
    torch.manual_seed(0)
    model = target()
    learner = RegularizedCL(model, "ewc", strength=2.0)
    tasks = digits_tasks()
    anchors, fishers = [], []
    for t in range(2):
        learner.fit(loader(tasks[t]), t, steps=5)
        anchors.append({n: p.detach().clone() for n, p in model.named_parameters()})
        fishers.append({n: w.clone() for n, w in learner.importance.items()})
    fishers[1] = {n: fishers[1][n] - fishers[0][n] for n in fishers[0]}
    theta = {n: p.detach() + 0.1 * torch.randn_like(p) for n, p in model.named_parameters()}

    def explicit(th):
        return sum(0.5 * 2.0 * (f[n] * (th[n] - a[n]).square()).sum() for f, a in zip(fishers, anchors, strict=True)
                   for n in th)

    def ours(th):
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(th[n])
        return learner.penalty()

    base = {n: a.clone() for n, a in anchors[1].items()}
    torch.testing.assert_close(ours(theta) - ours(base), explicit(theta) - explicit(base), rtol=1e-4, atol=1e-6)


def test_si_and_online_ewc_penalties_are_anchored():
    tasks = digits_tasks()
    for method in ("si", "online_ewc"):
        torch.manual_seed(0)
        model = target()
        learner = RegularizedCL(model, method, strength=10.0 if method == "si" else 1e4)
        learner.fit(loader(tasks[0]), 0, epochs=3)
        assert learner.penalty().abs().item() < 1e-3  # zero at the anchor
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05)
        assert learner.penalty().item() > 1e-4  # and positive away from it


def test_multi_head_with_per_example_task_ids():
    torch.manual_seed(0)
    model = MultiHead(nn.Linear(4, 3), 3, 2, num_heads=3)
    x = torch.randn(5, 4)
    ids = torch.tensor([0, 2, 1, 2, 0])
    out = model(x, ids)
    for i in range(5):
        torch.testing.assert_close(out[i], model(x[i:i + 1], int(ids[i]))[0])
    with pytest.raises(ValueError, match="needs task_id"):
        RegularizedCL(model, multi_head=True)(x)

