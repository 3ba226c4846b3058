"""Build student notebooks and otter bundles from the master notebooks with `otter assign`.

Before otter runs, the master is configured from grading.yml: question points, the grading
constants cell, and constant names inside test cells (so the bundle carries the literal values).
After it runs, outputs are made reproducible: deterministic cell ids, sorted JSON, and zips with
fixed timestamps and no timestamp in their names.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

from .config import REPO_ROOT, Assignment, GradingConfig
from .plan import CONSTANTS_MARKER

BUNDLE_DIR = REPO_ROOT / "autograder" / "bundles"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


class BuildError(Exception):
    """A build step failed; the message says which assignment and why."""


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def constants_source(assignment: Assignment) -> str:
    lines = [f"{CONSTANTS_MARKER} (generated from grading.yml by the build; do not edit)"]
    lines += [f"{name} = {value!r}" for name, value in assignment.constants().items()]
    return "\n".join(lines)


def configure_master(master: dict, aid: str, assignment: Assignment) -> dict:
    """Return a copy of the master notebook with grading.yml's points and constants applied."""
    notebook = json.loads(json.dumps(master))
    constants = assignment.constants()
    seen_questions = []
    in_tests = False
    for cell in notebook["cells"]:
        source = _source(cell)
        first = source.strip().splitlines()[0] if source.strip() else ""
        if cell["cell_type"] == "raw" and first == "# ASSIGNMENT CONFIG":
            config = yaml.safe_load(source.split("\n", 1)[1]) or {}
            config["name"] = aid
            cell["source"] = "# ASSIGNMENT CONFIG\n" + yaml.safe_dump(config, sort_keys=False)
        elif cell["cell_type"] == "raw" and first == "# BEGIN QUESTION":
            config = yaml.safe_load(source.split("\n", 1)[1]) or {}
            qid = config.get("name")
            if qid not in assignment.questions:
                raise BuildError(f"{aid}: the master notebook has question {qid!r}, which grading.yml "
                                 f"does not list under assignments.{aid}.questions")
            question = assignment.questions[qid]
            config["points"] = question.points
            config["manual"] = question.manual
            seen_questions.append(qid)
            cell["source"] = "# BEGIN QUESTION\n" + yaml.safe_dump(config, sort_keys=False)
        elif cell["cell_type"] == "raw" and first in ("# BEGIN TESTS", "# END TESTS"):
            in_tests = first == "# BEGIN TESTS"
        elif cell["cell_type"] == "code" and source.startswith(CONSTANTS_MARKER):
            cell["source"] = constants_source(assignment)
        elif cell["cell_type"] == "code" and in_tests and constants:
            pattern = re.compile(r"\b(" + "|".join(map(re.escape, constants)) + r")\b")
            cell["source"] = pattern.sub(lambda m: repr(constants[m.group(1)]), source)
    missing = sorted(set(assignment.questions) - set(seen_questions))
    if missing:
        raise BuildError(f"{aid}: grading.yml lists questions {missing} that the master notebook lacks")
    return notebook


def normalise_student_notebook(notebook: dict, aid: str) -> dict:
    """Deterministic ids, no outputs, locked constants cell."""
    for index, cell in enumerate(notebook["cells"]):
        cell["id"] = f"{aid}-{index:03d}"
        if cell["cell_type"] == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            if _source(cell).startswith(CONSTANTS_MARKER):
                cell.setdefault("metadata", {}).update(deletable=False, editable=False)
    notebook["metadata"].pop("widgets", None)
    notebook["nbformat"], notebook["nbformat_minor"] = 4, 5
    return notebook


def fill_answers(student: dict, solution: dict) -> dict:
    """The student notebook with each answer cell replaced, in order, by the solution's cell.

    The result is what a perfect submission looks like: the release's cell ids and locked cells
    with every answer filled in. The build grades it, and the canned solution is this notebook.
    """
    filled = json.loads(json.dumps(student))
    answers = {kind: [c for c in solution["cells"] if c["cell_type"] == kind
                      and "otter_assign_solution_cell" in c.get("metadata", {}).get("tags", [])]
               for kind in ("code", "markdown")}
    for cell in filled["cells"]:
        if "otter_answer_cell" in cell.get("metadata", {}).get("tags", []):
            if not answers[cell["cell_type"]]:
                raise BuildError("the solution notebook has fewer answer cells than the student notebook")
            cell["source"] = _source(answers[cell["cell_type"]].pop(0))
    return filled


def dump_notebook(notebook: dict) -> str:
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def reproducible_zip(source: Path, target: Path) -> None:
    """Copy a zip with sorted entries, fixed timestamps and fixed permissions."""
    with zipfile.ZipFile(source) as src:
        entries = sorted((info.filename, src.read(info)) for info in src.infolist() if not info.is_dir())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as dst:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name in ("run_autograder", "setup.sh") else 0o644) << 16
            dst.writestr(info, data)
    tmp.replace(target)


def run_otter_assign(master_path: Path, dist: Path, aid: str, tmp: Path) -> None:
    command = [sys.executable, "-m", "otter", "assign", str(master_path), str(dist)]
    # otter runs the tests in a fresh temporary folder: keep it under `tmp`, next to the
    # `datasets` link, so notebooks that read data find it there too.
    env = {**os.environ, "TMPDIR": str(tmp)}
    done = subprocess.run(command, capture_output=True, text=True, cwd=master_path.parent, env=env)
    if done.returncode != 0:
        raise BuildError(f"{aid}: `otter assign` failed: the solution notebook does not pass its own tests "
                         f"or the master notebook is malformed.\n{_otter_summary(done.stdout + done.stderr)}")


def _otter_summary(output: str) -> str:
    """The per-question result lines and the first failure of otter's (long) output."""
    lines = output.strip().splitlines()
    summary = [line.strip() for line in lines if "results:" in line or line.strip().endswith("result:")]
    failure = next((i for i, line in enumerate(lines) if "Failed example" in line), None)
    if failure is not None:
        summary += ["--- first failure ---", *lines[failure:failure + 14]]
    return "\n".join(summary or lines[-25:])


def build_assignment(aid: str, config: GradingConfig, out_root: Path = REPO_ROOT, log=print) -> dict[str, Path]:
    """Build one assignment into `out_root`; return the paths written."""
    assignment = config.assignment(aid)
    master_path = REPO_ROOT / assignment.notebook
    if not master_path.exists():
        raise BuildError(f"{aid}: master notebook {assignment.notebook} not found")
    master = json.loads(master_path.read_text(encoding="utf-8"))
    with tempfile.TemporaryDirectory(prefix=f"nn4e-build-{aid}-") as tmp:
        # Notebooks find their data by walking up to a `datasets/` folder, here as in the repository.
        (Path(tmp) / "datasets").symlink_to(REPO_ROOT / "datasets")
        work = Path(tmp) / "src"
        shutil.copytree(master_path.parent, work, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
        staged = work / f"{aid}.ipynb"
        staged.write_text(dump_notebook(configure_master(master, aid, assignment)), encoding="utf-8")
        if master_path.name != staged.name:
            (work / master_path.name).unlink()
        dist = Path(tmp) / "dist"
        log(f"{aid}: running otter assign (executes the solution and its tests)")
        run_otter_assign(staged, dist, aid, Path(tmp))
        student = json.loads((dist / "student" / f"{aid}.ipynb").read_text(encoding="utf-8"))
        student = normalise_student_notebook(student, aid)
        student_path = out_root / "assignments" / aid / f"{aid}.ipynb"
        student_path.parent.mkdir(parents=True, exist_ok=True)
        student_path.write_text(dump_notebook(student), encoding="utf-8")
        zips = sorted((dist / "autograder").glob("*.zip"))
        if len(zips) != 1:
            raise BuildError(f"{aid}: expected one autograder zip from otter, found {len(zips)}")
        bundle_path = out_root / "autograder" / "bundles" / f"{aid}-autograder.zip"
        reproducible_zip(zips[0], bundle_path)
        solution = json.loads((dist / "autograder" / f"{aid}.ipynb").read_text(encoding="utf-8"))
        kept = out_root / "build" / aid / "solution.ipynb"  # gitignored; graded by the self-check
        kept.parent.mkdir(parents=True, exist_ok=True)
        kept.write_text(dump_notebook(fill_answers(student, solution)), encoding="utf-8")
    log(f"{aid}: wrote {student_path.relative_to(out_root)} and {bundle_path.relative_to(out_root)}")
    return {"student": student_path, "bundle": bundle_path, "solution": kept}


def stale_build(aid: str, config: GradingConfig, root: Path = REPO_ROOT) -> list[str]:
    """What the built files say that grading.yml no longer does (empty when they agree).

    Compared by content, not by modification times (a fresh clone has arbitrary ones): the student
    notebook's grading-constants cell, each question's points in the otter bundle, and the
    assignment's section of the grading.yml inside the Gradescope zip, when one was built.
    """
    assignment = config.assignment(aid)
    rebuild = f"rebuild with `python -m autograder build {aid}` (and release the notebook again)"
    problems = []
    student = root / "assignments" / aid / f"{aid}.ipynb"
    if student.exists():
        cells = json.loads(student.read_text(encoding="utf-8"))["cells"]
        shown = next((_source(c) for c in cells if c["cell_type"] == "code" and _source(c).startswith(CONSTANTS_MARKER)),
                     None)
        if shown is not None and shown.strip() != constants_source(assignment).strip():
            problems.append(f"the student notebook shows other thresholds or budgets than grading.yml: students "
                            f"were not shown the values they are graded against; {rebuild}")
    bundle = root / "autograder" / "bundles" / f"{aid}-autograder.zip"
    if bundle.exists():
        with zipfile.ZipFile(bundle) as archive:
            for name in archive.namelist():
                qid = Path(name).stem
                if name.startswith("tests/") and qid in assignment.questions:
                    found = re.search(r"'points':\s*([0-9.]+)", archive.read(name).decode("utf-8", "replace"))
                    if found and float(found.group(1)) != assignment.questions[qid].points:
                        problems.append(f"the otter bundle gives {qid} {float(found.group(1)):g} point(s), "
                                        f"grading.yml {assignment.questions[qid].points:g}; {rebuild}")
    gradescope = root / "build" / "gradescope" / f"{aid}-gradescope.zip"
    if gradescope.exists():
        with zipfile.ZipFile(gradescope) as archive:
            shipped = yaml.safe_load(archive.read("grading.yml")) if "grading.yml" in archive.namelist() else {}
        try:
            same = GradingConfig.model_validate(shipped).assignments.get(aid) == assignment
        except ValueError:  # a zip from an older grader, whose grading.yml no longer validates
            same = False
        if not same:
            problems.append(f"{gradescope.relative_to(root)} was built from another grading.yml: {rebuild} "
                            "and upload the new zip to Gradescope")
    return problems

