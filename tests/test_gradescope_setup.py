"""The Gradescope zip's setup.sh and its choice of upload, without installing or grading anything:
setup.sh runs in a folder laid out like /autograder with stand-ins on PATH for python3, uv, apt-get
and nvidia-smi, so it touches no network and installs nothing; `choose_submission` picks between a
notebook and its export zip."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from autograder.config import REPO_ROOT
from autograder.gradescope import SETUP_SH, build_gradescope_zip, choose_submission, run, unpack_like_gradescope
from autograder.submissions import InvalidSubmission, Submission
from conftest import SUBMISSIONS, load_notebook, write_notebook



def old_python() -> Path | None:
    """A real Python 3.10 here, if any: pyenv's binary (its shim needs pyenv's PATH), else python3.10."""
    found = sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10"))
    on_path = shutil.which("python3.10")
    if on_path and ".pyenv/shims" not in on_path:
        found.append(Path(on_path))
    return found[0] if found else None


OLD_PYTHON = old_python()
CUDA_LINES = ("nvidia-", "cuda-", "triton==")
MAX_BYTES = 2**20


def script(path: Path, body: str) -> Path:
    """An executable bash script at `path`."""
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def gradescope_zip(tmp_path_factory, config) -> Path:
    return build_gradescope_zip("spiral", config, tmp_path_factory.mktemp("zip"))


@pytest.fixture
def autograder_root(tmp_path, gradescope_zip) -> Path:
    return unpack_like_gradescope(gradescope_zip, tmp_path / "autograder")


@pytest.fixture
def shims(tmp_path) -> Path:
    """A PATH folder whose apt-get, uv and pip-less stand-ins record calls and fail: nothing reaches a network."""
    folder = tmp_path / "shims"
    folder.mkdir()
    log = tmp_path / "calls.log"
    script(folder / "apt-get", f'echo "apt-get $*" >> {log}; echo "apt-get: not in tests" >&2; exit 100\n')
    script(folder / "uv", f'echo "uv $*" >> {log}; echo "error: no network in tests" >&2; exit 2\n')
    return folder


def run_setup(root: Path, shims: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run the zip's setup.sh with `root` as /autograder and only `shims` before the system's PATH."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "HOME": str(home), "NN4E_ROOT": str(root),
           "PIP_NO_INDEX": "1", "UV_OFFLINE": "1", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}
    return subprocess.run(["bash", str(root / "source" / "setup.sh")], capture_output=True, text=True,
                          env=env, timeout=120)


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "calls.log"
    return log.read_text().splitlines() if log.exists() else []


def test_setup_sh_checks_the_range_the_project_supports():
    """Check that setup.sh's Python range is pyproject.toml's requires-python"""
    spec = importlib.util.spec_from_file_location("check_python", REPO_ROOT / "tools" / "check_python.py")
    check_python = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check_python)
    low, high, _ = check_python.supported_range()
    assert f"{low} <= v < {high}" in SETUP_SH
    assert f'NEED="{".".join(map(str, low))} to {high[0]}.{high[1] - 1}"' in SETUP_SH


def test_too_old_python_fails_loudly_when_uv_cannot_install_one(tmp_path, autograder_root, shims):
    """Check that with Python 3.10 and a uv that fails, setup.sh stops, naming the version found and the one needed"""
    if OLD_PYTHON:
        (shims / "python3").symlink_to(OLD_PYTHON)
        found = subprocess.run([OLD_PYTHON, "-c", "import platform; print(platform.python_version())"],
                               capture_output=True, text=True, check=True).stdout.strip()
    else:  # no real 3.10 here: a stand-in that answers setup.sh's version probe
        script(shims / "python3", 'case "$1" in -c) echo "3.10.0 no" ;; *) exit 1 ;; esac\n')
        found = "3.10.0"
    done = run_setup(autograder_root, shims, tmp_path)
    assert done.returncode != 0
    assert (f"the image's python3 is {found}; the grader needs 3.11.2 to 3.13, and installing one with uv "
            "failed: `uv python install 3.11` exited with status 2") in done.stderr
    assert calls(tmp_path) == ["uv python install 3.11"]  # no apt-get: python3 and pip were there
    assert not (autograder_root / "venv").exists()


def fake_good_python(shims: Path, tmp_path: Path, pip_status: int = 0) -> None:
    """python3: this venv's base interpreter (3.11), except that `-m venv DIR` makes a venv whose
    python records `-m pip` and `-m autograder` calls instead of running them (pip exits with
    `pip_status`)."""
    real = Path(sys._base_executable)
    log = tmp_path / "calls.log"
    venv_python = script(tmp_path / "venv-python",
                         f'case "$1 $2" in "-m pip") echo "python $*" >> {log}; exit {pip_status} ;;\n'
                         f'    "-m autograder") echo "python $*" >> {log}; exit 0 ;; esac\n'
                         f'exec {real} "$@"\n')
    script(shims / "python3", 'if [ "$1 $2" = "-m venv" ]; then\n'
           f'    mkdir -p "$3/bin" && cp {venv_python} "$3/bin/python" && exit 0\nfi\n'
           f'exec {real} "$@"\n')


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None or Path("/dev/nvidia0").exists(),
                    reason="this machine has an NVIDIA GPU")
def test_good_python_without_gpu_installs_torch_cpu_build(tmp_path, autograder_root, shims):
    """Check that with Python 3.11 and no GPU, setup.sh uses the image's python3, torch's CPU index and
    the lock without CUDA"""
    fake_good_python(shims, tmp_path)
    done = run_setup(autograder_root, shims, tmp_path)
    assert done.returncode == 0, done.stderr
    venv = autograder_root / "venv"
    lock = (REPO_ROOT / "requirements.lock").read_text().splitlines()
    assert calls(tmp_path) == [
        "python -m pip install --quiet --no-deps --index-url https://download.pytorch.org/whl/cpu "
        "torch==2.14.1 torchvision==0.29.1",
        f"python -m pip install --quiet -r {venv}/requirements-cpu.lock",
        "python -m autograder prepare-data"]
    cpu_lock = (venv / "requirements-cpu.lock").read_text().splitlines()
    assert cpu_lock == [line for line in lock if not line.startswith(CUDA_LINES)]
    assert len(cpu_lock) < len(lock) and {"torch==2.14.1", "torchvision==0.29.1"} <= set(cpu_lock)


def test_good_python_with_gpu_installs_the_lock_as_is(tmp_path, autograder_root, shims):
    """Check that with Python 3.11 and nvidia-smi on PATH, setup.sh installs requirements.lock unchanged"""
    fake_good_python(shims, tmp_path)
    script(shims / "nvidia-smi", "exit 0\n")
    done = run_setup(autograder_root, shims, tmp_path)
    assert done.returncode == 0, done.stderr
    lock = autograder_root / "source" / "requirements.lock"
    assert calls(tmp_path) == [f"python -m pip install --quiet -r {lock}", "python -m autograder prepare-data"]
    assert lock.read_bytes() == (REPO_ROOT / "requirements.lock").read_bytes()


def test_a_failing_step_stops_setup_and_is_named(tmp_path, autograder_root, shims):
    """Check that when pip fails, setup.sh stops with its status and names the step, before prepare-data"""
    fake_good_python(shims, tmp_path, pip_status=3)
    script(shims / "nvidia-smi", "exit 0\n")
    done = run_setup(autograder_root, shims, tmp_path)
    assert done.returncode == 3
    assert "FAILED (exit status 3) while installing requirements.lock as is" in done.stderr
    assert "python -m autograder prepare-data" not in calls(tmp_path)


def export_zip(notebook: Path, target: Path) -> Path:
    """A grader.export()-like zip holding `notebook`."""
    with zipfile.ZipFile(target, "w") as zf:
        zf.write(notebook, notebook.name)
    return target


def uploads(*paths: Path) -> list[Submission]:
    return [Submission(p, p.name) for p in paths]


def test_notebook_and_its_export_zip_grade_the_zip(tmp_path):
    """Check that a notebook uploaded with its export zip (same bytes, or same cells) grades the zip"""
    notebook = shutil.copy2(SUBMISSIONS / "spiral" / "solution.ipynb", tmp_path / "spiral.ipynb")
    archive = export_zip(Path(notebook), tmp_path / "spiral.zip")
    chosen, why = choose_submission(uploads(Path(notebook), archive), MAX_BYTES)
    assert chosen.path == archive and "spiral.ipynb holds the same notebook" in why
    saved_again = load_notebook(Path(notebook))  # the same cells, outputs and metadata changed
    saved_again["metadata"]["saved"] = "again"
    for cell in saved_again["cells"]:
        cell.pop("outputs", None)
    write_notebook(saved_again, Path(notebook))
    os.utime(notebook, (2e9, 2e9))  # newer, but the same notebook
    chosen, why = choose_submission(uploads(Path(notebook), archive), MAX_BYTES)
    assert chosen.path == archive and "same notebook" in why


def test_two_different_notebooks_grade_the_newer(tmp_path):
    """Check that a notebook and a zip holding a different notebook grade the newer file, and say why"""
    original = SUBMISSIONS / "spiral" / "solution.ipynb"
    archive = export_zip(original, tmp_path / "spiral.zip")
    edited = load_notebook(original)
    edited["cells"].append({"cell_type": "markdown", "metadata": {}, "source": "edited after the export"})
    notebook = write_notebook(edited, tmp_path / "spiral.ipynb")
    os.utime(archive, (1e9, 1e9))
    os.utime(notebook, (2e9, 2e9))
    chosen, why = choose_submission(uploads(notebook, archive), MAX_BYTES)
    assert chosen.path == notebook
    assert why == "Graded spiral.ipynb, the newer upload: spiral.zip holds a different, older notebook."
    os.utime(archive, (3e9, 3e9))
    assert choose_submission(uploads(notebook, archive), MAX_BYTES)[0].path == archive


def test_no_notebook_or_three_stay_errors(tmp_path):
    """Check that no notebook, or three candidates, is an error naming the files"""
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    with pytest.raises(InvalidSubmission, match=r"No notebook to grade \(uploaded: notes.txt\)"):
        choose_submission(uploads(notes), MAX_BYTES)
    three = [shutil.copy2(SUBMISSIONS / "spiral" / "solution.ipynb", tmp_path / f"{n}.ipynb") for n in "abc"]
    with pytest.raises(InvalidSubmission, match=r"3 notebooks or zips uploaded \(a.ipynb, b.ipynb, c.ipynb\)"):
        choose_submission(uploads(*map(Path, three)), MAX_BYTES)


@pytest.mark.slow
def test_run_grades_the_export_zip_and_says_so(tmp_path, config):
    """Check that run() with a notebook and its export zip grades it (full marks) and names the file in the output"""
    submission = tmp_path / "submission"
    submission.mkdir()
    notebook = Path(shutil.copy2(SUBMISSIONS / "spiral" / "solution.ipynb", submission / "spiral.ipynb"))
    export_zip(notebook, submission / "spiral_export.zip")
    payload = run("spiral", config, submission, tmp_path / "results" / "results.json")
    assert payload["score"] == config.assignment("spiral").max_points
    assert payload["output"].startswith("Graded spiral_export.zip: spiral.ipynb holds the same notebook.\n")
    assert json.loads((tmp_path / "results" / "results.json").read_text()) == payload
