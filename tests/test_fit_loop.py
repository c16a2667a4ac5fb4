"""The methods' shared training loop: batches for steps, read again pass after pass."""

import pytest
import torch

from hypernetworks.methods._fit import adam_steps, batches_for


def test_steps_reread_a_list_and_refuse_a_spent_iterator():
    stream, total = batches_for([1, 2], None, 5)
    assert list(stream) == [1, 2, 1, 2, 1] and total == 5
    with pytest.raises(ValueError, match="batches ran out before the steps did"):
        list(batches_for(iter([1, 2]), None, 5)[0])  # an endless loop before
    with pytest.raises(ValueError, match="exactly one of epochs and steps"):
        batches_for([1], 1, 1)


def test_adam_steps_trains():
    w = torch.nn.Parameter(torch.tensor([3.0]))
    losses = adam_steps([w], lambda b: (w - b).square().sum(), [torch.tensor([0.0])], epochs=None, steps=50,
                        lr=0.1, progress=None, desc="test")
    assert len(losses) == 50 and losses[-1] < 0.1 * losses[0]
