"""Send a probe or a hand-off into the sandbox as source code, never as a pickle.

A probe is a plain function in an assignment's `probes.py`. Its parameters name the student's
variables it reads (`inputs` is the grader's inputs for the check) and it returns the dict of plain
data its verdict receives. `ship(function)` describes it for `runner.py`:

    {"call": name, "sources": [...], "imports": [[name, module, attribute or None], ...],
     "constants": {name: plain value}}

- `sources`: the function's own source and that of every function or class of the same assignment
  package that it uses, found by reading the names in the source; dependencies come first. A probe
  runs student code, which can walk the stack: it must not use reference code that answers a
  question not yet graded;
- `imports`: every module or imported object it uses (`torch`, `nn`, `np`, `figure_summary`). The
  sandbox imports these itself; `autograder.probe_tools` is `probe_tools` there, and any other
  grader module is refused, because the sandbox has none of the grader;
- `constants`: module-level numbers, strings and tuples of them that it uses (`N_EPOCHS`).

A hand-off's `install` objects are shipped with `closure=False`: only their own source and imports,
run in the student's namespace like a notebook cell, so they use the student's other names (a
reference `MLP` builds on the `Value` class the notebook has by then).

`signature(*objects)` hashes what `ship` would send, so a stored probe reply is reused only while
the probe, its helpers and its inputs function are unchanged.

Both are computed once per object and grader process (reading and parsing the sources cost about
a second of the grader's CPU per submission otherwise): a running grader does not see edits to
an assignment's check package, which the fingerprint of its results records anyway.
"""
from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import sys
import textwrap

from . import wire
from .checks import PARSE_LOCK, parse

TOOLS_MODULE = "autograder.probe_tools"  # the one grader module with a copy in the sandbox
SANDBOX_TOOLS = "probe_tools"
_PLAIN = (bool, int, float, str, type(None))


class ShippingError(TypeError):
    """A probe uses something the sandbox cannot be given; the message says what to change."""


def ship(obj, *, closure: bool = True) -> dict:
    """What `runner.py` needs to rebuild `obj` (a function or class) from source (a new dict each
    call: the caller may change it)."""
    return json.loads(_shipped(obj, closure))


@functools.lru_cache(maxsize=None)
def _shipped(obj, closure: bool) -> str:
    return json.dumps(_ship(obj, closure))


def _ship(obj, closure: bool) -> dict:
    if obj.__module__ == TOOLS_MODULE:
        return {"call": obj.__name__, "sources": [], "imports": [[obj.__name__, SANDBOX_TOOLS, obj.__name__]]}
    shipment = {"call": obj.__name__, "sources": [], "imports": {}, "constants": {}}
    with PARSE_LOCK:  # inspect.getsource and _names_used parse: one grading thread at a time
        _visit(obj, _package(obj), closure, shipment, seen=set(), strict=True)
    shipment["imports"] = sorted(shipment["imports"].values())
    shipment["constants"] = wire.encode(shipment["constants"])
    return shipment


@functools.lru_cache(maxsize=None)
def signature(*objects) -> str:
    """A short hash of the sources (with helpers and constants) of `objects`; None entries are skipped."""
    parts = []
    for obj in objects:
        if obj is None:
            parts.append(None)
            continue
        shipment = {"call": obj.__name__, "sources": [], "imports": {}, "constants": {}}
        with PARSE_LOCK:
            _visit(obj, _package(obj), True, shipment, seen=set(), strict=False)
        shipment["imports"] = sorted(shipment["imports"].values())
        parts.append(shipment)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:16]


def _package(obj) -> str:
    return obj.__module__.rsplit(".", 1)[0]


def _visit(obj, package: str, closure: bool, shipment: dict, seen: set, strict: bool) -> None:
    key = (obj.__module__, obj.__qualname__)
    if key in seen:
        return
    seen.add(key)
    source = textwrap.dedent(inspect.getsource(obj))
    namespace = vars(sys.modules[obj.__module__])
    for name in _names_used(source):
        if name not in namespace or namespace[name] is obj:
            continue  # a builtin, a local or the object itself
        value = namespace[name]
        if inspect.ismodule(value):
            shipment["imports"][name] = [name, _sandbox_module(value.__name__, obj, name, strict), None]
        elif inspect.isclass(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
            home = getattr(value, "__module__", None) or ""
            if home.startswith(package + ".") and home != TOOLS_MODULE:
                if closure:  # a helper of the same assignment: send its source too, before this one
                    _visit(value, package, closure, shipment, seen, strict)
                continue
            shipment["imports"][name] = [name, _sandbox_module(home, obj, name, strict), value.__name__]
        elif not closure:
            continue  # a hand-off installed in the notebook uses the notebook's own value
        elif _plain(value):
            shipment["constants"][name] = value
        elif strict:
            raise ShippingError(f"{obj.__qualname__} uses `{name}`, a {type(value).__name__}, which cannot be sent "
                                "into the sandbox: pass it in the check's inputs, or make it a number or string")
        else:
            shipment["constants"][name] = repr(value)
    shipment["sources"].append(source)


def _sandbox_module(module: str, obj, name: str, strict: bool) -> str:
    if module == TOOLS_MODULE:
        return SANDBOX_TOOLS
    if strict and (module.split(".")[0] in ("autograder", "nn4e_solutions")):
        raise ShippingError(f"{obj.__qualname__} uses `{name}` from {module}, which the sandbox does not have: "
                            f"probes may import the standard library, numpy, torch, matplotlib and {TOOLS_MODULE}")
    return module


def _plain(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return isinstance(value, _PLAIN)


def _names_used(source: str) -> list[str]:
    """Every free name the source reads, in order of first use.

    Parameters and assigned names are left out, so a probe whose parameter is the student's
    `SpiralNet` is not sent the reference class of the same name: a probe calls student code,
    which could find anything the probe holds by walking the stack.
    """
    tree = parse(source)
    bound = {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    bound |= {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store)}
    names = (node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id not in bound)
    return list(dict.fromkeys(names))
