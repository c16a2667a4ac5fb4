"""``methods.create`` passes a builder's keyword-only arguments (such as ``calibration``) through."""

import pytest
import torch
from torch import nn

from hypernetworks import cli, methods
from hypernetworks.methods.adapters import AdapterConfig, text_to_lora


def net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))


def test_create_passes_calibration_to_the_builder():
    calibration = torch.randn(16, 3, generator=torch.Generator().manual_seed(1)) + 5  # far from the default draw
    options = {"cond_features": 3, "target_modules": ["0", "2"], "rank": 2}
    made = methods.create("text_to_lora", net(), calibration=calibration, **options)
    direct = text_to_lora(net(), AdapterConfig(**options), calibration=calibration)
    default = methods.create("text_to_lora", net(), **options)
    a, b, c = made.state_dict(), direct.state_dict(), default.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same object as the direct call
    assert any(not torch.equal(a[k], c[k]) for k in a)  # and the calibration changed the init
    assert methods.keyword_arguments(methods.get_method("text_to_lora").builder) == ["calibration"]
    with pytest.raises(TypeError, match=r"create\('text_to_lora'\): AdapterConfig: unknown option 'calibrate'"):
        methods.create("text_to_lora", net(), calibrate=calibration, **options)


def test_cli_shows_keyword_arguments(capsys):
    cli.main(["methods", "text_to_lora"])
    assert "create('text_to_lora', target, **AdapterConfig, calibration=...)" in capsys.readouterr().out
