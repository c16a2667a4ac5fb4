import json

import pytest
import torch

from hypernetworks import cli
from hypernetworks.methods.rl import (
    SAC,
    TD3,
    ActorConfig,
    ArchPolicy,
    Chain,
    ConcatContext,
    CriticConfig,
    HyperActor,
    MaskedMLP,
    MLPCritic,
    ModuMorph,
    NetConfig,
    PPOConfig,
    ReplayBuffer,
    SACConfig,
    Scaled,
    TD3Config,
    arch_space,
    build_critic,
    gradient_probe,
    lqr_gain,
    num_params,
    random_chain,
    rollout,
    sized,
)

SMALL = NetConfig(kind="hyper", hidden=(32, 32), primary_hidden=(32,), embed_dim=8, dynamic_hidden=(8, 8))


def critic(state_dim: int, action_dim: int, net: NetConfig = SMALL, **sizes):
    return build_critic(sized(CriticConfig, NetConfig(**{**net.to_dict(), **sizes}), state_dim=state_dim,
                              action_dim=action_dim))


def test_hyper_critic_is_one_function_of_the_action_per_state():
    torch.manual_seed(0)
    q = critic(3, 2)
    s, a = torch.randn(6, 3), torch.rand(6, 2)
    batched = q(s, a)
    single = torch.cat([q(s[i:i + 1], a[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-6)
    same_action = a[:1].expand(6, -1)
    assert q(s, same_action).std() > 1e-3  # the state changes the dynamic network
    # ∂Q/∂a comes from the dynamic network alone: the primary network's gradient is not needed
    a.requires_grad_(True)
    (g,) = torch.autograd.grad(q(s, a).sum(), a)
    assert g.shape == (6, 2) and torch.isfinite(g).all()


def test_hyper_critic_gains_start_at_one_and_train():
    torch.manual_seed(0)
    with_gain = critic(3, 1)
    torch.manual_seed(0)
    without = critic(3, 1, scales=False)
    s, a = torch.randn(4, 3), torch.rand(4, 1)
    torch.testing.assert_close(with_gain(s, a), without(s, a))
    with_gain(s, a).sum().backward()
    assert with_gain.body.gain.weight.grad.abs().sum() > 0


def test_bad_inputs_raise_named_errors():
    q = critic(3, 1)
    with pytest.raises(ValueError, match=r"HyperCritic: expected action of shape \(B, 1\)"):
        q(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="HyperCritic: state and action need the same batch"):
        q(torch.randn(4, 3), torch.randn(5, 1))
    with pytest.raises(ValueError, match="MLPCritic: expected state"):
        critic(3, 1, kind="mlp")(torch.randn(4, 2), torch.randn(4, 1))
    with pytest.raises(ValueError, match="NetConfig: kind must be one of"):
        NetConfig(kind="concat")
    with pytest.raises(ValueError, match="TD3Config: need"):
        TD3Config(gamma=1.0)
    with pytest.raises(ValueError, match="HyperActor: pass a context exactly"):
        HyperActor(sized(ActorConfig, SMALL, state_dim=3, out_dim=1, context_dim=2))(torch.randn(4, 3))
    with pytest.raises(ValueError, match="MLPCritic: config.kind is 'hyper'"):
        MLPCritic(CriticConfig())  # a config asking for the hypernetwork
    with pytest.raises(ValueError, match="ActorConfig: context_dim needs kind='hyper'"):
        ActorConfig(kind="mlp", context_dim=2)
    with pytest.raises(ValueError, match="CriticConfig: state_dim=3 in the config, but the agent needs 4"):
        TD3(4, 1, CriticConfig(state_dim=3))


def test_hyper_actor_with_context_gives_one_policy_per_task():
    torch.manual_seed(0)
    pi = HyperActor(sized(ActorConfig, SMALL, state_dim=4, out_dim=2, context_dim=3))
    s = torch.randn(1, 4).expand(5, -1)
    out = pi(s, torch.randn(5, 3))
    assert out.shape == (5, 2) and out.std(0).min() > 1e-4  # same state, different tasks


def _bandit_batch(n=64):
    """One-step task (done = 1): reward -a, best action -1 whatever the state."""
    g = torch.Generator().manual_seed(0)
    s, a = torch.randn(n, 3, generator=g), torch.rand(n, 1, generator=g) * 2 - 1
    return s, a, -a, torch.randn(n, 3, generator=g), torch.ones(n, 1)


@pytest.mark.parametrize("algo", ["td3", "sac"])
@pytest.mark.parametrize("kind", ["mlp", "hyper"])
def test_agents_learn_a_one_step_task(algo, kind):
    net = NetConfig(**{**SMALL.to_dict(), "kind": kind})
    actor = NetConfig(kind="mlp", hidden=(32, 32))
    if algo == "td3":
        agent = TD3(3, 1, net, actor, TD3Config(actor_lr=3e-4, critic_lr=3e-3, policy_delay=1), seed=0)
    else:
        agent = SAC(3, 1, net, actor, SACConfig(actor_lr=3e-4, critic_lr=3e-3, init_alpha=0.01), seed=0)
    batch = _bandit_batch()
    for _ in range(200):
        agent.update(batch)
    with torch.no_grad():
        q_err = (agent.critic(batch[0], batch[1]) - batch[2]).abs().mean().item()
        actions = agent.policy(batch[0])
    assert q_err < 0.1
    assert actions.mean() < -0.6, actions.mean()  # from ≈ 0 towards the best action


def test_replay_buffer_wraps_around():
    buf = ReplayBuffer(2, 1, capacity=3)
    with pytest.raises(ValueError, match="ReplayBuffer.sample: the buffer is empty"):
        buf.sample(1, torch.Generator())
    for i in range(5):
        buf.add(torch.full((2,), float(i)), torch.zeros(1), i, torch.zeros(2), False)
    assert buf.size == 3 and sorted(buf.r[:, 0].tolist()) == [2.0, 3.0, 4.0]


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "InvertedPendulum-v5"])
def test_snapshot_restore_is_exact(env_id):
    env = Scaled(env_id)
    env.reset(seed=0)
    for _ in range(3):
        env.step(torch.tensor([0.3]))
    snap = env.snapshot()
    first = [env.step(torch.tensor([-0.2]))[0] for _ in range(4)]
    env.restore(snap)
    again = [env.step(torch.tensor([-0.2]))[0] for _ in range(4)]
    torch.testing.assert_close(torch.stack(first), torch.stack(again))


class _Quadratic:
    """A fake agent: constant policy a = 0.5 and critic c·a² (Pendulum's one-step reward in u = 2a
    is -0.001·u² + terms without a, so c = -0.004 gives the true ∂r/∂a at horizon 1)."""

    def __init__(self, c):
        self.c = c

    def policy(self, s):
        return torch.full((len(s), 1), 0.5)

    def act(self, s, explore):
        return torch.tensor([0.5])

    def critic(self, s, a):
        return self.c * a.square()


def test_gradient_probe_matches_a_known_gradient():
    env = Scaled("Pendulum-v1")
    env.reset(seed=0)
    snaps = []
    for _ in range(4):
        env.step(torch.tensor([0.1]))
        snaps.append(env.snapshot())
    right = gradient_probe(_Quadratic(-0.004), env, snaps, gamma=0.99, horizon=1)
    wrong = gradient_probe(_Quadratic(0.004), env, snaps, gamma=0.99, horizon=1)
    assert right["cosine"] == pytest.approx(1.0, abs=1e-4) and right["sign_agreement"] == 1.0
    assert wrong["cosine"] == pytest.approx(-1.0, abs=1e-4) and wrong["sign_agreement"] == 0.0


def test_arch_policy_generates_exact_small_networks():
    torch.manual_seed(0)
    archs = arch_space()
    assert len(archs) == 20 and (2,) in archs and (16, 16) in archs
    pi = ArchPolicy(in_dim=4, out_dim=2, archs=archs)
    obs = torch.randn(20, 4)
    out = pi(obs, torch.arange(20))
    for k, arch in enumerate(archs):
        small = pi.materialize(k)  # a plain MLP of the architecture's true size
        assert sum(p.numel() for p in small.parameters()) == num_params(arch, 4, 2)
        torch.testing.assert_close(small(obs[k:k + 1]), out[k:k + 1], rtol=1e-5, atol=1e-5)
    # different architectures get different weights for the same input
    same = pi(obs[:1].expand(20, -1), torch.arange(20))
    assert same.std(0).max() > 1e-3
    with pytest.raises(ValueError, match=r"ArchPolicy: expected obs \(B, 4\) and arch ids \(B,\)"):
        pi(obs, torch.arange(3))
    with pytest.raises(ValueError, match="ArchPolicy: need a non-empty list"):
        ArchPolicy(in_dim=4, out_dim=2, archs=[(4, 0)])


def test_masked_units_do_not_matter():
    torch.manual_seed(0)
    net = MaskedMLP(3, 8, 2, 2)
    x = torch.randn(5, 3)
    masks = torch.zeros(5, 2, 8)
    masks[:, 0, :4], masks[:, 1, :2] = 1, 1
    depth = torch.full((5,), 2)
    before = net(x, masks, depth)
    with torch.no_grad():
        net.hidden[0].weight[4:] += 1.0  # rows of masked units
        net.hidden[1].weight[:, 4:] += 1.0  # columns reading masked units
        net.out.weight[:, 2:] += 1.0
    torch.testing.assert_close(net(x, masks, depth), before)


def test_ppo_config_checks_minibatches():
    with pytest.raises(ValueError, match="PPOConfig: num_envs \\* num_steps"):
        PPOConfig(num_envs=3, num_steps=5, minibatches=4)


def test_reproduce_hyperppo_quick(tmp_path, check_claims):
    cli.main(["reproduce", "hyperppo", "--quick", "--out", str(tmp_path)])
    assert (tmp_path / "hyperppo-quick.json").exists() and (tmp_path / "hyperppo.png").exists()
    record = json.loads((tmp_path / "hyperppo-quick.json").read_text())
    claims = check_claims(record, statements=6)  # (mean, each of 2 architectures) x (1/K share, full budget)
    assert [c["baseline"]["name"] for c in claims[:2]] == ["alone, 1/K share", "alone, full budget"]
    assert set(record["config"]["chosen_lr"]) == {"hyperppo", "alone-share", "alone-full"}
    assert [len(r) for r in record["per_seed"]["alone-share"]] == [2]  # seeds x architectures


def test_chain_xml_and_lqr_expert_stabilise_upright():
    chain = random_chain(torch.Generator().manual_seed(3))
    assert 2 <= chain.n <= 5 and chain.context(5).shape == (chain.n, 4)
    k = lqr_gain(chain)
    assert k.shape == (chain.n, 2 * chain.n)
    x0 = torch.cat([torch.full((chain.n,), 0.05), torch.zeros(chain.n)])
    held = rollout(chain, lambda x: -k @ x, x0, 200)
    fallen = rollout(chain, lambda x: torch.zeros(chain.n), x0, 200)
    assert held[-1].abs().max() < 0.02 and fallen[-1, : chain.n].abs().max() > 0.5
    with pytest.raises(ValueError, match="Chain: need as many positive lengths"):
        Chain((0.3, 0.2), (1.0,))


@pytest.mark.parametrize("cls", [ModuMorph, ConcatContext])
def test_morphology_controllers_ignore_padded_limbs(cls):
    torch.manual_seed(0)
    model = cls()
    obs, ctx = torch.randn(2, 5, 2), torch.randn(2, 5, 4)
    pad = torch.tensor([[False] * 3 + [True] * 2] * 2)
    out = model(obs, ctx, pad)
    assert (out[:, 3:] == 0).all()
    trimmed = model(obs[:, :3], ctx[:, :3], pad[:, :3])
    torch.testing.assert_close(out[:, :3], trimmed, rtol=1e-5, atol=1e-5)
    obs2 = obs.clone()
    obs2[:, 3:] += 10.0  # what the padded limbs observe cannot matter
    torch.testing.assert_close(model(obs2, ctx, pad), out)


def test_modumorph_limb_weights_come_from_context():
    torch.manual_seed(0)
    model = ModuMorph()
    obs = torch.randn(1, 1, 2).expand(4, 3, 2)  # every limb observes the same thing
    ctx, pad = torch.randn(4, 3, 4), torch.zeros(4, 3, dtype=torch.bool)
    out = model(obs, ctx, pad)
    assert out.std() > 1e-3  # only the contexts differ
    with pytest.raises(ValueError, match=r"ModuMorph: expected obs \(B, L, 2\)"):
        model(obs, ctx[:, :2], pad)


def test_reproduce_modumorph_quick(tmp_path, check_claims):
    cli.main(["reproduce", "modumorph", "--quick", "--out", str(tmp_path)])
    assert (tmp_path / "modumorph-quick.json").exists() and (tmp_path / "modumorph.png").exists()
    record = json.loads((tmp_path / "modumorph-quick.json").read_text())
    claims = check_claims(record, statements=2)
    assert [c["direction"] for c in claims] == ["higher", "lower"]  # success, action error


@pytest.mark.parametrize("algo", [TD3, SAC])
def test_agents_accept_a_hyper_actor(algo):
    agent = algo(3, 1, SMALL, SMALL, seed=0)  # hyper critic and state-conditioned hyper actor
    assert isinstance(agent.actor, HyperActor)
    before = [p.detach().clone() for p in agent.actor.parameters() if p.requires_grad]
    batch = _bandit_batch()
    for _ in range(2):
        agent.update(batch)
    after = [p for p in agent.actor.parameters() if p.requires_grad]
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
    a = agent.act(torch.randn(3), explore=True)
    assert a.shape == (1,) and a.abs().max() <= 1


def test_rollout_reports_a_diverged_simulation():
    chain = Chain((0.3, 0.3), (0.5, 0.5))
    states = rollout(chain, lambda x: torch.full((2,), 1e12), torch.zeros(4), 50)
    assert torch.isinf(states[-1]).all() and len(states) <= 51
