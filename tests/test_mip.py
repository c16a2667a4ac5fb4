import json
import warnings

import pytest
import torch
from torch import nn

import hypernetworks as hn
from hypernetworks import cli, methods
from hypernetworks.experiments.mip_tasks import theta_norm
from hypernetworks.methods.mip import MIPConfig


def target():
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))


def test_plain_hypernetwork_output_is_proportional_to_gamma_at_init():
    torch.manual_seed(0)
    plain = hn.methods.mip.hypernetwork(target(), encoding="none", residual=False)
    norms = [theta_norm(plain, g) for g in (0.0, 0.25, 0.5, 1.0)]
    assert norms[0] == 0.0
    assert norms[1] == pytest.approx(norms[3] / 4, rel=1e-5) and norms[2] == pytest.approx(norms[3] / 2, rel=1e-5)


def test_mip_starts_at_theta0_for_every_gamma():
    torch.manual_seed(0)
    t = target()
    mip = hn.methods.mip.hypernetwork(t, num_scalars=2)
    x = torch.randn(4, 6)
    for gamma in (torch.tensor([0.0, 1.0]), torch.rand(4, 2)):
        torch.testing.assert_close(mip(x, cond=gamma), t(x))
    assert mip.mode == "residual" and mip.encoder.encoding == "mip" and mip.encoder.dim == 4


def test_mip_learns_a_gamma_dependent_function():
    torch.manual_seed(0)
    mip = hn.methods.mip.hypernetwork(nn.Linear(1, 1), hidden=(16,))
    opt = torch.optim.Adam(mip.parameters(), lr=1e-2)
    x = torch.randn(64, 1)
    for _ in range(300):
        gamma = torch.rand(64, 1)
        loss = (mip(x, cond=gamma) - gamma * 3 * x).square().mean()  # slope 3γ: needs per-example weights
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="encoding must be one of"):
        MIPConfig(encoding="cos")
    cfg = MIPConfig(hidden=[8, 8])
    assert MIPConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.warns(UserWarning, match=r"unknown keys \['depth'\]"):
        MIPConfig.from_dict({"depth": 3})


def test_registry():
    assert "mip" in methods.list_methods("m*")
    assert methods.get_method("mip").builder is methods.mip.hypernetwork
    with pytest.raises(ValueError, match="already registered"):
        methods.register_method("mip", lambda: None, MIPConfig)
    with pytest.raises(ValueError, match="lowercase"):
        methods.register_method("MIP2", lambda: None, MIPConfig)
    with pytest.raises(KeyError, match="unknown method 'ghn'"):
        methods.get_method("ghn")


def test_create_builds_from_options_and_names_unknown_ones():
    torch.manual_seed(0)
    t = target()
    hnet = methods.create("mip", t, hidden=(8,), num_scalars=2)
    assert isinstance(hnet, hn.HyperNetwork) and hnet.encoder.dim == 4 and hnet.mode == "residual"
    same = methods.create("mip", target(), MIPConfig(hidden=(8,)), num_scalars=2)
    assert same.state_dict().keys() == hnet.state_dict().keys()
    with pytest.raises(TypeError, match=r"create\('mip'\): MIPConfig: unknown option 'depth'"):
        methods.create("mip", t, depth=2)
    with pytest.raises(TypeError, match=r"create\('mip'\): needs the target nn.Module"):
        methods.create("mip", hidden=(8,))
    with pytest.raises(TypeError, match=r"create\('sie'\): this method builds its own model"):
        methods.create("sie", t)
    with pytest.raises(TypeError, match="MIPConfig: unknown option 'width'"):
        hn.methods.mip.hypernetwork(t, width=3)


def test_reproduce_quick_writes_results(tmp_path, capsys, check_claims):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cli.main(["reproduce", "mip", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "mip-quick.json").read_text())
    assert record["status"] == "quick" and record["torch"] == torch.__version__
    assert {s["variant"] for s in record["summary"]} == {"plain", "encoding", "residual", "mip"}
    assert (tmp_path / "mip.png").stat().st_size > 1000
    claims = check_claims(record, statements=2)  # one per task x optimiser at least
    assert {c["ours"]["name"] for c in claims} == {"mip"} and {c["baseline"]["name"] for c in claims} == {"plain"}
    assert "label_smoothing" in capsys.readouterr().out


def test_demo_runs_and_prints_a_table(tmp_path, capsys):
    cli.main(["demo", "--steps", "10", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert "plain" in out and "mip" in out and "0.50" in out
    assert (tmp_path / "demo.png").exists() and (tmp_path / "demo.json").exists()


def test_unknown_reproduction():
    with pytest.raises(KeyError, match="unknown reproduction 'nope'"):
        cli.main(["reproduce", "nope"])


def test_cli_lists_methods_with_their_options(capsys):
    cli.main(["methods", "m*", "-v"])
    out = capsys.readouterr().out
    assert "create('mip', target, **MIPConfig, spec=...)" in out and "malmen" in out and "    encoding = 'mip'" in out
    assert "sie" not in out
    with pytest.raises(SystemExit, match="no method matches 'zzz'"):
        cli.main(["methods", "zzz"])
