"""The hidden-check API: a probe runs in the student's process, its verdict runs in the grader's.

An assignment's checks live in a package, `solutions/<id>/`, one file per job:
  reference.py  the reference models and computations the prompt specifies. Verdicts, hand-offs and
                calibration all use these; it imports only the standard library, numpy and torch,
                because hand-offs send its classes into the sandbox.
  probes.py     probe functions, run in the sandbox (see `shipping.py`). Parameters name the
                student's variables they read (`inputs` is the check's fresh inputs); the returned
                dict of plain data is what the verdict gets. Same imports as reference.py, plus
                `autograder.probe_tools`.
  verdicts.py   trusted code, run here:
                  CHECKS     list[Check]: a probe function and a verdict `verdict(data, ctx)` that
                             raises `Fail("why")` or returns None;
                  reference(assignment) -> object: built once per grading process from the
                             repository's data; verdicts compare against it;
                  HANDOFFS   optional {question: Handoff}: after that question, reference values
                             and code the prompt fully specifies replace the student's answer, so
                             one wrong answer costs only its own question's points.
  calibrate.py  `calibrate(seed) -> {measurement: value}`, run by `python -m autograder calibrate`.

Verdicts treat all probe data as hostile: use the helpers below, which fail with a clear message
on anything that is not the expected plain type.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import sys
import types
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .config import REPO_ROOT, Assignment, ConfigError
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
    probe: Callable[..., dict]  # a function of probes.py (or probe_tools.py), run in the sandbox
    verdict: Callable[[dict, "Context"], None]
    inputs: Callable[["Context"], dict] | None = None  # fresh inputs drawn at grading time
    hint: str | None = None  # what to try next when this check fails on a known mistake


@dataclass(frozen=True)
class Handoff:
    """What replaces a question's answer in the student's namespace once it has been graded.

    `values(ref)` gives {name: tensor/array/number}; `install` are reference classes or functions
    (of reference.py) defined in the namespace from their own source, as a notebook cell would;
    `run` is a function of probes.py, called like a probe after those, whose returned dict is
    put into the namespace (for example a model restored from handed-off weights).
    """

    values: Callable[[Any], dict] | None = None
    install: tuple = ()
    run: Callable[..., dict] | None = None


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


PACKAGE = "nn4e_solutions"  # the assignment packages' names: nn4e_solutions.<id with _ for ->


def assignment_package(aid: str, assignment: Assignment) -> str:
    """Import `solutions/<aid>/` (the master notebook's folder) as a package; return its name.

    Its folder name may hold a hyphen, so it is imported by path, under `nn4e_solutions`.
    """
    name = f"{PACKAGE}.{aid.replace('-', '_')}"
    if name not in sys.modules:
        folder = REPO_ROOT / Path(assignment.notebook).parent
        if not (folder / "verdicts.py").is_file():
            raise FileNotFoundError(f"{folder}/verdicts.py is missing: every assignment needs its checks "
                                    "(see docs/authoring.md)")
        if PACKAGE not in sys.modules:
            parent = types.ModuleType(PACKAGE, "The assignments' check packages, imported by path.")
            parent.__path__ = []
            sys.modules[PACKAGE] = parent
        spec = importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return name


def load_checks(aid: str, assignment: Assignment) -> AssignmentChecks:
    """The checks of `solutions/<aid>/verdicts.py`; ConfigError when grading.yml's weights do not fit them."""
    with _LOCK:
        if aid not in _LOADED:
            module = importlib.import_module(assignment_package(aid, assignment) + ".verdicts")
            _LOADED[aid] = AssignmentChecks(
                checks=list(module.CHECKS),
                reference=module.reference,
                handoffs=dict(getattr(module, "HANDOFFS", {})),
            )
        suite = _LOADED[aid]
    for qid, question in assignment.questions.items():
        count = len(suite.for_question(qid))
        if question.weights is not None and len(question.weights) != count:
            raise ConfigError(f"grading.yml: assignments.{aid}.questions.{qid}.weights has {len(question.weights)} "
                              f"weight(s), but {qid} has {count} check(s) in its verdicts.py: give one per check, "
                              "in that order")
    return suite


def reference_for(aid: str, assignment: Assignment) -> Any:
    """The assignment's reference, computed once per process and per configuration."""
    key = (aid, assignment.model_dump_json())
    with _LOCK:
        if key not in _REFERENCES:
            _REFERENCES[key] = _LOADED[aid].reference(assignment) if aid in _LOADED else None
        return _REFERENCES[key]


# CPython 3.11 keeps the AST constructor's recursion depth in state that every thread shares, so
# two grading threads parsing at once can fail with "SystemError: AST constructor recursion depth
# mismatch" (python/cpython#106905): a grader fault on a correct submission. Every parse in the
# grader's process (verdicts here, `shipping` for probes) holds this lock.
PARSE_LOCK = threading.RLock()  # re-entered: `shipping` holds it around inspect.getsource too


def parse(source: str) -> ast.Module:
    """`ast.parse(source)`, safe to call from several grading threads at once."""
    with PARSE_LOCK:
        return ast.parse(source)


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


# -- verdicts of the shared probes (probe_tools.py) ----------------------------------------------
def expect_training_setup(data: dict, *, criterion: str, optimizer: str, lr: float,
                          weight_decay: float | None = None) -> None:
    """Verdict for `probe_tools.training_setup`: loss class, optimiser class and its settings on `model`."""
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


def expect_device_choice(data: dict, name: str = "pick_device()") -> None:
    """Verdict for `probe_tools.device_choice`: the device follows `torch.cuda.is_available()` both ways.

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



def expect_watched_run(run, name: str, *, batch: str, target: str | None = None,
                       parameters: str | None = None) -> None:
    """Verdict for `probe_tools.watched_run` on the meta device: every batch the model saw was on
    it (else `batch` is the message), every criterion call's prediction and target too (`target`),
    and, when `parameters` is given, the model's parameters (the function had to move the model)."""
    expect(isinstance(run, dict), f"{name} could not be run")
    forward = run.get("forward")
    expect(isinstance(forward, list) and bool(forward),
           f"{name} never called the model (it stopped with: {str(run.get('error', ''))[:120]})")
    expect(all(device == "meta" for device in forward), batch)
    if parameters is not None:
        expect(all(devices == ["meta"] for devices in run.get("parameters") or [None]), parameters)
    if target is not None:
        pairs = run.get("criterion")
        expect(isinstance(pairs, list) and bool(pairs) and all(pair == ["meta", "meta"] for pair in pairs), target)
