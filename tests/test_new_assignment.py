"""A seventh assignment is added without touching the grader: from the fixture in
tests/fixtures/seventh (a master notebook, its check package and a grading.yml entry), in a copy
of the repository, it is built, graded and reported, exactly as docs/authoring.md walks through."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from autograder.config import REPO_ROOT

FIXTURE = Path(__file__).parent / "fixtures" / "seventh"
AID = "scaling"
pytestmark = pytest.mark.slow


def _grader_digest(repo: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted((repo / "autograder").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """The repository's grader, configuration and data, plus the author's three additions."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(REPO_ROOT / "autograder", root / "autograder",
                    ignore=shutil.ignore_patterns("__pycache__", "bundles"))
    for name in ("requirements.lock", "pyproject.toml"):
        shutil.copy2(REPO_ROOT / name, root / name)
    (root / "datasets").symlink_to(REPO_ROOT / "datasets")
    # 1. the master notebook and 2. its check package, in solutions/<id>/
    shutil.copytree(FIXTURE / "solutions" / AID, root / "solutions" / AID)
    # 3. the grading.yml entry
    config = yaml.safe_load((REPO_ROOT / "grading.yml").read_text())
    config["assignments"] = yaml.safe_load((FIXTURE / "grading.yml").read_text())
    (root / "grading.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def _run(repo: Path, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "autograder", *args], cwd=repo, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


def test_a_seventh_assignment_builds_grades_and_reports_without_grader_changes(repo, tmp_path):
    """Check that the fixture assignment builds, its solution gets full marks, its blank notebook
    none, the report lists it, and no grader file changed on the way"""
    before = _grader_digest(repo)
    _run(repo, "validate")
    _run(repo, "build", AID)
    student = repo / "assignments" / AID / f"{AID}.ipynb"
    assert student.exists() and (repo / "build" / "gradescope" / f"{AID}-gradescope.zip").exists()

    solution = json.loads(student.read_text())
    for cell in solution["cells"]:
        if cell["cell_type"] == "code" and "def scale" in "".join(cell["source"]):
            cell["source"] = "def scale(values, factor):\n    return [v * factor for v in values]\n"
    submissions = tmp_path / "submissions"
    submissions.mkdir()
    (submissions / "solution.ipynb").write_text(json.dumps(solution))
    shutil.copy2(student, submissions / "blank.ipynb")
    _run(repo, "grade", AID, str(submissions), "--out", str(tmp_path / "results"), "--jobs", "1")
    files = (tmp_path / "results" / "results").glob("*.json")
    results = {r["submission"]: r for r in map(json.loads, (p.read_text() for p in files))}
    assert results["solution.ipynb"]["total"] == results["solution.ipynb"]["max_total"] == 1
    assert results["blank.ipynb"]["total"] == 0 and results["blank.ipynb"]["status"] == "ok"

    _run(repo, "report", str(tmp_path / "results"), "--out", str(tmp_path / "report"))
    assert AID in (tmp_path / "report" / "report.html").read_text()
    assert _grader_digest(repo) == before
