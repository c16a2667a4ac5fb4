import pytest
import torch

from hypernetworks.layers import HyperMixing, MLPMixing, SequenceClassifier


def reference_mixing(layer: HyperMixing, x: torch.Tensor) -> torch.Tensor:
    """Y = W2 · σ(W1ᵀ · X) for one sequence (N, d), one head, written out with matmuls."""
    from hypernetworks.layers.hypermixer import sinusoidal_positions

    xp = x + sinusoidal_positions(*x.shape)
    w1 = layer.h1(xp)  # (N, d')
    w2 = w1 if layer.tied else layer.h2(xp)
    return w2 @ layer.activation(w1.T @ x)


@pytest.mark.parametrize("tied", [False, True])
def test_hypermixing_matches_the_formula(tied):
    torch.manual_seed(0)
    layer = HyperMixing(8, 5, tied=tied)
    x = torch.randn(3, 7, 8)
    out = layer(x)
    for i in range(3):
        torch.testing.assert_close(out[i], reference_mixing(layer, x[i]), atol=1e-5, rtol=1e-4)


def test_heads_mix_feature_groups_with_their_own_weights():
    from hypernetworks.layers.hypermixer import sinusoidal_positions

    torch.manual_seed(0)
    layer = HyperMixing(8, 4, heads=2)
    x = torch.randn(6, 8)
    xp = x + sinusoidal_positions(6, 8)
    w1, w2 = layer.h1(xp).view(6, 2, 4), layer.h2(xp).view(6, 2, 4)
    want = torch.cat([w2[:, h] @ layer.activation(w1[:, h].T @ x[:, 4 * h:4 * h + 4]) for h in range(2)], dim=1)
    torch.testing.assert_close(layer(x.unsqueeze(0))[0], want, atol=1e-5, rtol=1e-4)


def test_padding_is_ignored_and_any_length_works():
    torch.manual_seed(0)
    layer = HyperMixing(8, 5)
    x = torch.randn(2, 5, 8)
    padded = torch.cat([x, torch.randn(2, 3, 8)], dim=1)
    mask = torch.zeros(2, 8, dtype=torch.bool)
    mask[:, :5] = True
    torch.testing.assert_close(layer(padded, mask)[:, :5], layer(x), atol=1e-5, rtol=1e-4)
    assert layer(torch.randn(1, 300, 8)).shape == (1, 300, 8)
    with pytest.raises(ValueError, match=r"mask must be a bool tensor of shape \(2, 8\)"):
        layer(padded, mask.float())


def test_mixing_is_permutation_equivariant_without_positions_only():
    torch.manual_seed(0)
    layer = HyperMixing(8, 5)
    x = torch.randn(1, 6, 8)
    perm = torch.randperm(6)
    assert not torch.allclose(layer(x)[:, perm], layer(x[:, perm]), atol=1e-4)  # positions matter


def test_classifiers_and_length_generalisation():
    torch.manual_seed(0)
    x = torch.randn(4, 10, 16)
    for mixer in ("hyper", "mlp", "attention"):
        model = SequenceClassifier(16, 3, mixer=mixer, dim=16, hidden=8, length=10)
        assert model(x).shape == (4, 3)
    longer = torch.randn(4, 20, 16)
    assert SequenceClassifier(16, 3, "hyper", dim=16, hidden=8)(longer).shape == (4, 3)
    with pytest.raises(ValueError, match="cannot change its sequence length"):
        SequenceClassifier(16, 3, "mlp", dim=16, hidden=8, length=10)(longer)
    ids = torch.randint(1, 50, (4, 12))
    mask = torch.rand(4, 12) > 0.3
    assert SequenceClassifier(0, 5, "hyper", dim=16, hidden=8, vocab=50)(ids, mask).shape == (4, 5)
    with pytest.raises(ValueError, match="dim 10 must be divisible by heads 3"):
        HyperMixing(10, 4, heads=3)
    with pytest.raises(ValueError, match="needs length"):
        SequenceClassifier(16, 3, "mlp")


def test_mlp_mixing_mixes_tokens():
    torch.manual_seed(0)
    layer = MLPMixing(4, 8, length=5)
    x = torch.randn(2, 5, 4)
    y = layer(x)
    x2 = x.clone()
    x2[:, 0] += 1
    assert not torch.allclose(layer(x2)[:, 3], y[:, 3])  # token 0 reaches token 3


def test_reproduce_hypermixer_quick(tmp_path, check_claims):
    import json

    from hypernetworks import cli

    cli.main(["reproduce", "hypermixer", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "hypermixer-quick.json").read_text())
    rows = {(s["task"], s["model"]): s for s in record["summary"]}
    assert rows[("fortunes", "mlp-mixer")]["longer_accuracy"] is None  # cannot run longer inputs
    assert rows[("fortunes", "hypermixer")]["longer_accuracy"] is not None
    for task in ("fortunes", "far-match"):
        params = [rows[(task, m)]["params"] for m in ("hypermixer", "mlp-mixer", "transformer")]
        assert max(params) / min(params) < 1.01  # equal parameter counts
        for model in ("hypermixer", "mlp-mixer", "transformer"):  # each evaluated at its best validation rate
            sweep = [r for r in record["sweep"] if (r["task"], r["model"]) == (task, model)]
            assert sorted(r["lr"] for r in sweep) == [3e-4, 1e-3, 3e-3]
            assert all(r["seed"] == record["config"]["tuning_seed"] and "accuracy" not in r for r in sweep)
            assert rows[(task, model)]["lr"] == max(sweep, key=lambda r: r["val_accuracy"])["lr"]
    assert record["config"]["tuning_seed"] not in {r["seed"] for r in record["runs"]}
    assert len(record["tasks"]["fortunes"]["categories"]) == 32
    claims = check_claims(record, statements=6)
    assert sum(c["kind"] == "paired" for c in claims) == 5


def test_far_match_sequences():
    import torch

    from hypernetworks.experiments.hypermixer_tasks import FAR_SYMBOLS, far_match_sequences

    ids, labels = far_match_sequences(400, 32, torch.Generator().manual_seed(0))
    marked = ids >= FAR_SYMBOLS + 2
    assert ids.shape == (400, 32) and (marked.sum(1) == 2).all() and ((ids >= 2) & (ids < 2 * FAR_SYMBOLS + 2)).all()
    first, second = marked[:, :8].float().argmax(1), 24 + marked[:, 24:].float().argmax(1)  # first and last quarter
    assert marked[:, :8].any(1).all() and marked[:, 24:].any(1).all()
    same = ids[torch.arange(400), first] == ids[torch.arange(400), second]
    assert torch.equal(same.long(), labels) and 0.4 < labels.float().mean() < 0.6


def test_fortunes_loader(tmp_path):
    from hypernetworks.data.fortunes import build_vocab, encode, load_fortunes

    texts, labels = load_fortunes(["linux", "perl"])
    assert len(texts) == len(labels) > 500 and set(labels.tolist()) == {0, 1}
    vocab = build_vocab(texts, 100)
    ids, mask = encode(["the the zzzzqq", ""], vocab, 4)
    assert ids[0, 2] == 1 and mask.tolist() == [[True, True, True, False], [True, False, False, False]]
    with pytest.raises(FileNotFoundError, match="fortunes package"):
        load_fortunes(["linux"], path=tmp_path)


# --- DOFA ---------------------------------------------------------------------------------------


def test_dynamic_patch_embed_follows_the_bands():
    from hypernetworks.layers import DynamicPatchEmbed

    torch.manual_seed(0)
    embed = DynamicPatchEmbed(16, 4)
    x = torch.randn(2, 3, 8, 8)
    waves = torch.tensor([0.665, 0.56, 0.49])
    out = embed(x, waves)
    perm = torch.tensor([2, 0, 1])
    torch.testing.assert_close(embed(x[:, perm], waves[perm]), out, atol=1e-5, rtol=1e-4)  # order does not matter
    kernel, bias = embed.generate(waves)
    assert kernel.shape == (16, 3, 4, 4) and bias.shape == (16,)
    want = torch.nn.functional.conv2d(x, kernel, bias, stride=4).flatten(2).transpose(1, 2)
    torch.testing.assert_close(out, want)
    assert embed(x[:, :1], waves[:1]).shape == (2, 4, 16)  # any number of bands
    assert not torch.allclose(embed(x[:, :1], waves[:1]), embed(x[:, :1], waves[1:2]))  # the wavelength matters


def test_dynamic_patch_embed_checks_wavelengths():
    from hypernetworks.layers import DynamicPatchEmbed

    embed = DynamicPatchEmbed(8, 4)
    x = torch.randn(1, 2, 8, 8)
    with pytest.raises(ValueError, match=r"values in nm must be divided by 1000"):
        embed(x, torch.tensor([665.0, 560.0]))
    with pytest.raises(ValueError, match=r"one wavelength per input channel, shape \(2,\), got \(3,\)"):
        embed(x, torch.tensor([0.6, 0.5, 0.4]))
