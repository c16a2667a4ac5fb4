import json

import pytest
import torch
from torch import nn

from hypernetworks import cli
from hypernetworks.experiments.hyperclip import split_subsets
from hypernetworks.methods import get_method
from hypernetworks.methods.hyperclip import (
    HyperCLIP,
    HyperCLIPConfig,
    TextSet,
    ZeroShotClassifier,
    image_encoder,
    pad_set,
    prompts,
    siglip_loss,
)

D = 16


def texts(k: int, seed: int = 0) -> torch.Tensor:
    return nn.functional.normalize(torch.randn(k, D, generator=torch.Generator().manual_seed(seed)), dim=-1)


def trained_like(model: HyperCLIP) -> HyperCLIP:
    """Give the hypernetwork's zero-initialised output layer random weights, so the texts matter."""
    with torch.no_grad():
        model.hnet.head.out.weight.normal_(0, 0.3)
    return model


def test_registered_and_config_round_trip():
    assert get_method("hyperclip").builder is HyperCLIP
    cfg = HyperCLIPConfig(width=12, groups=3, hidden=[32])
    assert HyperCLIPConfig.from_dict(cfg.to_dict()) == cfg and cfg.hidden == (32,)
    with pytest.raises(ValueError, match="multiple of groups"):
        HyperCLIPConfig(width=10, groups=4)
    with pytest.raises(ValueError, match="logit_scale"):
        HyperCLIPConfig(logit_scale=0.0)


def test_generates_only_the_norm_parameters():
    model = HyperCLIP(text_dim=D, width=4)
    norms = [n for n, m in model.image_encoder.named_modules() if isinstance(m, nn.GroupNorm)]
    assert model.hnet.spec.names == [f"{n}.{leaf}" for n in norms for leaf in ("weight", "bias")]
    assert model.hnet.num_generated == 2 * (4 + 8 + 16)
    assert HyperCLIP(text_dim=D, hypernetwork=False).hnet is None


def test_starts_as_the_plain_model():
    torch.manual_seed(0)
    hyper = HyperCLIP(text_dim=D)
    plain = HyperCLIP(text_dim=D, hypernetwork=False)
    plain.load_state_dict({k: v for k, v in hyper.state_dict().items() if not k.startswith("hnet.")})
    x = torch.rand(6, 1, 28, 28)
    torch.testing.assert_close(hyper(x, texts(4)), plain(x, texts(4)))


def test_materialize_gives_a_plain_equivalent_classifier():
    torch.manual_seed(0)
    model = trained_like(HyperCLIP(text_dim=D))
    x, t = torch.rand(7, 1, 28, 28), texts(5)
    clf = model.materialize(t)
    assert isinstance(clf, ZeroShotClassifier) and isinstance(clf.encoder, nn.Sequential)
    assert not any(isinstance(m, HyperCLIP) for m in clf.modules())
    torch.testing.assert_close(clf(x), model(x, t))
    fresh = image_encoder(8, 64, 4)
    fresh.load_state_dict(clf.encoder.state_dict())  # loads into a target built without the library
    # the generated norms differ from the shared θ0, and the model itself is unchanged
    assert not torch.allclose(clf.encoder[1].weight, model.image_encoder[1].weight)
    torch.testing.assert_close(model.materialize(t)(x), clf(x))


def test_classifier_depends_on_the_set_not_its_order_or_padding():
    torch.manual_seed(0)
    model = trained_like(HyperCLIP(text_dim=D))
    x, t = torch.rand(4, 1, 28, 28), texts(4)
    perm = torch.tensor([2, 0, 3, 1])
    torch.testing.assert_close(model(x, t[perm]), model(x, t)[:, perm])
    other = model.materialize(texts(4, seed=1)).encoder
    assert not torch.allclose(other(x), model.materialize(t).encoder(x))
    example = TextSet(D, 6, 8).example(5)
    assert example.shape == (5, 6, D) and (example.abs().sum(-1) > 0).sum(1).min() >= 1  # random set sizes


def test_text_set_masked_mean():
    enc = TextSet(D, 5, 8)
    t = texts(3)
    expected = torch.relu(enc.phi(t)).mean(0)
    torch.testing.assert_close(enc(pad_set(t, 5)), expected)
    batch = torch.stack([pad_set(t, 5), pad_set(texts(2), 5)])  # (2, M, D): a batch of sets
    assert enc.is_batched(batch) and enc(batch).shape == (2, 8)
    torch.testing.assert_close(enc(batch)[0], expected)


def test_siglip_loss_matches_its_definition_and_trains():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]])
    labels = torch.tensor([0, 2])
    sig = torch.sigmoid
    manual = -(sig(torch.tensor(2.0)).log() + sig(torch.tensor(1.0)).log() + sig(torch.tensor(-0.5)).log()
               + sig(torch.tensor(0.0)).log() + sig(torch.tensor(-3.0)).log() + sig(torch.tensor(-2.0)).log()) / 2
    torch.testing.assert_close(siglip_loss(logits, labels), manual)
    with pytest.raises(ValueError, match="siglip_loss: expected logits"):
        siglip_loss(logits, labels[:1])
    # a few steps on a separable toy task move the loss down, and the hypernetwork's head gets gradients
    torch.manual_seed(0)
    model = HyperCLIP(text_dim=D, width=4)
    t = texts(3)
    x = torch.rand(3, 1, 28, 28).repeat(8, 1, 1, 1)
    y = torch.arange(3).repeat(8)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        loss = siglip_loss(model(x, t), y)
        opt.zero_grad()
        loss.backward()
        losses.append(loss.item())
        assert model.hnet.head.out.weight.grad.abs().sum() > 0
        opt.step()
    assert losses[-1] < 0.7 * losses[0]


def test_bad_inputs_raise():
    model = HyperCLIP(text_dim=D, max_classes=4)
    x = torch.rand(2, 1, 28, 28)
    with pytest.raises(ValueError, match=r"HyperCLIP: expected class embeddings of shape \(K, 16\)"):
        model(x, torch.randn(3, D + 1))
    with pytest.raises(ValueError, match="1 <= K <= 4"):
        model(x, texts(5))
    assert prompts(["bag"]) == ["a photo of a bag."]


def test_reproduce_hyperclip_quick(tmp_path, check_claims):
    cli.main(["reproduce", "hyperclip", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "hyperclip-quick.json").read_text())
    models = {s["model"]: s for s in record["summary"]}
    assert set(models) == {"plain", "plain-matched", "hyperclip"}
    assert models["plain-matched"]["width"] > models["hyperclip"]["width"] == models["plain"]["width"]
    assert models["hyperclip"]["deployed"] == models["plain"]["deployed"]
    assert all(0 <= a <= 1 for s in record["summary"] for a in s["accuracy"].values())
    assert (tmp_path / "hyperclip.png").exists()
    claims = check_claims(record, statements=3 * 2 + 1)  # 3 evaluations x 2 baselines, the cost claim
    assert {c["baseline"]["name"] for c in claims if c["kind"] == "paired"} == {"plain", "plain-matched"}
    chosen = {s["model"]: s["lr"] for s in record["summary"]}  # each model's lr: its best on validation
    for kind, lr in chosen.items():
        val = {r["lr"]: r["val_accuracy"] for r in record["sweep"] if r["kind"] == kind}
        assert set(val) == set(record["config"]["lrs"]) and val[lr] == max(val.values())
    assert all(r["lr"] == chosen[r["kind"]] for r in record["runs"])


def test_subsets_split_three_ways():
    train, val, held_out = split_subsets(0, held_out=0.25, val=0.15)
    assert len(train) + len(val) + len(held_out) == 120 + 210 + 252  # all 3-, 4- and 5-class subsets
    assert len(held_out) == 145 and len(val) == 65
    assert not (set(train) & set(val) or set(train) & set(held_out) or set(val) & set(held_out))
    assert split_subsets(1, 0.25, 0.15)[2] != held_out  # the split follows the seed
