"""The shared verdict helpers on their own: what they accept as a number or a list of numbers."""
from __future__ import annotations

import numpy as np
import pytest

from autograder.checks import Fail, numbers
from autograder.wire import Array


def tensor(*values) -> Array:
    data = np.asarray(values[0] if len(values) == 1 else values, dtype=np.float32)
    return Array(values=data, kind="tensor", dtype="torch.float32")


def test_history_of_zero_d_tensors_counts_as_numbers():
    """Check that a history of 0-d tensors (loss, not loss.item()) is read like a list of floats"""
    floats = numbers([0.9, 0.5, 0.25], "train_losses")
    assert np.allclose(numbers([tensor(0.9), tensor(0.5), tensor(0.25)], "train_losses"), floats)
    assert np.allclose(numbers([0.9, tensor(0.5), tensor([0.25])], "train_losses"), floats)


@pytest.mark.parametrize("bad", [[tensor(0.9, 0.5)], [True, 0.5], ["0.9"], [], [tensor(float("nan"))]])
def test_lists_that_are_not_numbers_fail(bad):
    """Check that multi-element tensors, booleans, strings, empty lists and NaN still fail"""
    with pytest.raises(Fail):
        numbers(bad, "train_losses")
