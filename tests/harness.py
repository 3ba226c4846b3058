"""Run an assignment's checks in this process, without a sandbox or a notebook.

`outcome(aid, question, description, namespace)` ships the check's probe by its source exactly as
the grader does, rebuilds and calls it with `runner.py`'s own functions against `namespace` (a
dict standing for the student's variables), sends the result through the wire format, and runs
the verdict with the grader's context. Fast tests of verdicts use it with reference objects (the
check must pass) and with the objects of a known mistake (it must fail, saying why).
"""
from __future__ import annotations

import importlib
import json
import sys
from functools import cache

from autograder import checks as checks_api
from autograder import shipping, wire
from autograder.config import REPO_ROOT, load_config
from autograder.grade import check_context, verdict_outcome


@cache
def runner():
    """`runner.py` imported as the sandbox imports it (next to wire.py and probe_tools.py)."""
    sys.path.insert(0, str(REPO_ROOT / "autograder"))
    try:
        return importlib.import_module("runner")
    finally:
        sys.path.remove(str(REPO_ROOT / "autograder"))


@cache
def suite(aid: str):
    assignment = load_config().assignment(aid)
    return assignment, checks_api.load_checks(aid, assignment)


def reference(aid: str):
    assignment, _ = suite(aid)
    return checks_api.reference_for(aid, assignment)


def all_checks(aid: str) -> list[tuple[str, str]]:
    """(question, description) of every check of `aid`: what a verdict test parametrizes over."""
    return [(c.question, c.description) for c in suite(aid)[1].checks]


def find_check(aid: str, question: str, description: str):
    """The check of `question` whose description is `description`, else the one that contains it."""
    _, loaded = suite(aid)
    found = [c for c in loaded.for_question(question) if description == c.description] or \
        [c for c in loaded.for_question(question) if description in c.description]
    assert len(found) == 1, f"{aid} {question}: {len(found)} checks match {description!r}"
    return found[0]


def _native(value):
    """What the runner turns grader inputs into: tensors for tensor arrays."""
    import torch

    if isinstance(value, wire.Array):
        return torch.from_numpy(value.values.copy()) if value.kind == "tensor" else value.values.copy()
    if isinstance(value, dict):
        return {k: _native(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_native(v) for v in value]
    return value


def probe(check, namespace: dict, ctx) -> dict:
    """The probe's reply, as the grader receives it from the sandbox."""
    run = runner()
    shipment = json.loads(json.dumps(shipping.ship(check.probe)))
    try:
        function = run.rebuild(shipment, run.fresh_namespace())
        inputs = _native(wire.decode(json.loads(json.dumps(wire.encode(ctx.inputs)))))
        exported = function(**run.arguments(function, {"inputs": inputs}, namespace))
        return {"ok": True, "data": json.loads(json.dumps(wire.encode(exported)))}
    except run.ProbeError as exc:
        return {"ok": False, "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - as the runner reports a student's exception
        return {"ok": False, "error": run.describe_error(exc)}


def outcome(aid: str, question: str, description: str, namespace: dict, cells: list[str] | None = None) -> dict:
    """{"passed", "message", ...} for one check against `namespace`."""
    assignment, _ = suite(aid)
    check = find_check(aid, question, description)
    ctx = check_context(assignment, load_config().defaults.seed, check, reference(aid), cells or [])
    if check.inputs is not None:
        ctx.inputs = check.inputs(ctx)
    return verdict_outcome(check, probe(check, namespace, ctx), ctx, "ok").to_json()


def module(aid: str, name: str):
    """A module of the assignment's check package, e.g. module("spiral", "reference")."""
    assignment, _ = suite(aid)
    return importlib.import_module(f"{checks_api.assignment_package(aid, assignment)}.{name}")


def unlisted(aid: str, listed, *, repeats: bool = False) -> list[str]:
    """The checks of `aid` that no (question, description substring, ...) entry of `listed` names
    (more than once, too, unless `repeats`): a verdict test must exercise every check."""
    _, loaded = suite(aid)
    named = {f"{c.question}: {c.description}": sum(q == c.question and d in c.description for q, d, *_ in listed)
             for c in loaded.checks}
    return [check for check, count in named.items() if count == 0 or (count > 1 and not repeats)]


def assert_fails(aid: str, question: str, description: str, namespace: dict, word: str,
                 cells: list[str] | None = None) -> None:
    """The check fails on `namespace`, and its message or hint names the mistake with `word`."""
    result = outcome(aid, question, description, namespace, cells)
    assert not result["passed"], f"{aid} {question} {description!r} passed"
    said = result["message"] + " " + (result.get("hint") or "")
    assert word.lower() in said.lower(), f"{word!r} not in {said!r}"
