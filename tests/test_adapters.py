"""Generated adapters (HyperFormer / Text-to-LoRA style) and HyperSteer."""

import pytest
import torch
from torch import nn

from hypernetworks.methods import get_method
from hypernetworks.methods.adapters import (
    AdapterConfig,
    HyperSteer,
    SteerConfig,
    add_steering,
    export_peft,
    hyperformer,
    lora_spec,
    mean_difference,
    module_layout,
    text_to_lora,
)
from hypernetworks.spec import NoMatchingParamsError

torch.set_num_threads(1)


def tiny_bert(seed=0):
    from transformers import BertConfig, BertModel

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     max_position_embeddings=32)
    return BertModel(cfg).eval()


def batch():
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 50, (3, 7), generator=gen)
    mask = torch.ones(3, 7, dtype=torch.long)
    mask[0, 5:] = 0
    return ids, mask


def perturb(model, scale=0.3):
    """Move every trainable parameter off its init, so no test passes on the zero-delta start alone."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("build", ["text", "task_with_norms"])
def test_zero_delta_start_and_per_example_batch(build):
    bert = tiny_bert()
    ids, mask = batch()
    base = bert(ids, attention_mask=mask).last_hidden_state
    if build == "text":
        model = text_to_lora(bert, AdapterConfig(cond_features=8, target_modules=["query", "value", "dense"], rank=4))
        cond = torch.randn(3, 8, generator=torch.Generator().manual_seed(3))
    else:
        model = hyperformer(bert, AdapterConfig(num_tasks=3, target_modules=r".*\.(query|value)", rank=2,
                                                norm_modules=["LayerNorm"]))
        cond = torch.tensor([0, 2, 1])
    assert all(not p.requires_grad for p in bert.parameters())
    out = model(ids, cond=cond, attention_mask=mask).last_hidden_state
    assert torch.equal(out, base)  # frozen model unchanged at step 0
    out.pow(2).sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters() if p.requires_grad)
    perturb(model)
    out = model(ids, cond=cond, attention_mask=mask).last_hidden_state
    assert (out - base).abs().max() > 1e-2
    one_by_one = torch.cat([model(ids[i:i + 1], cond=cond[i], attention_mask=mask[i:i + 1]).last_hidden_state
                            for i in range(3)])
    torch.testing.assert_close(out, one_by_one, atol=1e-4, rtol=1e-4)


def test_per_example_never_builds_dense_delta(monkeypatch):
    from hypernetworks import _kernels

    def fail(self):
        raise AssertionError("a (B, O, I) weight was materialised")

    monkeypatch.setattr(_kernels.LowRankWeight, "dense", fail)
    model = text_to_lora(tiny_bert(), AdapterConfig(cond_features=8, target_modules=["query", "value"]))
    ids, mask = batch()
    model(ids, cond=torch.randn(3, 8), attention_mask=mask)


def test_layer_and_type_embeddings_tell_modules_apart():
    model = hyperformer(tiny_bert(), AdapterConfig(num_tasks=2, target_modules=["query", "value"], rank=2))
    perturb(model)
    lora = model.generate(torch.tensor(0))["lora"]
    b0 = lora["encoder.layer.0.attention.self.query.weight"].B
    b1 = lora["encoder.layer.1.attention.self.query.weight"].B
    assert b0.shape == (16, 2) and not torch.allclose(b0, b1)
    head = model.lora.head
    assert head.layer_ids.tolist() == [0, 0, 1, 1] and head.type_ids.tolist() == [0, 1, 0, 1]


def test_module_layout():
    layers, types = module_layout(["encoder.layer.3.attention.self.query", "h.10.mlp.fc", "lm_head", "0"])
    assert layers == [3, 10, 0, 0]
    assert types == ["attention.self.query", "mlp.fc", "lm_head", "0"]


def test_target_modules_follow_peft_rules():
    bert = tiny_bert()
    listed = lora_spec(bert, ["query"]).names
    assert listed == ["encoder.layer.0.attention.self.query.weight", "encoder.layer.1.attention.self.query.weight"]
    assert lora_spec(bert, r"encoder\.layer\.1\.attention\.self\.query").names == listed[1:]
    assert lora_spec(bert, ["query"], exclude_modules=["encoder.layer.0.attention.self.query"]).names == listed[1:]
    with pytest.raises(NoMatchingParamsError, match="selected no parameter"):
        lora_spec(bert, ["nope"])
    with pytest.raises(NoMatchingParamsError, match="LoRA needs weights"):
        lora_spec(bert, ["LayerNorm"])


def test_peft_export_loads_and_matches(tmp_path):
    import peft

    bert = tiny_bert()
    model = text_to_lora(bert, AdapterConfig(cond_features=8, target_modules=["query", "value", "dense"], rank=3))
    perturb(model)
    cond = torch.randn(8, generator=torch.Generator().manual_seed(4))
    path = export_peft(model, cond, tmp_path / "adapter")
    assert (path / "adapter_config.json").exists() and (path / "adapter_model.safetensors").exists()
    loaded = peft.PeftModel.from_pretrained(tiny_bert(), path).eval()
    ids, mask = batch()
    with torch.no_grad():
        want = model(ids, cond=cond, attention_mask=mask).last_hidden_state
        got = loaded(ids, attention_mask=mask).last_hidden_state
        base = bert(ids, attention_mask=mask).last_hidden_state
    assert (want - base).abs().max() > 1e-2
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="export_peft: needs one condition"):
        export_peft(model, cond[None], tmp_path / "x")
    normed = hyperformer(tiny_bert(), AdapterConfig(num_tasks=2, norm_modules=["LayerNorm"]))
    with pytest.raises(ValueError, match="LayerNorm shifts"):
        export_peft(normed, torch.tensor(0), tmp_path / "y")


def test_plain_pytorch_target_and_export(tmp_path):
    import peft

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    model = hyperformer(net, AdapterConfig(num_tasks=4, target_modules=["0", "2"], rank=2))
    perturb(model)
    x, tasks = torch.randn(4, 5), torch.tensor([3, 1, 0, 2])
    out = model(x, cond=tasks)
    one_by_one = torch.cat([model(x[i:i + 1], cond=tasks[i]) for i in range(4)])
    torch.testing.assert_close(out, one_by_one, rtol=1e-4, atol=1e-4)
    fresh = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 3))
    fresh.load_state_dict(net.state_dict())
    loaded = peft.PeftModel.from_pretrained(fresh, export_peft(model, torch.tensor(1), tmp_path / "a"))
    torch.testing.assert_close(loaded(x), model(x, cond=torch.tensor(1)), rtol=1e-4, atol=1e-4)


def test_configs_validate_and_round_trip():
    with pytest.raises(ValueError, match="exactly one of num_tasks"):
        AdapterConfig()
    with pytest.raises(ValueError, match="exactly one of num_tasks"):
        AdapterConfig(num_tasks=2, cond_features=3)
    with pytest.raises(ValueError, match="sizes must be >= 1"):
        AdapterConfig(num_tasks=2, rank=0)
    with pytest.raises(ValueError, match="SteerConfig"):
        SteerConfig(width=0)
    cfg = AdapterConfig(cond_features=384, target_modules=("query",), hidden=[32])
    assert AdapterConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.warns(UserWarning, match="unknown keys"):
        AdapterConfig.from_dict({**cfg.to_dict(), "alpha": 1})
    with pytest.raises(ValueError, match="hyperformer: config.num_tasks"):
        hyperformer(nn.Linear(2, 2), cfg)


def test_registered():
    assert get_method("hyperformer").builder is hyperformer
    assert get_method("text_to_lora").builder is text_to_lora
    assert get_method("hypersteer").builder is HyperSteer


def tiny_lm():
    from hypernetworks.experiments.hypersteer import CharLM

    torch.manual_seed(0)
    return CharLM(width=16, layers=2).eval()


def test_hypersteer_starts_unsteered_and_steers_per_sequence():
    lm = tiny_lm()
    x = torch.randint(3, 128, (3, 10), generator=torch.Generator().manual_seed(5))
    base = lm(x)
    name = add_steering(lm, "blocks.0", 16)
    assert name == "blocks.0.steer.shift"
    torch.testing.assert_close(lm(x), base)  # a zero shift changes nothing
    steerer = HyperSteer(lm, SteerConfig(module="blocks.0", cond_features=6, width=16, hidden=(8, 8)))
    assert all(not p.requires_grad for p in lm.parameters())
    prompts = torch.randn(3, 6, generator=torch.Generator().manual_seed(6))
    # zero-delta init: unsteered at step 0 (frozen weights let torch take its fused attention path: ~1e-6 off)
    torch.testing.assert_close(steerer(x, cond=prompts), base, atol=1e-5, rtol=1e-5)
    perturb(steerer)
    out = steerer(x, cond=prompts)
    vectors = steerer.generate(prompts)[name]  # (3, 16)
    assert vectors.shape == (3, 16) and vectors.abs().max() > 1e-3
    for i in range(3):  # each sequence gets its own vector, added after block 0
        with torch.no_grad():
            lm.blocks[0].steer.shift.copy_(vectors[i])
        torch.testing.assert_close(out[i], lm(x[i:i + 1])[0], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="add_steering: CharLM has no submodule 'blocks.9'"):
        add_steering(lm, "blocks.9", 16)
    with pytest.raises(ValueError, match="HyperSteer: 'blocks.0.steer.shift' should be one steering vector"):
        HyperSteer(lm, SteerConfig(module="blocks.0", cond_features=6, width=15))


def test_mean_difference():
    acts, ref = torch.ones(4, 5, 3), torch.zeros(7, 3)
    assert torch.equal(mean_difference(acts, ref), torch.ones(3))
    with pytest.raises(ValueError, match="mean_difference: widths differ"):
        mean_difference(acts, torch.zeros(2, 4))


@pytest.mark.parametrize("name", ["adapters", "hypersteer"])
def test_reproduction_quick(name, tmp_path, check_claims):
    import json

    from hypernetworks.cli import main

    main(["reproduce", name, "--quick", "--out", str(tmp_path)])
    assert (tmp_path / f"{name}.png").exists()
    check_claims(json.loads((tmp_path / f"{name}-quick.json").read_text()), statements=3)


def test_state_dict_holds_each_tensor_once():
    model = hyperformer(tiny_bert(), AdapterConfig(num_tasks=3, target_modules=["query", "value"],
                                                   norm_modules=["LayerNorm"], rank=2, hidden=(8,)))
    state = model.state_dict()
    storages = [t.untyped_storage().data_ptr() for t in state.values() if t.numel()]
    assert len(storages) == len(set(storages)), "a tensor is stored under two keys"
    assert not [k for k in state if k.startswith("norms.") or k.startswith("encoder.")]
    fresh = hyperformer(tiny_bert(), AdapterConfig(num_tasks=3, target_modules=["query", "value"],
                                                   norm_modules=["LayerNorm"], rank=2, hidden=(8,)))
    fresh.load_state_dict(state)
    ids = torch.randint(0, 50, (2, 5))
    torch.testing.assert_close(fresh(ids, cond=torch.tensor([0, 2])).last_hidden_state,
                               model(ids, cond=torch.tensor([0, 2])).last_hidden_state)


def test_fit_trains_the_generator_and_rejects_short_streams():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    model = text_to_lora(net, AdapterConfig(cond_features=3, target_modules=["0", "2"], rank=2))
    frozen = [p.clone() for p in net.parameters()]
    x, cond = torch.randn(32, 4), torch.randn(32, 3)
    y = (x[:, 0] * cond[:, 0] > 0).long()  # the answer depends on the condition
    losses = model.fit([((x, ), cond, y)] * 40, lr=1e-2)
    assert len(losses) == 40 and losses[-1] < losses[0]
    assert all(torch.equal(a, b) for a, b in zip(frozen, net.parameters(), strict=True))  # the target stays frozen
    with pytest.raises(ValueError, match="GeneratedAdapters.fit: batches ran out after 1 of 5 steps"):
        model.fit([((x,), cond, y)], steps=5)


def test_adapter_tasks_hold_out_categories_entirely():
    from hypernetworks.experiments.adapters import _groups
    from hypernetworks.experiments.adapters_tasks import CATEGORIES, HELD_OUT, VALIDATION, description

    names = list(CATEGORIES)
    test, tune = _groups("test"), _groups("tune")
    assert len(test["train"]) == 300 and len(test["unseen"]) == 28 and len(tune["unseen"]) == 10
    assert not {names[c] for t in test["train"] for c in t} & set(HELD_OUT)
    assert not {names[c] for t in tune["train"] for c in t} & set(HELD_OUT + VALIDATION)
    assert {names[c] for t in test["unseen"] for c in t} == set(HELD_OUT)
    a, b = names.index("food"), names.index("law")
    assert "food and eating" in description(a, b) and "law and lawyers" in description(a, b)
