import math

import pytest
import torch

from hypernetworks.methods.inr import (
    DOH,
    FourierFeatures,
    coordinate_grid,
    fourier_mlp,
    psnr,
    quantize,
    quantized_bits,
    siren,
    ssim,
)


def test_siren_initialisation_bounds():
    torch.manual_seed(0)
    net = siren(2, 64, 3, 1, omega0=30.0)
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    assert linears[0].weight.abs().max() <= 1 / 2
    for lin in linears[1:]:
        assert lin.weight.abs().max() <= math.sqrt(6 / lin.in_features) / 30 + 1e-7
    out = net(coordinate_grid(16, 16))
    assert out.shape == (256, 1) and out.std() < 1.0  # starts on a unit scale


def test_coordinate_grid_and_metrics():
    grid = coordinate_grid(2, 4)
    assert grid.shape == (8, 2)
    assert torch.allclose(grid[0], torch.tensor([-0.5, -0.75])) and grid.abs().max() < 1
    target = torch.zeros(4, 1, 8, 8)
    assert psnr(target + 0.1, target).item() == pytest.approx(20.0, abs=1e-4)
    assert psnr(target + 0.1, target, dim=(1, 2, 3)).shape == (4,)
    img = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(ssim(img, img), torch.ones(2))
    assert (ssim(img + 0.3 * torch.randn_like(img), img) < 0.9).all()


def test_fourier_features_are_seeded():
    a, b = FourierFeatures(2, 8, seed=1), FourierFeatures(2, 8, seed=1)
    assert torch.equal(a.B, b.B) and not torch.equal(a.B, FourierFeatures(2, 8, seed=2).B)
    assert fourier_mlp(2, 8, 16, 2, 3)(torch.rand(5, 2)).shape == (5, 3)


def test_quantize_counts_bits_and_bounds_the_error():
    t = torch.randn(100)
    q, bits = quantize(t, 4)
    assert bits == 100 * 4 + 64
    assert (q - t).abs().max() <= (t.max() - t.min()) / 15 / 2 + 1e-6
    assert q.unique().numel() <= 16
    with pytest.raises(ValueError, match=r"bits must lie in \[1, 16\]"):
        quantize(t, 0)
    net = siren(2, 8, 1, 1)
    params, total = quantized_bits(net, 8)
    assert total == sum(p.numel() * 8 + 64 for p in net.parameters())
    assert set(params) == set(dict(net.named_parameters()))


def test_doh_stores_only_the_code_and_biases_and_fits_an_image():
    from skimage import data

    torch.manual_seed(0)
    model = DOH(siren(2, 16, 2, 1), latent_dim=128, seed=3)
    trained = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trained == ["z", "biases.0_bias", "biases.2_bias", "biases.4_bias"]  # weights come from P z
    import copy

    # P is regenerated from the seed
    assert torch.equal(DOH(copy.deepcopy(model.target), latent_dim=128, seed=3).projection, model.projection)
    assert not torch.equal(DOH(copy.deepcopy(model.target), latent_dim=128, seed=4).projection, model.projection)
    assert "projection" not in model.state_dict()
    weights = model.generate()
    for name, w in model.target.named_parameters():  # weights start on the INR's own init scale
        if w.dim() == 2:
            assert 0.7 < (weights[name].std() / w.std()).item() < 1.4, name
    img = torch.tensor(data.camera()[::16, ::16], dtype=torch.float32) / 255  # 32 x 32
    coords, y = coordinate_grid(32, 32), img.reshape(-1, 1)
    before = psnr(model(coords), y).item()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(300):
        loss = (model(coords) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert psnr(model(coords), y).item() > before + 3
    z_q, b_q, bits = model.quantized(8)
    assert bits == (128 + 16 + 16 + 1) * 8 + 4 * 64
    assert psnr(model(coords, z_q, b_q), y).item() > before + 2
    with pytest.raises(ValueError, match="latent_dim must be >= 1"):
        DOH(siren(2, 4, 1, 1), latent_dim=0)


# --- adaptation from a few observations ---------------------------------------------------------


def observations(batch=4, k=20, seed=0):
    gen = torch.Generator().manual_seed(seed)
    coords = torch.rand(batch, k, 2, generator=gen) * 2 - 1
    values = torch.sin(3 * coords[..., :1]) * torch.rand(batch, 1, 1, generator=gen)
    return coords, values


def test_set_encoder_is_permutation_invariant():
    from hypernetworks.methods.inr import SetEncoder

    torch.manual_seed(0)
    enc = SetEncoder(3, 20, dim=8)
    obs = torch.randn(2, 20, 3)
    torch.testing.assert_close(enc(obs[:, torch.randperm(20)]), enc(obs), atol=1e-5, rtol=1e-4)
    assert enc(obs).shape == (2, 8)


def test_hyperplanes_starts_at_the_shared_inr_and_learns():
    from hypernetworks.methods.inr import hyperplanes

    torch.manual_seed(0)
    inr = siren(2, 16, 2, 1)
    hnet = hyperplanes(inr, in_features=3, set_size=20, dim=16, hidden=(32,))
    coords, values = observations()
    obs = torch.cat([coords, values], -1)
    torch.testing.assert_close(hnet(coords, cond=obs), inr(coords))  # Δθ = 0 at the start
    opt = torch.optim.Adam([p for p in hnet.parameters() if p.requires_grad], lr=1e-3)
    first = None
    for _ in range(60):
        loss = (hnet(coords, cond=obs) - values).square().mean()
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first / 2
    full = hyperplanes(siren(2, 16, 2, 1), in_features=3, set_size=20, dim=16, full=True)
    assert full.mode == "absolute" and full(coords, cond=obs).shape == (4, 20, 1)


def test_sgd_adaptation_is_batched_and_independent_per_signal():
    from hypernetworks import functional_call
    from hypernetworks.methods.inr import adapt_sgd

    torch.manual_seed(0)
    inr = siren(2, 16, 2, 1)
    coords, values = observations()
    params = adapt_sgd(inr, coords, values, steps=5, lr=1e-2)
    alone = adapt_sgd(inr, coords[:1], values[:1], steps=5, lr=1e-2)
    for name in params:
        torch.testing.assert_close(params[name][:1], alone[name], atol=1e-5, rtol=1e-4)
    before = (inr(coords) - values).square().mean()
    after = (functional_call(inr, params, (coords,), per_example=True) - values).square().mean()
    assert after < before


def test_fit_inr_and_doh_fit():
    from hypernetworks.methods.inr import fit_inr

    torch.manual_seed(0)
    coords = coordinate_grid(16, 16)
    values = torch.sin(4 * coords[:, :1]) * coords[:, 1:]
    net = siren(2, 16, 2, 1)
    before = (net(coords) - values).square().mean().item()
    assert fit_inr(net, coords, values, steps=100, lr=1e-3, batch=64) < before / 2
    doh = DOH(siren(2, 16, 2, 1), latent_dim=64)
    w0, start = doh.generate()["0.weight"].clone(), psnr(doh(coords), values).item()
    doh.fit(coords, values, steps=100, lr=1e-2)
    assert psnr(doh(coords), values).item() > start + 1.5
    assert not torch.equal(doh.generate()["0.weight"], w0) and not doh.projection.requires_grad
    with pytest.raises(ValueError, match="steps must be >= 1"):
        fit_inr(net, coords, values, steps=0, lr=1e-3)


def test_set_encoder_reads_coordinates_as_fourier_features():
    from hypernetworks.methods.inr import SetEncoder, hyperplanes

    torch.manual_seed(0)
    enc = SetEncoder(3, 20, dim=8, fourier=16, sigma=3.0, seed=1)
    assert enc.phi[0].in_features == 2 * 16 + 1 and enc.features.B.shape == (2, 16)
    obs = torch.randn(2, 20, 3)
    torch.testing.assert_close(enc(obs[:, torch.randperm(20)]), enc(obs), atol=1e-5, rtol=1e-4)
    inr = siren(2, 16, 2, 1)
    hnet = hyperplanes(inr, in_features=3, set_size=20, dim=16, fourier=8)
    coords, values = observations()
    torch.testing.assert_close(hnet(coords, cond=torch.cat([coords, values], -1)), inr(coords))
    with pytest.raises(ValueError, match="coords must lie in"):
        SetEncoder(2, 20, fourier=4, coords=2)


def test_rate_interpolation():
    from hypernetworks.experiments.inr import _interp

    assert _interp(0.5, [0.0, 1.0, 2.0], [10.0, 20.0, 40.0]) == 15.0
    assert _interp(1.5, [0.0, 1.0, 2.0], [10.0, 20.0, 40.0]) == 30.0
    assert _interp(2.5, [0.0, 1.0, 2.0], [10.0, 20.0, 40.0]) is None


def test_reproduce_inr_quick(tmp_path, check_claims):
    import json

    from hypernetworks import cli

    cli.main(["reproduce", "inr", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "inr-quick.json").read_text())
    methods = {r["method"] for r in record["runs"] if r["part"] == "few_shot"}
    assert methods == {"sgd, 1 steps", "sgd, 5 steps", "sgd, 20 steps", "hyperplanes", "universal"}
    sgd = [r for r in record["runs"] if r["part"] == "few_shot" and r["sgd_steps"]]
    assert all(r["sgd_lr"] in {float(s) for s in r["val_psnr_by_sgd_lr"]} for r in sgd)  # chosen on validation
    assert {r["part"] for r in record["runs"]} == {"tune_few_shot", "tune_fit", "few_shot", "fit"}
    rd = [r for r in record["runs"] if r["part"] == "fit"]
    assert {r["kind"] for r in rd} == {"doh", "siren"} and all(r["bpp"] > 0 for r in rd)
    for r in rd:  # the paper's count, and the per-tensor ranges apart
        assert r["bpp_with_overhead"] * 32**2 == r["bits"] + r["overhead_bits"]
    doh = next(r for r in rd if r["kind"] == "doh")
    assert doh["bits"] == (doh["values_stored"]) * 8 + 32 and doh["overhead_bits"] == 5 * 64
    claims = check_claims(record, statements=4)  # 3 few-shot claims, one per photo size
    assert [c["kind"] for c in claims[:3]] == ["paired", "paired", "target"]
