"""The ``dofa`` reproduction: its pseudo-band construction, its protocol, and a quick run end to end."""

import json
import math

import pytest
import torch

from hypernetworks.experiments import dofa


def _gauss(x, mu, sigma):
    return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))


def test_band_weights_are_the_normalised_overlaps_of_gaussian_responses():
    lam = torch.linspace(0.1, 1.1, 200_001, dtype=torch.float64)  # µm
    cams = [_gauss(lam, mu_c, dofa.CAMERA_SIGMA) for mu_c in dofa.CAMERA[::-1]]  # R, G, B responses
    want = torch.stack([torch.stack([torch.trapezoid(_gauss(lam, mu_k, dofa.BAND_SIGMA) * cam, lam) for cam in cams])
                        for mu_k in dofa.CENTRES])  # (K, 3)
    want = want / want.sum(1, keepdim=True)
    torch.testing.assert_close(dofa.band_weights(), want.float(), atol=1e-5, rtol=0)


def test_pseudo_bands_are_distinct_smooth_mixes_of_rgb():
    w = dofa.band_weights()
    assert w.shape == (len(dofa.CENTRES), 3) and len(dofa.CENTRES) >= 7
    assert all(0.45 <= c <= 0.70 for c in dofa.CENTRES) and len(set(dofa.CENTRES)) == len(dofa.CENTRES)
    assert (torch.diff(w[:, 0]) > 0).all() and (torch.diff(w[:, 2]) < 0).all()  # redder with wavelength, less blue
    assert torch.cdist(w, w).add(torch.eye(len(w))).min() > 0.01  # no two bands share a mix
    rgb = torch.rand(3, 5, 7)
    bands = dofa.pseudo_bands(rgb)
    assert bands.shape == (len(dofa.CENTRES), 5, 7)
    torch.testing.assert_close(bands[4, 2, 3], (w[4] * rgb[:, 2, 3]).sum())
    with pytest.raises(ValueError, match=r"pseudo_bands: expected an RGB image of shape \(3, H, W\), got \(4, 5, 7\)"):
        dofa.pseudo_bands(torch.rand(4, 5, 7))


def test_training_never_draws_a_held_out_band_or_combination():
    gen = torch.Generator().manual_seed(0)
    combos = [dofa.draw_combo(gen) for _ in range(3000)]
    assert {len(c) for c in combos} == {1, 2, 3, 4}
    assert not set(combos) & set(dofa.HELD_OUT_COMBOS)
    assert all(b in dofa.TRAIN_BANDS for c in combos for b in c)
    assert all(any(b in dofa.HELD_OUT_CENTRES for b in c) for c in dofa.CENTRE_COMBOS)
    assert all(b in dofa.TRAIN_BANDS for c in dofa.HELD_OUT_COMBOS for b in c)


def test_fixed_network_slots_drop_or_place_held_out_bands():
    slot = dofa.TRAIN_BANDS.index
    assert dofa.slots((2, 5), nearest=False) == [(5, slot(5))]
    assert dofa.slots((2,), nearest=True) == [(2, slot(1))]  # 481 and 544 nm tie: the shorter
    assert dofa.slots((1, 2), nearest=True) == [(1, slot(1)), (2, slot(3))]  # 481's slot is taken


def test_crops_are_balanced_and_inside_their_split():
    img = torch.arange(100 * 200, dtype=torch.float32).view(1, 100, 200).expand(len(dofa.CENTRES), -1, -1)
    x, y = dofa.crops([img], "test", 5, torch.Generator().manual_seed(0))
    assert x.shape == (10, len(dofa.CENTRES), 32, 32) and y.tolist() == [0] * 5 + [1] * 5
    cols, rows = x[:, 0, 0, 0] % 200, x[:, 0, 0, 0] // 200
    assert (cols >= 150).all() and (rows[:5] <= 50 - 32).all() and (rows[5:] >= 50).all()


def test_reproduce_dofa_quick(tmp_path, check_claims):
    from hypernetworks import cli

    cli.main(["reproduce", "dofa", "--quick", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "dofa-quick.json").read_text())
    dedicated = {r["combo"] for r in record["runs"] if r["kind"] == "dedicated"}
    assert dedicated == {dofa._name(c) for c in dofa.HELD_OUT_COMBOS + dofa.CENTRE_COMBOS}
    assert len(record["sweep"]) == len(dofa._models()) * len(dofa.QUICK["lrs"])
    claims = check_claims(record, statements=5)  # 2 groups x (zero-filled, dedicated) + nearest slot
    assert {c["baseline"]["name"] for c in claims} == {"fixed, zero-filled", "fixed, nearest slot",
                                                        "dedicated per combination"}
