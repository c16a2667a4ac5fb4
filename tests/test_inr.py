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


def test_doh_stores_only_the_code_and_fits_an_image():
    from skimage import data

    torch.manual_seed(0)
    model = DOH(siren(2, 16, 2, 1), latent_dim=128, seed=3)
    assert list(model.state_dict()) == ["z"] + [f"target.{n}" for n, _ in model.target.named_parameters()]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["z"]
    import copy

    assert torch.equal(DOH(copy.deepcopy(model.target), 128, seed=3).projection, model.projection)  # regenerated
    assert not torch.equal(DOH(copy.deepcopy(model.target), 128, seed=4).projection, model.projection)
    img = torch.tensor(data.camera()[::16, ::16], dtype=torch.float32) / 255  # 32 x 32
    coords, y = coordinate_grid(32, 32), img.reshape(-1, 1)
    before = psnr(model(coords), y).item()
    opt = torch.optim.Adam([model.z], lr=3e-2)
    for _ in range(300):
        loss = (model(coords) - y).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert psnr(model(coords), y).item() > before + 3
    z_q, bits = model.quantized(8)
    assert bits == 128 * 8 + 64 and psnr(model(coords, z_q), y).item() > before + 2
