"""The shared verdict helpers on their own: what they accept as a number or a list of numbers, the
device-choice check with a faked GPU, and where a check's inputs come from."""
from __future__ import annotations

import re

import numpy as np
import pytest

from autograder.checks import Check, Fail, expect_device_choice, numbers
from autograder.grade import check_rng
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


@pytest.fixture(scope="module")
def faked_cuda():
    """The probe helper: probe_tools.py is the same file in the grader and in the sandbox."""
    from autograder.probe_tools import faked_cuda

    return faked_cuda


def _pick_device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _always_cpu():
    import torch
    return torch.device("cpu")


def _choice(faked_cuda, pick) -> dict:
    return {"device_choice": {"gpu": faked_cuda(pick, True), "no_gpu": faked_cuda(pick, False)}}


def test_device_choice_follows_a_faked_gpu(faked_cuda):
    """Check that pick_device() is asked with a GPU faked present and absent, and torch is restored"""
    torch = pytest.importorskip("torch")
    real = torch.cuda.is_available
    expect_device_choice(_choice(faked_cuda, _pick_device))
    assert torch.cuda.is_available is real and torch.cuda.is_available() is False


@pytest.mark.parametrize("pick, said", [
    (_always_cpu, "returned cpu when torch.cuda.is_available() was True"),
    (lambda: "cuda" if __import__("torch").cuda.is_available() else "cpu", "should return a torch.device"),
    (lambda: 1 / 0, "raised ZeroDivisionError"),
])
def test_device_choice_that_ignores_the_gpu_fails(faked_cuda, pick, said):
    """Check that a hard-coded CPU, a string and an exception each fail with a message naming it"""
    pytest.importorskip("torch")
    with pytest.raises(Fail, match=re.escape(said)):
        expect_device_choice(_choice(faked_cuda, pick))


def _check(question: str, description: str) -> Check:
    return Check(question, description, dict, lambda data, ctx: None)


def test_check_inputs_depend_on_the_seed_and_the_check_only():
    """Check that a check's input stream is fixed by the grading seed and the check, nothing else"""
    first = check_rng(7, _check("q2", "logits on fresh inputs")).random(4)
    assert np.array_equal(first, check_rng(7, _check("q2", "logits on fresh inputs")).random(4))
    assert not np.array_equal(first, check_rng(8, _check("q2", "logits on fresh inputs")).random(4))
    assert not np.array_equal(first, check_rng(7, _check("q3", "logits on fresh inputs")).random(4))
