"""The student release holds only what students need, and works without this project's tooling."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.release import release
from conftest import installed_python, suite_folder
from release_smoke import first_cells_and_check
from test_hygiene import MARKERS, source


@pytest.fixture(scope="module")
def released(tmp_path_factory, config):
    return release(config, tmp_path_factory.mktemp("rel") / "release")


def test_release_holds_only_student_material(released, config):
    """Check that the release has notebooks, data, requirements and README, and no grading internals"""
    folder, archive = released
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    expected_notebooks = {f"assignments/{aid}/{aid}.ipynb" for aid in config.assignments}
    assert expected_notebooks <= set(files)
    for name in files:
        assert (name in expected_notebooks or name in ("README.md", "requirements.txt")
                or name.startswith("datasets/")), name
        assert not any(bad in name for bad in ("solution", "verdicts.py", "probes.py", "reference.py", "grading.yml", "autograder", "tests/"))
    for notebook_path in expected_notebooks:
        text = "\n".join(source(c) for c in json.loads((folder / notebook_path).read_text())["cells"])
        assert not MARKERS.search(text)
    with zipfile.ZipFile(archive) as zf:
        assert sorted(n.split("/", 1)[1] for n in zf.namelist()) == files
    assert "otter-grader==7.0.0" in (folder / "requirements.txt").read_text()


def assert_smoke(report: dict, aid: str) -> None:
    assert "tooling: None" in report["probe"], aid
    assert report["init_errors"] == [], aid
    assert "q1" in report["check"] and "results" in report["check"], report["check"][:500]


@pytest.mark.slow
def test_student_runs_first_cells_and_check_without_project_tooling(released, config):
    """Check that each released notebook's init cell and first grader.check run in a plain kernel"""
    folder, _ = released
    for aid in config.assignments:
        assert_smoke(first_cells_and_check(str(folder / "assignments" / aid / f"{aid}.ipynb")), aid)


@pytest.mark.slow
@pytest.mark.parametrize("version", ["3.10", "3.13"])
def test_release_requirements_install_on_other_pythons(released, tmp_path, version):
    """Check that the release's requirements.txt installs in a fresh venv of the oldest and newest supported Python, and a notebook's first cells and check run there"""
    python = installed_python(version)
    if python is None:
        pytest.skip(f"Python {version} is not installed here")
    folder, _ = released
    venv = tmp_path / "venv"
    uv = Path(sys.executable).parent / "uv"
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never", "UV_CACHE_DIR": str(suite_folder("uv-cache"))}
    subprocess.run([str(uv), "venv", "--quiet", "--python", python, str(venv)], check=True, env=env, timeout=120)
    install = subprocess.run([str(uv), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
                              "-r", str(folder / "requirements.txt")], capture_output=True, text=True, env=env,
                             timeout=1800)
    assert install.returncode == 0, install.stderr[-2000:]
    notebook = folder / "assignments" / "spiral" / "spiral.ipynb"
    done = subprocess.run([str(venv / "bin" / "python"), str(Path(__file__).parent / "release_smoke.py"), str(notebook)],
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"})
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["python"].startswith(version)
    assert_smoke(report, "spiral")
