import pytest
import torch
from torch import nn

from hypernetworks import methods
from hypernetworks.methods.malmen import MALMEN, MALMENConfig, ShiftNet


def head(seed=0, i=16, h=12, o=5):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(i, h), nn.ReLU(), nn.Linear(h, o)).requires_grad_(False)


def editor_for(model, layers=("0", "2"), **kw):
    editor = MALMEN(model, layers=list(layers), **kw)
    return editor


def edits(n, i=16, o=5, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, i, generator=g), torch.randint(0, o, (n,), generator=g)


def randomize(editor, seed=3):
    """Non-zero 'up' weights, so the hypernetwork is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for net in editor.nets.values():
            for up in net.up:
                up.weight.copy_(0.3 * torch.randn(up.weight.shape, generator=g))


def grads(module):
    return {k: torch.zeros_like(p) if p.grad is None else p.grad.clone() for k, p in module.named_parameters()}


def test_cache_gives_per_edit_keys_and_value_gradients():
    model = head()
    x, y = edits(7)
    cache = editor_for(model, chunk_size=3).cache(model, x, y)
    u2, d2 = cache["2"]
    hidden = torch.relu(model[0](x))
    torch.testing.assert_close(u2, hidden)
    torch.testing.assert_close(d2, torch.softmax(model(x), -1) - nn.functional.one_hot(y, 5).float())
    assert cache["0"][0].shape == (7, 16) and cache["0"][1].shape == (7, 12)
    full = editor_for(model, chunk_size=100).cache(model, x, y)
    for n in cache:
        torch.testing.assert_close(cache[n][1], full[n][1])


@pytest.mark.parametrize("n", [6, 40])  # under- and over-determined
def test_least_squares_shift_is_the_ridge_solution(n):
    model = head()
    editor = editor_for(model, reg=0.7, blocks=0)
    x, y = edits(n)
    cache = editor.cache(model, x, y)
    editor.observe(cache)
    shifts = editor.shifts(cache)
    for name, (u, delta) in cache.items():
        u_t, d_t = editor.pseudo(name, u, delta)
        d = (u * u_t).sum(-1, keepdim=True) * d_t  # identity net: -η‖u‖²δ
        lam = 0.7
        a = torch.cat([u, lam ** 0.5 * torch.eye(u.shape[1])]).double()
        b = torch.cat([d, torch.zeros(u.shape[1], d.shape[1])]).double()
        expected = torch.linalg.lstsq(a, b).solution.float()
        torch.testing.assert_close(shifts[name], expected, rtol=1e-4, atol=1e-5)


def test_identity_hypernetwork_edit_is_exact_on_independent_keys():
    model = nn.Linear(16, 5).requires_grad_(False)
    x, y = edits(6)  # 6 random keys in 16 dims: linearly independent
    for aggregation, exact in (("least_squares", True), ("sum", False)):
        editor = MALMEN(model, layers=[""], blocks=0, reg=1e-7, lr=3.0, aggregation=aggregation)
        cache = editor.cache(model, x, y)
        editor.observe(cache)
        u, delta = cache[""]
        d = -3.0 / editor.nets["16x5"].mean_key_sq_norm() * u.square().sum(-1, keepdim=True) * delta
        change = editor.edited(model, editor.shifts(cache), x) - model(x)
        assert torch.allclose(change, d, atol=1e-4) == exact  # sum: the edits interfere


@pytest.mark.parametrize("aggregation", ["least_squares", "sum"])
@pytest.mark.parametrize("n", [8, 23])  # fewer edits than key features (N x N system) and more (I x I)
def test_chunked_equals_unchunked_and_decoupled_gradient_equals_autograd(aggregation, n):
    model = head()
    x, y = edits(n)
    xg = x + 0.1 * torch.randn_like(x)

    def meta_loss(editor, shifts):
        return nn.functional.cross_entropy(editor.edited(model, shifts, xg), y)

    results = []
    for chunk in (4, 100):
        editor = editor_for(model, chunk_size=chunk, aggregation=aggregation, reg=2.0)
        randomize(editor)
        cache = editor.cache(model, x, y)
        editor.observe(cache)
        loss = editor.meta_backward(cache, lambda s, e=editor: meta_loss(e, s))
        results.append((editor.shifts(cache), loss, grads(editor)))
        # end to end: autograd through the hypernetwork and torch.linalg.solve
        editor.zero_grad()
        meta_loss(editor, editor.shifts(cache, differentiable=True)).backward()
        for k, g in grads(editor).items():
            torch.testing.assert_close(g, results[-1][2][k], rtol=1e-4, atol=1e-6, msg=k)
    (s4, l4, g4), (s100, l100, g100) = results
    torch.testing.assert_close(l4, l100)
    for k in s4:
        torch.testing.assert_close(s4[k], s100[k], rtol=1e-4, atol=1e-6)
    for k in g4:
        torch.testing.assert_close(g4[k], g100[k], rtol=1e-4, atol=1e-6)
    assert g4["nets.16x12.down.0.weight"].abs().sum() > 0 and g4["log_lr"].abs().min() > 0
    assert (g4["log_reg"].abs().min() > 0) == (aggregation == "least_squares")


def test_meta_training_lowers_the_held_out_edit_loss():
    model = head()
    editor = editor_for(model)
    editor.observe(editor.cache(model, *edits(200, seed=9)))

    def held_out():
        with torch.no_grad():
            sets = [edits(8, seed=1000 + k) for k in range(20)]
            return sum(nn.functional.cross_entropy(editor.edited(model, editor.shifts(editor.cache(model, x, y)), x), y)
                       for x, y in sets).item() / len(sets)

    before = held_out()
    opt = torch.optim.Adam(editor.parameters(), lr=3e-2)
    for step in range(100):
        x, y = edits(8, seed=100 + step)
        cache = editor.cache(model, x, y)
        opt.zero_grad()
        editor.meta_backward(cache, lambda s, x=x, y=y: nn.functional.cross_entropy(editor.edited(model, s, x), y))
        opt.step()
    assert held_out() < 0.5 * before


def test_shared_net_for_layers_of_one_shape_and_errors():
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Conv1d(1, 1, 1))
    editor = MALMEN(model, layers=["0", "2"])
    assert list(editor.nets) == ["8x8"] and editor.where == {"0": ("8x8", 0), "2": ("8x8", 1)}
    with pytest.raises(TypeError, match="MALMEN: '4' must be an nn.Linear"):
        MALMEN(model, layers=["4"])
    with pytest.raises(ValueError, match="ShiftNet: no statistics yet"):
        editor.nets["8x8"](torch.randn(2, 8), torch.randn(2, 8), 0)
    with pytest.raises(ValueError, match="ShiftNet: layer must be in"):
        editor.nets["8x8"](torch.randn(2, 8), torch.randn(2, 8), 2)
    with pytest.raises(ValueError, match="MALMEN.cache: expected as many targets"):
        editor.cache(model[:3], torch.randn(3, 8), torch.zeros(2, dtype=torch.long))


def test_shiftnet_starts_as_identity():
    net = ShiftNet(4, 3, 1, rank=2, blocks=2)
    u, d = torch.randn(5, 4), torch.randn(5, 3)
    net.observe(u, d)
    u_t, d_t = net(u, d, 0)
    torch.testing.assert_close(u_t, u)
    torch.testing.assert_close(d_t, d)


def test_config_validation_and_round_trip():
    with pytest.raises(ValueError, match="aggregation must be one of"):
        MALMENConfig(aggregation="mean")
    with pytest.raises(ValueError, match="need rank >= 1"):
        MALMENConfig(blocks=-1)
    cfg = MALMENConfig(rank=8, aggregation="sum")
    assert MALMENConfig.from_dict(cfg.to_dict()) == cfg
    assert methods.get_method("malmen").builder is MALMEN

