"""The hidden-check API: a probe runs in the student's process, its verdict runs in the grader's.

An assignment's `solutions/<id>/checks.py` defines:
  CHECKS     list[Check]: each has probe code (exports plain data with `export(...)`) and a verdict
             function `verdict(data, ctx)` that raises `Fail("why")` or returns None.
  reference(ctx_assignment) -> object   built once per grading process from the hidden solution and
             the repository's data; verdicts compare against it.
  HANDOFFS   optional {question: Handoff}: after that question, reference values (and code the
             prompt fully specifies) are put into the student's namespace, so one wrong answer
             costs only its own question's points instead of breaking every later cell.

Verdicts treat all probe data as hostile: use the helpers below, which fail with a clear message
on anything that is not the expected plain type.
"""
from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import REPO_ROOT, Assignment
from .wire import Array, Unsupported


class Fail(Exception):
    """A verdict's failure; the message is shown to the student, so it never contains answers."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Fail(message)


@dataclass(frozen=True)
class Check:
    question: str
    description: str  # what is checked, in the student's words; shown in feedback
    probe: str  # Python run in the student's namespace: get(name), export(**values), inputs
    verdict: Callable[[dict, "Context"], None]
    inputs: Callable[["Context"], dict] | None = None  # fresh inputs drawn at grading time
    hint: str | None = None  # what to try next when this check fails on a known mistake


@dataclass(frozen=True)
class Handoff:
    """What replaces a question's answer in the student's namespace once it has been graded.

    `values(ref)` gives {name: tensor/array/number}; `source` is code run in the namespace
    (for example a reference class whose layers the prompt spells out, or a restore step).
    """

    values: Callable[[Any], dict] | None = None
    source: str | None = None


@dataclass
class Context:
    """What a verdict may use: the reference, the config values and this submission's inputs."""

    ref: Any
    thresholds: dict[str, float]
    budget: dict[str, float]
    rng: np.random.Generator
    inputs: dict = field(default_factory=dict)
    cells: list[str] = field(default_factory=list)  # the submission's code cells, as the grader read them


@dataclass(frozen=True)
class AssignmentChecks:
    checks: list[Check]
    reference: Callable[[Assignment], Any]
    handoffs: dict[str, Handoff]

    def for_question(self, qid: str) -> list[Check]:
        return [c for c in self.checks if c.question == qid]


_LOADED: dict[str, AssignmentChecks] = {}
_REFERENCES: dict[tuple[str, str], Any] = {}
_LOCK = threading.Lock()


def load_checks(aid: str, assignment: Assignment) -> AssignmentChecks:
    """Import `solutions/<aid>/checks.py` (next to the master notebook)."""
    with _LOCK:
        if aid not in _LOADED:
            path = REPO_ROOT / Path(assignment.notebook).parent / "checks.py"
            spec = importlib.util.spec_from_file_location(f"nn4e_checks_{aid.replace('-', '_')}", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            _LOADED[aid] = AssignmentChecks(
                checks=list(module.CHECKS),
                reference=module.reference,
                handoffs=dict(getattr(module, "HANDOFFS", {})),
            )
        return _LOADED[aid]


def reference_for(aid: str, assignment: Assignment) -> Any:
    """The assignment's reference, computed once per process and per configuration."""
    key = (aid, assignment.model_dump_json())
    with _LOCK:
        if key not in _REFERENCES:
            _REFERENCES[key] = _LOADED[aid].reference(assignment) if aid in _LOADED else None
        return _REFERENCES[key]


# -- helpers for verdicts: validate untrusted probe data --------------------------------------

def array(value, name: str, *, kind: str | None = None, dtype: str | None = None,
          shape: tuple | None = None) -> np.ndarray:
    """Return the values of an exported array after checking its type, dtype and shape."""
    if isinstance(value, Unsupported):
        raise Fail(f"`{name}` should be a tensor, but it is a {value.type_name}")
    if not isinstance(value, Array):
        raise Fail(f"`{name}` should be a tensor, but it is a {type(value).__name__}")
    if kind == "tensor" and value.kind != "tensor":
        raise Fail(f"`{name}` should be a torch tensor, not a NumPy array")
    if dtype is not None and value.dtype != dtype:
        raise Fail(f"`{name}` has dtype {value.dtype}; expected {dtype}")
    if shape is not None and value.shape != tuple(shape):
        raise Fail(f"`{name}` has shape {value.shape}; expected {tuple(shape)}")
    return value.values


def number(value, name: str) -> float:
    """A finite real number (bool excluded)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, Array) and value.values.size == 1:
            value = float(value.values.reshape(()))
        else:
            raise Fail(f"`{name}` should be a number")
    value = float(value)
    if not math.isfinite(value):
        raise Fail(f"`{name}` is {value}; expected a finite number")
    return value


def integer(value, name: str) -> int:
    result = number(value, name)
    expect(result == int(result), f"`{name}` should be a whole number")
    return int(result)


def _scalar_like(value) -> bool:
    """A plain number, or an exported one-element array or tensor."""
    if isinstance(value, Array):
        return value.values.size == 1
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def numbers(value, name: str, *, min_len: int = 1) -> np.ndarray:
    """A list of finite numbers, as float64. A list of one-element tensors (a history of
    `loss` instead of `loss.item()`) is as good as a list of floats."""
    if isinstance(value, Array):
        values = np.asarray(value.values, dtype=np.float64).ravel()
    elif isinstance(value, list) and all(_scalar_like(v) for v in value):
        values = np.asarray([number(v, name) for v in value], dtype=np.float64)
    else:
        raise Fail(f"`{name}` should be a list of numbers")
    expect(values.size >= min_len, f"`{name}` is empty" if min_len == 1 else
           f"`{name}` should have at least {min_len} entries")
    expect(bool(np.all(np.isfinite(values))), f"`{name}` contains NaN or infinity")
    return values


def state_dict(value, name: str, expected: dict[str, tuple]) -> dict:
    """Turn an exported state_dict into torch tensors, checking keys and shapes against `expected`."""
    import torch

    if not isinstance(value, dict):
        raise Fail(f"`{name}` should be a state_dict (a dict of tensors)")
    missing = sorted(set(expected) - set(value))
    extra = sorted(set(value) - set(expected))
    expect(not missing and not extra,
           f"`{name}` has parameters {sorted(value)}; expected {sorted(expected)} "
           "(check the layers and their order)")
    tensors = {}
    for key, shape in expected.items():
        values = array(value[key], f"{name}['{key}']", shape=shape)
        expect(values.dtype.kind == "f", f"`{name}['{key}']` should hold floats")
        tensors[key] = torch.from_numpy(np.array(values, dtype=np.float32))
    return tensors


def figure(value, name: str = "the figure") -> dict:
    """A figure summary exported with `figure_summary()`."""
    expect(isinstance(value, dict) and isinstance(value.get("axes"), list),
           f"no figure found for {name}: create it with matplotlib in this question's cell")
    return value


def labelled(axis: dict) -> bool:
    return bool(str(axis.get("xlabel", "")).strip()) and bool(str(axis.get("ylabel", "")).strip())


# -- shared checks ------------------------------------------------------------------------------
TRAINING_SETUP_PROBE = """
opt = get("optimizer")
model = get("model")
group = opt.param_groups[0]
export(criterion=type(get("criterion")).__name__, optimizer=type(opt).__name__,
       lr=float(group["lr"]), weight_decay=float(group.get("weight_decay", 0.0)),
       same_params=[id(p) for p in group["params"]] == [id(p) for p in model.parameters()])
"""


def expect_training_setup(data: dict, *, criterion: str, optimizer: str, lr: float,
                          weight_decay: float | None = None) -> None:
    """Verdict for TRAINING_SETUP_PROBE: loss class, optimiser class and its settings on `model`."""
    expect(data.get("criterion") == criterion, f"use nn.{criterion}() as the criterion")
    expect(data.get("optimizer") == optimizer, f"use optim.{optimizer} as the optimizer")
    expect(abs(number(data.get("lr"), "lr") - lr) < 1e-12, f"use lr={lr:g}")
    if weight_decay is not None:
        expect(abs(number(data.get("weight_decay"), "weight_decay") - weight_decay) < 1e-12,
               f"use weight_decay={weight_decay:g}")
    expect(data.get("same_params") is True, "the optimizer must update this `model`'s parameters")


def expect_logits(out: np.ndarray, reference: np.ndarray, layers: str) -> None:
    """The student's outputs equal the reference architecture's logits on the same inputs."""
    expect(np.allclose(out, reference, rtol=1e-4, atol=1e-5),
           f"the outputs are not the logits of {layers}: is there a softmax (or another layer) at the end? "
           "CrossEntropyLoss applies softmax itself")


DEVICE_CHOICE_PROBE = """
pick = get("pick_device")
export(device_choice={"gpu": faked_cuda(pick, True), "no_gpu": faked_cuda(pick, False)})
"""


def expect_device_choice(data: dict, name: str = "pick_device()") -> None:
    """Verdict for DEVICE_CHOICE_PROBE: the device follows `torch.cuda.is_available()` both ways.

    The probe tells the student's function that a GPU is there and then that none is, so an
    answer that always returns the CPU fails on a machine without a GPU too.
    """
    choice = data.get("device_choice")
    expect(isinstance(choice, dict), f"{name} could not be called")
    for key, wanted in (("gpu", "cuda"), ("no_gpu", "cpu")):
        run = choice.get(key)
        expect(isinstance(run, dict), f"{name} could not be called")
        expect(not run.get("error"), f"{name} raised {str(run.get('error'))[:150]}")
        expect(run.get("type") == "device", f"{name} should return a torch.device, not a {run.get('type')}")
        expect(str(run.get("value")).split(":")[0] == wanted,
               f"{name} returned {run.get('value')} when torch.cuda.is_available() was {key == 'gpu'}: "
               "choose cuda exactly when torch.cuda.is_available() is True")

