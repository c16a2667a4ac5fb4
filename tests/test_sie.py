import json
import math

import pytest
import torch

from hypernetworks import cli
from hypernetworks.experiments.sie import rotate, views
from hypernetworks.methods import get_method
from hypernetworks.methods.sie import (
    SIE,
    HyperPredictor,
    SIEConfig,
    Transform,
    covariance_loss,
    predictor_sensitivity,
    regularizer,
    variance_loss,
)


def angles(n: int, seed: int = 0) -> torch.Tensor:
    return Transform(2).example(n, generator=torch.Generator().manual_seed(seed))


def test_registered_and_config_checks():
    assert get_method("sie").builder is SIE
    cfg = SIEConfig(hidden=[16], width=8)
    assert SIEConfig.from_dict(cfg.to_dict()) == cfg
    assert SIEConfig(split=False, predictor="none").equi_dim == 0
    with pytest.raises(ValueError, match="split representation needs a predictor"):
        SIEConfig(split=True, predictor="none")
    with pytest.raises(ValueError, match="split representation needs a predictor"):
        SIEConfig(split=False, predictor="mlp")
    with pytest.raises(ValueError, match="predictor must be one of"):
        SIEConfig(predictor="transformer")


def test_hyper_predictor_is_a_bias_free_linear_map_per_example():
    torch.manual_seed(0)
    pred = HyperPredictor(6, 2, hidden=(16,))
    z, g = torch.randn(5, 6), angles(5)
    w = pred.weights(g)
    assert w.shape == (5, 6, 6)
    torch.testing.assert_close(pred(z, g), torch.einsum("boi,bi->bo", w, z))
    torch.testing.assert_close(pred(2 * z - z[[1, 0, 3, 2, 4]], g),
                               2 * pred(z, g) - torch.einsum("boi,bi->bo", w, z[[1, 0, 3, 2, 4]]))  # linear
    assert pred(torch.zeros(5, 6), g).abs().max() == 0  # no bias
    assert not torch.allclose(w[0], w[1])  # the matrix depends on g
    assert w.var().item() == pytest.approx(1 / 6, rel=0.5)  # hyperfan-in: Var(W) = 1/fan_in


def test_default_hyper_predictor_is_odd_in_g():
    torch.manual_seed(0)
    pred = HyperPredictor(6, 2)  # hidden=(): W(g) linear in g, no bias
    g = angles(4)
    torch.testing.assert_close(pred.weights(-g), -pred.weights(g))
    assert sum(p.numel() for p in pred.parameters() if p.requires_grad) == 2 * 6 * 6  # A_cos, A_sin


def test_transform_examples_lie_on_the_circle():
    g = angles(100)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(100))
    assert Transform(3).example(4).shape == (4, 3)


def test_vicreg_terms_match_their_definitions():
    torch.manual_seed(0)
    const = torch.ones(10, 4)
    assert variance_loss(const).item() == pytest.approx(1 - math.sqrt(1e-4), abs=1e-6)
    wide = 3 * torch.randn(500, 4)
    assert variance_loss(wide).item() == 0  # every std above 1: hinge inactive
    z = torch.randn(400, 3)
    assert covariance_loss(z).item() < 0.02
    dup = torch.cat([z[:, :1], z[:, :1]], 1)  # two identical unit-variance columns
    cov = dup.var(0)[0].item()
    assert covariance_loss(dup).item() == pytest.approx(2 * cov**2 / 2, rel=1e-4)
    with pytest.raises(ValueError, match="B >= 2"):
        regularizer(torch.randn(1, 3), 1.0, 1.0)


def test_loss_terms_and_gradients():
    torch.manual_seed(0)
    x1, x2, g = torch.rand(8, 1, 28, 28), torch.rand(8, 1, 28, 28), angles(8)
    sie = SIE(width=4)
    loss, terms = sie.loss(x1, x2, g)
    loss.backward()
    assert terms["equi"] > 0 and sie.predictor.hnet.head.out.weight.grad.abs().sum() > 0
    assert sie.backbone[0].weight.grad.abs().sum() > 0
    vicreg = SIE(width=4, split=False, predictor="none", inv_dim=16)
    loss, terms = vicreg.loss(x1, x2, g)
    assert terms["equi"] == 0 and vicreg.parts(x1)[1].shape == (8, 0)
    with pytest.raises(ValueError, match="SIE.transform_embedding: this model has no predictor"):
        vicreg.transform_embedding(torch.randn(8, 64), g)
    with pytest.raises(ValueError, match=r"SIE: g should have shape \(B, 2\)"):
        sie.transform_embedding(torch.randn(8, 64), g[:4])


def test_sensitivity_detects_a_predictor_that_ignores_g():
    torch.manual_seed(0)
    z, g1, g2 = torch.randn(64, 64), angles(64, 1), angles(64, 2)
    sie = SIE(width=4).eval()
    assert predictor_sensitivity(sie, z, g1, g2) > 0.5
    mlp = SIE(width=4, predictor="mlp").eval()
    with torch.no_grad():
        mlp.predictor.net[0].weight[:, :2] = 0  # the first layer no longer reads g
    assert predictor_sensitivity(mlp, z, g1, g2) == 0


def test_rotate_and_views():
    x = torch.rand(3, 1, 28, 28)
    zero = torch.zeros(3, 2)
    torch.testing.assert_close(rotate(x, torch.zeros(3), zero), (x - 0.286) / 0.353)
    quarter = rotate(x, torch.full((3,), math.pi / 2), zero) * 0.353 + 0.286
    assert any(torch.allclose(quarter, torch.rot90(x, k, dims=(2, 3)), atol=1e-5) for k in (1, -1))
    v1, v2, g = views(x, torch.Generator().manual_seed(0))
    assert v1.shape == v2.shape == x.shape and not torch.allclose(v1, v2)
    torch.testing.assert_close(g.norm(dim=1), torch.ones(3))


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    x = torch.rand(32, 1, 28, 28)
    model = SIE(width=4, embed_dim=16, hidden=(16,))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(25):
        loss, _ = model.loss(*views(x, gen))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.95 * sum(losses[:5])


def test_reproduce_sie_quick(tmp_path, check_claims):
    cli.main(["reproduce", "sie", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "sie-quick.json").read_text())
    models = {s["model"]: s for s in record["summary"]}
    assert set(models) == {"vicreg", "mlp", "sie"}
    assert models["vicreg"]["sensitivity"] is None and models["sie"]["sensitivity"] is not None
    assert all(0 <= s["class_acc"][0] <= 1 for s in record["summary"])
    assert (tmp_path / "sie.png").exists()
    claims = check_claims(record, statements=4)
    assert {c["baseline"]["name"] for c in claims} == {"vicreg", "mlp"}
    chosen = {s["model"]: s["lr"] for s in record["summary"]}  # each model's lr: its best on validation
    for kind, lr in chosen.items():
        val = {r["lr"]: r["val_score"] for r in record["sweep"] if r["kind"] == kind}
        assert set(val) == set(record["config"]["lrs"]) and val[lr] == max(val.values())
    assert all(r["lr"] == chosen[r["kind"]] for r in record["runs"])
