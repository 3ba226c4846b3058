"""Student notebooks: no solutions, no hidden tests, no outputs, locked plumbing cells."""
from __future__ import annotations

import ast
import json
import re
import sys

import pytest

from autograder.config import REPO_ROOT
from autograder.plan import CONSTANTS_MARKER

STUDENT_NOTEBOOKS = sorted((REPO_ROOT / "assignments").glob("*/*.ipynb"))
MARKERS = re.compile(r"BEGIN SOLUTION|END SOLUTION|# SOLUTION|BEGIN PROMPT|END PROMPT|BEGIN TESTS|"
                     r"END TESTS|# BEGIN QUESTION|# END QUESTION|ASSIGNMENT CONFIG|TEST CONFIG|BEGIN HIDDEN|hidden: *true")


def source(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def solution_lines(aid: str) -> list[str]:
    """Lines of solution code in the master notebook that appear nowhere outside a solution
    (not in the given code, and not in a prompt that states them on purpose)."""
    master = json.loads((REPO_ROOT / "solutions" / aid / f"{aid}.ipynb").read_text())
    prose = "\n".join(source(c) for c in master["cells"] if c["cell_type"] == "markdown")
    lines, other, inside = [], set(), False
    for cell in master["cells"]:
        if cell["cell_type"] != "code":
            continue
        for line in source(cell).splitlines():
            stripped = line.strip()
            if stripped.endswith("# BEGIN SOLUTION") or stripped.startswith("# BEGIN SOLUTION"):
                inside = True
                continue
            if stripped.endswith("# END SOLUTION"):
                inside = False
                continue
            marked = re.sub(r"\s*# SOLUTION( NO PROMPT)?$", "", stripped)
            if (inside or marked != stripped) and len(marked) > 20 and not marked.startswith("#"):
                lines.append(marked)
            else:
                other.add(stripped)
    return [line for line in lines if line not in other and line not in prose]


def test_every_configured_assignment_has_a_student_notebook(config):
    """Check that each assignment in grading.yml has its generated notebook and bundle"""
    for aid in config.assignments:
        assert (REPO_ROOT / "assignments" / aid / f"{aid}.ipynb").exists(), aid
        assert (REPO_ROOT / "autograder" / "bundles" / f"{aid}-autograder.zip").exists(), aid


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda p: p.parent.name)
def test_no_solutions_hidden_tests_or_outputs(path):
    """Check that the student notebook has no solution code, markers, hidden tests or outputs"""
    notebook = json.loads(path.read_text())
    text = "\n".join(source(c) for c in notebook["cells"])
    assert not MARKERS.search(text), MARKERS.search(text).group(0)
    for line in solution_lines(path.parent.name):
        assert line not in text, f"solution code leaked: {line}"
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
    for test in notebook["metadata"].get("otter", {}).get("tests", {}).values():
        for suite in test["suites"]:
            assert all(not case["hidden"] for case in suite["cases"]), "hidden test in student notebook"


@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=lambda p: p.parent.name)
def test_plumbing_cells_are_locked(path):
    """Check that the init, check, export and constants cells are locked"""
    notebook = json.loads(path.read_text())
    plumbing = [c for c in notebook["cells"] if c["cell_type"] == "code" and (
        "otter.Notebook(" in source(c) or "grader.check(" in source(c) or "grader.export(" in source(c)
        or source(c).startswith(CONSTANTS_MARKER))]
    kinds = {"init": "otter.Notebook(", "check": "grader.check(", "export": "grader.export("}
    for kind, needle in kinds.items():
        assert any(needle in source(c) for c in plumbing), f"no {kind} cell"
    for cell in plumbing:
        assert cell["metadata"].get("editable") is False and cell["metadata"].get("deletable") is False, source(cell)


# -- the check packages ---------------------------------------------------------------------------
PACKAGE_FILES = sorted((REPO_ROOT / "solutions").glob("*/*.py"))
SANDBOX_SIDE = [p for p in PACKAGE_FILES if p.name in ("probes.py", "reference.py")]
SANDBOX_IMPORTS = {"numpy", "torch", "torchvision", "matplotlib", "autograder.probe_tools"}
CODE_WORDS = re.compile(r"\b(def |class |import |export\(|get\(\")")


def _strings_outside_docstrings(tree) -> list:
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)}
    return [node for node in ast.walk(tree) if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


@pytest.mark.parametrize("path", PACKAGE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_code_in_string_literals(path):
    """Check that probes and hand-offs are functions, not Python inside strings"""
    for node in _strings_outside_docstrings(ast.parse(path.read_text())):
        if "\n" in node.value.strip() and CODE_WORDS.search(node.value):
            try:
                compile(node.value, "<string>", "exec")
            except SyntaxError:
                continue
            pytest.fail(f"{path.name} line {node.lineno}: Python code inside a string; make it a function")


@pytest.mark.parametrize("path", SANDBOX_SIDE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sandbox_side_modules_import_nothing_of_the_grader(path):
    """Check that probes.py and reference.py import only what the sandbox has at module level"""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [] if node.level else [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert name in SANDBOX_IMPORTS or top in SANDBOX_IMPORTS or top in sys.stdlib_module_names, \
                f"{path}: `import {name}` is not available in the sandbox"


GRADER_SIDE = [p for p in sorted((REPO_ROOT / "autograder").glob("*.py")) if p.name != "runner.py"] + \
    [p for p in PACKAGE_FILES if p not in SANDBOX_SIDE]


@pytest.mark.parametrize("path", GRADER_SIDE, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_grader_parses_python_only_under_its_lock(path):
    """Check that the grader's own process never calls ast.parse outside `checks.parse`: grading
    threads parsing at once make CPython 3.11 raise a SystemError (a grader fault on a correct answer)"""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "parse" \
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "ast":
            inside = path.name == "checks.py" and node.lineno in _lines_of(path, "parse")
            assert inside, f"{path.name} line {node.lineno}: use autograder.checks.parse (it holds PARSE_LOCK)"


def _lines_of(path, function: str) -> range:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            return range(node.lineno, node.end_lineno + 1)
    return range(0)
