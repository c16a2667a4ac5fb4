"""ModuMorph's morphology-dependent attention, batched chain rollouts, the LQR data and DAgger training."""

import pytest
import torch

from hypernetworks import methods
from hypernetworks.methods.rl import Chain, ConcatContext, ModuMorph, lqr_gain, random_chain, rollout
from hypernetworks.methods.rl.dagger import ChainSet, DAggerConfig, fit_dagger, upright
from hypernetworks.methods.rl.morph import rollout_batch


def _chains(n=3):
    return [random_chain(torch.Generator().manual_seed(i)) for i in range(n)]


def test_fixed_attention_depends_on_the_morphology_only():
    torch.manual_seed(0)
    model = ModuMorph()
    ctx, pad = torch.randn(2, 4, 4), torch.tensor([[False] * 4, [False] * 3 + [True]])
    att = model.generate(ctx, pad)["attention"]
    assert len(att) == 1 and att[0].shape == (2, 2, 4, 4)
    torch.testing.assert_close(att[0].sum(-1), torch.ones(2, 2, 4))
    assert (att[0][1, :, :, 3] == 0).all()  # nobody attends to a padded limb
    other = ModuMorph(fixed_attention=False).generate(ctx, pad)
    assert other["attention"] == [] and other["embed"]["weight"].shape == (2, 4, 32, 2)
    e1 = model.generate(ctx[:1], pad[:1])["attention"][0]
    ctx2 = ctx[:1].clone()
    ctx2[0, 0, 1] += 1.0  # a heavier first limb changes how every limb attends
    assert not torch.allclose(model.generate(ctx2, pad[:1])["attention"][0][0, :, 2], e1[0, :, 2])


def test_modumorph_is_created_by_name_with_its_config():
    model = methods.create("modumorph", morph_layers=0, fixed_attention=False)
    assert isinstance(model, ModuMorph) and model.morph is None
    with pytest.raises(ValueError, match="divisible by heads"):
        ModuMorph(embed_dim=15)


def test_rollout_batch_matches_single_rollouts():
    chains = _chains(2)
    gains = [lqr_gain(c) for c in chains]
    data = ChainSet(chains, 5, gains)
    ids = torch.tensor([0, 1, 1])
    x0 = data.starts(ids, 0.1, torch.Generator().manual_seed(0))
    batch = rollout_batch([chains[int(i)] for i in ids], lambda x: data.expert(ids, x), x0, 40)
    assert batch.shape == (41, 3, 5, 2)
    for b, i in enumerate(ids.tolist()):
        n, k = chains[i].n, gains[i]
        one = rollout(chains[i], lambda x, k=k: -k @ x, torch.cat([x0[b, :n, 0], x0[b, :n, 1]]), 40)
        torch.testing.assert_close(batch[:, b, :n].transpose(1, 2).flatten(1), one)
    assert upright(batch).all()


def test_chain_set_expert_is_the_lqr_law_on_padded_states():
    chain = Chain((0.3, 0.4), (0.5, 0.7))
    k = lqr_gain(chain)
    data = ChainSet([chain], 4, [k])
    x = data.random_states(torch.zeros(5, dtype=torch.long), torch.Generator().manual_seed(1))
    assert (x[:, 2:] == 0).all()
    expected = -(torch.cat([x[:, :2, 0], x[:, :2, 1]], 1) @ k.T)
    torch.testing.assert_close(data.expert(torch.zeros(5, dtype=torch.long), x)[:, :2], expected)
    obs, ctx, pad = data.inputs(torch.zeros(5, dtype=torch.long), x)
    assert obs.shape == (5, 4, 2) and ctx.shape == (5, 4, 4) and pad[0].tolist() == [False, False, True, True]


@pytest.mark.parametrize("cls", [ModuMorph, ConcatContext])
def test_dagger_fits_the_experts(cls):
    torch.manual_seed(0)
    chains = _chains(3)
    model = cls()
    losses = fit_dagger(model, chains, DAggerConfig(rounds=2, initial_states=64, horizon=30, steps=40, batch_size=64,
                                                    lr=3e-3))
    assert len(losses) == 120 and model.action_scale.item() > 0
    assert sum(losses[-10:]) < 0.5 * sum(losses[:10])  # it learns the experts' torques
    with pytest.raises(ValueError, match="DAggerConfig"):
        DAggerConfig(beta=2.0)
