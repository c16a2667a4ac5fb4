"""save_pretrained / from_pretrained: bit-exact round trips, refused mismatches, the hub layout."""

import json

import pytest
import torch
from torch import nn

import hypernetworks as hn


def target(width=16):
    return nn.Sequential(nn.Linear(5, width), nn.LayerNorm(width), nn.ReLU(), nn.Linear(width, 3))


CASES = {
    "full_residual": lambda t: hn.HyperNetwork(t, hn.ParamSpec.from_module(t, include=["3.*", "1.*"]),
                                               encoder=hn.encoders.Embedding(4, 8), head=hn.heads.Full(hidden=(16,)),
                                               mode="residual"),
    "chunked_mip": lambda t: hn.HyperNetwork(t, encoder=hn.encoders.Scalars(2, "mip"),
                                             head=hn.heads.Chunked(32, hidden=(8,), activation=nn.GELU)),
    "per_tensor_lora": lambda t: hn.HyperNetwork(t, hn.ParamSpec.from_module(t, include=["0.weight", "3.weight"]),
                                                 encoder=hn.encoders.MLP(5, 8), head=hn.heads.PerTensor(shared=True),
                                                 mode="lora", rank=3, init="zero_delta"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_round_trip_is_bit_exact(name, tmp_path):
    torch.manual_seed(0)
    hnet = CASES[name](target())
    with torch.no_grad():  # move every tensor off its init, the target's too
        for p in hnet.parameters():
            p.add_(0.01 * torch.randn_like(p))
    hnet.save_pretrained(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "model.safetensors"}
    torch.manual_seed(1)  # a different fresh target: every tensor must come from the files
    loaded = hn.HyperNetwork.from_pretrained(tmp_path, target=target())
    a, b = hnet.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cond = hnet.encoder.example(4, torch.Generator().manual_seed(2))
    x = torch.randn(4, 5)
    assert torch.equal(loaded(x, cond=cond), hnet(x, cond=cond))
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["options"]["mode"] == hnet.mode and config["spec"] == hnet.spec.names


def test_a_mismatched_target_is_refused_naming_the_tensor(tmp_path):
    CASES["full_residual"](target()).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"'target.0.weight' is \(16, 5\) in .*, \(8, 5\) here"):
        hn.HyperNetwork.from_pretrained(tmp_path, target=target(width=8))
    with pytest.raises(ValueError, match=r"the target has no parameter '3.weight'"):
        hn.HyperNetwork.from_pretrained(tmp_path, target=nn.Sequential(nn.Linear(5, 16), nn.LayerNorm(16)))


def test_push_to_hub_uploads_the_saved_files(monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    uploaded = {}

    class FakeApi:
        def create_repo(self, repo_id, exist_ok):
            uploaded["repo"] = repo_id

        def upload_folder(self, repo_id, folder_path, **kwargs):
            from pathlib import Path
            uploaded["files"] = sorted(p.name for p in Path(folder_path).iterdir())
            return f"https://hub/{repo_id}/commit/1"

    monkeypatch.setattr(hub, "HfApi", FakeApi)
    url = CASES["chunked_mip"](target()).push_to_hub("me/hnet")
    assert uploaded == {"repo": "me/hnet", "files": ["config.json", "model.safetensors"]} and url.endswith("/1")


def test_a_target_with_tied_weights_round_trips(tmp_path):
    class TiedLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.mix, self.head = nn.Embedding(11, 6), nn.Linear(6, 6), nn.Linear(6, 11)
            self.head.weight = self.emb.weight

        def forward(self, ids):
            return self.head(self.mix(self.emb(ids)).tanh())

    torch.manual_seed(0)
    hnet = hn.HyperNetwork(TiedLM(), hn.ParamSpec.from_module(TiedLM(), include=["mix.*"]),
                           encoder=hn.encoders.Embedding(3, 4), head=hn.heads.Full(hidden=(8,)), mode="residual")
    with torch.no_grad():
        hnet.target.emb.weight.add_(1.0)
    hnet.save_pretrained(tmp_path)
    loaded = hn.HyperNetwork.from_pretrained(tmp_path, target=TiedLM())
    assert loaded.target.head.weight is loaded.target.emb.weight
    ids = torch.randint(0, 11, (2, 5))
    assert torch.equal(loaded(ids, cond=torch.tensor([0, 2])), hnet(ids, cond=torch.tensor([0, 2])))
