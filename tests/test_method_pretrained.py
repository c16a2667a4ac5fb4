"""save_pretrained / from_pretrained of method objects: one row per method, the same checks for each."""

import json

import pytest
import torch
from safetensors import safe_open
from torch import nn

from hypernetworks import methods
from hypernetworks.methods.adapters import GeneratedAdapters, HyperSteer
from hypernetworks.methods.continual import HyperCL
from hypernetworks.methods.ghn import GHN, build_graph
from hypernetworks.methods.hyperclip import HyperCLIP
from hypernetworks.methods.inr import DOH, siren
from hypernetworks.methods.malmen import MALMEN
from hypernetworks.methods.rl import ArchPolicy, HyperActor, HyperCritic, MLPCritic, ModuMorph
from hypernetworks.methods.sie import SIE


def mlp(width=16, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(8, width), nn.LayerNorm(width), nn.Linear(width, 4)).eval()


def malmen_out(editor, model):
    x, y = torch.randn(5, 8, generator=torch.Generator().manual_seed(4)), torch.tensor([0, 1, 2, 3, 0])
    return editor.edited(model, editor.shifts(editor.cache(model, x, y)), x)


def malmen(target):
    editor = MALMEN(target, layers=["0", "2"], rank=4)
    x = torch.randn(32, 8, generator=torch.Generator().manual_seed(3))
    editor.observe(editor.cache(target, x, torch.randint(0, 4, (32,), generator=torch.Generator().manual_seed(3))))
    return editor


def hypercl(target):
    learner = HyperCL(target, num_tasks=3, hidden=(8,), include=["0.*", "2.weight"])
    gen = torch.Generator().manual_seed(3)
    learner.fit([(torch.randn(4, 8, generator=gen), torch.randint(0, 4, (4,), generator=gen))], 1, steps=2)
    return learner  # trained on task 1: the regulariser's targets and the learned flags are state too


def ghn_out(ghn, target):
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    return ghn([build_graph(net, torch.zeros(1, 1, 8, 8))])[0]["3.weight"]


# name: (build(target or None), fresh target(seed, width) or None, outputs(obj, target))
CASES = {
    "malmen": (malmen, mlp, malmen_out),
    "generated_adapters": (
        lambda t: GeneratedAdapters(t, num_tasks=3, target_modules=["0", "2"], norm_modules=["1"], rank=2, hidden=(8,)),
        mlp, lambda m, t: m(torch.randn(3, 8, generator=torch.Generator().manual_seed(4)),
                            cond=torch.tensor([0, 2, 1]))),
    "doh": (lambda t: DOH(t, latent_dim=24, seed=5),
            lambda seed=0, width=16: (torch.manual_seed(seed), siren(2, width, 2, 1))[1],
            lambda m, t: m(torch.rand(10, 2, generator=torch.Generator().manual_seed(4)))),
    "hyperppo": (lambda t: ArchPolicy(in_dim=4, out_dim=2, archs=[(2,), (4, 2)], hidden=(8,)), None,
                 lambda m, t: m(torch.randn(2, 4, generator=torch.Generator().manual_seed(4)), torch.tensor([0, 1]))),
    "hypercl": (hypercl, mlp, lambda m, t: m(torch.randn(3, 8, generator=torch.Generator().manual_seed(4)), 1)),
    "ghn": (lambda t: GHN(hidden=16, decoder_hidden=16), None, ghn_out),
    "sie": (lambda t: SIE(width=4), None,
            lambda m, t: m.loss(*torch.rand(2, 4, 1, 28, 28, generator=torch.Generator().manual_seed(4)),
                                torch.randn(4, 2, generator=torch.Generator().manual_seed(5)))[0]),
    "hyperclip": (lambda t: HyperCLIP(text_dim=8, width=8, groups=2), None,
                  lambda m, t: m(torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(4)),
                                 torch.nn.functional.normalize(torch.randn(2, 8, generator=torch.Generator()
                                                                           .manual_seed(5)), dim=-1))),
    "modumorph": (lambda t: ModuMorph(d_model=8, heads=2), None,
                  lambda m, t: m(torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(4)),
                                 torch.randn(2, 3, 4, generator=torch.Generator().manual_seed(5)),
                                 torch.tensor([[False, False, True]] * 2))),
    "hyper_critic": (lambda t: HyperCritic(state_dim=3, action_dim=2, dynamic_hidden=(8,), primary_hidden=(8,)), None,
                     lambda m, t: m(torch.randn(4, 3, generator=torch.Generator().manual_seed(4)),
                                    torch.rand(4, 2, generator=torch.Generator().manual_seed(5)))),
    "mlp_critic": (lambda t: MLPCritic(state_dim=3, action_dim=2, hidden=(8, 8)), None,
                   lambda m, t: m(torch.randn(4, 3, generator=torch.Generator().manual_seed(4)),
                                  torch.rand(4, 2, generator=torch.Generator().manual_seed(5)))),
    "hyper_actor": (lambda t: HyperActor(state_dim=3, out_dim=2, context_dim=2, dynamic_hidden=(8,)), None,
                    lambda m, t: m(torch.randn(4, 3, generator=torch.Generator().manual_seed(4)),
                                   torch.randn(4, 2, generator=torch.Generator().manual_seed(5)))),
    "hypersteer": (lambda t: HyperSteer(t, module="1", cond_features=6, width=16, hidden=(8,)),
                   lambda seed=0, width=16: (torch.manual_seed(seed),
                                             nn.Sequential(nn.Embedding(20, width), nn.Linear(width, width),
                                                           nn.Linear(width, 20)))[1],
                   lambda m, t: m(torch.randint(0, 20, (3, 5), generator=torch.Generator().manual_seed(4)),
                                  cond=torch.randn(3, 6, generator=torch.Generator().manual_seed(5)))),
}


def perturb(obj, seed=7):
    """Move every trainable float tensor off its init, so nothing passes on a fresh object's values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in obj.parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn(p.shape, generator=gen))


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_is_bit_exact(name, tmp_path):
    build, fresh, outputs = CASES[name]
    target = fresh() if fresh else None
    obj = build(target)
    perturb(obj)
    obj.save_pretrained(tmp_path, trained_by="a test")
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    record = json.loads((tmp_path / "config.json").read_text())
    assert type(obj.config).from_dict(record["config"]) == obj.config and record["trained_by"] == "a test"
    again = fresh() if fresh else None  # the same frozen target, built again
    torch.manual_seed(123)  # a fresh object starts elsewhere: every saved tensor must come from the file
    loaded = type(obj).from_pretrained(tmp_path, target=again)
    a, b = obj.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert not loaded.training  # in eval mode, as transformers' from_pretrained
    assert torch.equal(outputs(loaded, again), outputs(obj.eval(), target))


def test_adapters_store_no_tensor_of_the_frozen_model(tmp_path):
    model = CASES["generated_adapters"][0](mlp())
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as saved:
        keys = list(saved.keys())
    assert set(keys) == {k for k in model.state_dict() if not k.startswith("lora.target.")}  # the rest, all of it


def test_mismatches_are_refused_with_a_named_tensor(tmp_path):
    editor = malmen(mlp())
    editor.save_pretrained(tmp_path)
    wrong = r"MALMEN.from_pretrained: 'nets\.8x12\.scale' is absent in .*, \(2, 1, 20\) here"
    with pytest.raises(ValueError, match=wrong):
        MALMEN.from_pretrained(tmp_path, target=mlp(width=12))
    with pytest.raises(ValueError, match="holds 'hypernetworks.methods.malmen.editor.MALMEN/1', not"):
        DOH.from_pretrained(tmp_path, target=siren(2, 16, 2, 1))
    with pytest.raises(TypeError, match="MALMEN.from_pretrained: needs the target module"):
        MALMEN.from_pretrained(tmp_path)
    ArchPolicy(in_dim=4, out_dim=2).save_pretrained(tmp_path / "pi")
    with pytest.raises(TypeError, match="ArchPolicy.from_pretrained: builds its own model"):
        ArchPolicy.from_pretrained(tmp_path / "pi", target=mlp())


def test_every_registered_class_with_trained_state_can_be_saved():
    from hypernetworks.methods._pretrained import Pretrained

    classes = {m: methods.get_method(m).builder for m in methods.list_methods()}
    savable = sorted(n for n, c in classes.items() if isinstance(c, type) and issubclass(c, Pretrained))
    assert {"continual", "doh", "ghn2", "hyperclip", "hyperppo", "malmen", "modumorph", "sie"} <= set(savable)
