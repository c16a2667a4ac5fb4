"""benchmarks/lora_serving compares like with like: on tiny BERT and GPT-2 every variant gives ours'
outputs (and gradients into the factors), and its memory probe sees a dense per-example weight."""

import pytest
import torch

pytest.importorskip("peft")
from benchmarks import lora_serving as ls  # noqa: E402


@pytest.mark.parametrize("name", ["bert", "gpt2"])
def test_variants_agree(name):
    target = ls.load_target(name, tiny=True)
    assert target.layers and all(t == (name == "gpt2") for t in target.layers.values())  # Conv1D in GPT-2
    context = ls.build(target, batch=2, rank=2)
    fns, diffs = ls.check(target, context, seq=4, backward=True)
    assert set(ls.VARIANTS) <= set(fns) and not context["skipped"]
    for key in (*ls.AGREE, "peft_one", "loop_grad", "gather_grad"):
        assert diffs[key] <= ls.TOLERANCE, (key, diffs[key])
    assert diffs["ours_vs_base"] > 0.1  # the LoRA changes the output: a no-op variant cannot pass
    memory = ls.measure_memory(target, ls.step_fns(target, fns, context, backward=False), batch=2)
    assert memory["ours"][1] is None and memory["gather"][1] is None


def test_probe_sees_a_dense_weight():
    target = ls.load_target("bert", tiny=True)
    factors = ls.make_factors(target, batch=2, rank=2)
    name = next(iter(factors))
    dense = {"dense": lambda: torch.bmm(factors[name].B, factors[name].A)}  # (B, O, I)
    (peak, shape), = ls.measure_memory(target, dense, batch=2).values()
    assert shape == (2, *target.shapes[name.removesuffix(".weight")]) and peak > 0


def test_sweep_rows_plot(tmp_path):
    target = ls.load_target("gpt2", tiny=True)
    args = type("Args", (), {"steps": 1, "warmup": 0})()
    rows = [ls.run_row(target, ls.build(target, batch=b, rank=2), seq=4, rank=2, backward=False, args=args)
            for b in (1, 2)]
    assert all("ours" in r["ms"] and "error" not in r for r in rows)
    ls.plot(rows, str(tmp_path / "serving.png"))
    assert (tmp_path / "serving.png").stat().st_size > 1000
