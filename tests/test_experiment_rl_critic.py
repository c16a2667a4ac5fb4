"""The ``rl-critic`` reproduction: matched critic sizes, learning rates chosen on tuning seeds only
(for each critic on its own), the quick pipeline and its claims."""

import json

import pytest

from hypernetworks import cli
from hypernetworks.experiments import rl_critic
from hypernetworks.methods.rl import NetConfig


@pytest.mark.parametrize(("state_dim", "action_dim"), [(4, 1), (9, 1), (17, 6)])
def test_mlp_critic_is_matched_to_the_hyper_critic_in_parameters(state_dim, action_dim):
    hyper = rl_critic.critic_params(state_dim, action_dim, rl_critic.critic_config("hyper", state_dim, action_dim, 0))
    mlp_cfg = rl_critic.critic_config("mlp", state_dim, action_dim, 0)
    mlp = rl_critic.critic_params(state_dim, action_dim, mlp_cfg)
    width = mlp_cfg.hidden[0]
    assert mlp_cfg.kind == "mlp" and mlp_cfg.hidden == (width, width)
    # the closest width: one unit more or less is further from the hyper critic's count
    for other in (width - 1, width + 1):
        alt = rl_critic.critic_params(state_dim, action_dim, NetConfig(kind="mlp", hidden=(other, other)))
        assert abs(alt - hyper) >= abs(mlp - hyper)
    assert abs(mlp - hyper) / hyper < 0.03


def test_matched_width_rejects_an_empty_target():
    with pytest.raises(ValueError, match="matched_width: target must be >= 1"):
        rl_critic.matched_width(4, 1, 0)


def test_learning_rate_is_chosen_per_critic_by_mean_tuning_auc():
    def row(critic, lr, seed, auc):
        return {"env": "E", "algo": "td3", "critic": critic, "lr": lr, "seed": seed, "auc": auc}

    rows = [row("mlp", 1e-3, 100, 50.0), row("mlp", 1e-3, 101, 10.0), row("mlp", 3e-4, 100, 35.0),
            row("mlp", 3e-4, 101, 30.0), row("hyper", 1e-3, 100, 5.0), row("hyper", 1e-3, 101, 90.0),
            row("hyper", 3e-4, 100, 40.0), row("hyper", 3e-4, 101, 40.0)]
    assert rl_critic.choose_lrs(rows) == {("E", "td3", "mlp"): 3e-4, ("E", "td3", "hyper"): 1e-3}
    tie = [row("mlp", 1e-3, 100, 7.0), row("mlp", 3e-4, 100, 7.0)]
    assert rl_critic.choose_lrs(tie) == {("E", "td3", "mlp"): 3e-4}
    diverged = [row("mlp", 3e-3, 100, float("nan")), row("mlp", 1e-3, 100, -5.0)]
    assert rl_critic.choose_lrs(diverged) == {("E", "td3", "mlp"): 1e-3}


def test_tuning_seeds_must_not_be_evaluation_seeds(tmp_path, monkeypatch):
    monkeypatch.setitem(rl_critic.QUICK, "tuning_seeds", (0,))
    with pytest.raises(ValueError, match=r"rl-critic: tuning seeds \(0,\) must differ from evaluation seeds"):
        rl_critic.run(True, tmp_path)


def test_reproduce_rl_critic_quick(tmp_path, check_claims):
    cli.main(["reproduce", "rl-critic", "--quick", "--out", str(tmp_path)])
    assert (tmp_path / "rl-critic.png").exists()
    record = json.loads((tmp_path / "rl-critic-quick.json").read_text())
    check_claims(record, statements=2 * 2 * 3)  # 2 envs x 2 algorithms x (curve, final return, gradient probe)
    runs, tuning = record["runs"], record["tuning"]
    assert {r["seed"] for r in runs} == set(rl_critic.QUICK["seeds"])
    assert {r["seed"] for r in tuning} == set(rl_critic.QUICK["tuning_seeds"])
    for r in runs:  # every evaluation run uses the rate its own critic won on the tuning seeds
        assert r["lr"] == record["config"]["chosen_lr"][f"{r['env']} / {r['algo']} / {r['critic']}"]
