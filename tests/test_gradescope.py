"""The Gradescope zip: run_autograder in a folder laid out like /autograder writes a valid
results.json whose scores match the local grader; the otter bundle still works with `otter run`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from unittest.mock import patch

import pytest

from autograder.gradescope import build_gradescope_zip, unpack_like_gradescope
from autograder.isolation import BASE_UID, detect_layers, find_bwrap, readable_by
from conftest import SUBMISSIONS

pytestmark = pytest.mark.slow
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
TOP_LEVEL = {"score", "execution_time", "output", "output_format", "test_output_format", "test_name_format",
             "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
               "tags", "visibility", "extra_data"}


def validate_results_json(data: dict) -> None:
    """The fields and types Gradescope documents for results.json."""
    assert set(data) <= TOP_LEVEL, set(data) - TOP_LEVEL
    assert isinstance(data["tests"], list)
    assert data.get("visibility", "visible") in VISIBILITIES
    assert isinstance(data.get("score", 0.0), (int, float))
    for test in data["tests"]:
        assert set(test) <= TEST_FIELDS, set(test) - TEST_FIELDS
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"]
        assert test.get("visibility", "visible") in VISIBILITIES
        assert test.get("status", "passed") in ("passed", "failed")


BWRAP, _ = find_bwrap()


def run_like_gradescope(root: Path, env: dict) -> subprocess.CompletedProcess:
    """Run run_autograder with `root` bound at /autograder, as Gradescope lays it out."""
    return subprocess.run([BWRAP, "--dev-bind", "/", "/", "--bind", str(root), "/autograder",
                           "/autograder/run_autograder"], capture_output=True, text=True,
                          env={**os.environ, "NN4E_PYTHON": sys.executable, **env}, timeout=900)


@pytest.mark.skipif(BWRAP is None, reason="binding a folder at /autograder needs bubblewrap")
@pytest.mark.parametrize("name, loses", [("solution.ipynb", []), ("softmax_at_end.ipynb", ["q2"])])
def test_run_autograder_like_gradescope(tmp_path, config, name, loses):
    """Check results.json from run_autograder against Gradescope's fields and the local score"""
    spiral = config.assignment("spiral")
    expected = spiral.max_points - sum(spiral.questions[q].points for q in loses)
    root = unpack_like_gradescope(build_gradescope_zip("spiral", config, tmp_path), tmp_path / "autograder")
    shutil.copy2(SUBMISSIONS / "spiral" / name, root / "submission" / name)
    done = run_like_gradescope(root, {})
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads((root / "results" / "results.json").read_text())
    validate_results_json(data)
    assert data["score"] == expected
    assert sum(t["score"] for t in data["tests"]) == expected
    assert {t["name"] for t in data["tests"]} == {q for q, s in config.assignment("spiral").questions.items()
                                                  if not s.manual}


def test_otter_bundle_still_works_with_otter_run(tmp_path):
    """Check that plain `otter run` with the committed bundle gives the solution full marks"""
    done = subprocess.run([sys.executable, "-m", "otter", "run", "-a", "autograder/bundles/spiral-autograder.zip",
                           "-o", str(tmp_path), str(SUBMISSIONS / "spiral" / "solution.ipynb")],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    scored = [t for t in results["tests"] if "max_score" in t]
    assert scored and all(t["score"] == t["max_score"] for t in scored)


UID_ONLY = {"NN4E_SANDBOX_NO_BWRAP": "1", "NN4E_SANDBOX_NO_LANDLOCK": "1"}


@pytest.mark.skipif(BWRAP is None, reason="binding a folder at /autograder needs bubblewrap")
@pytest.mark.skipif(os.geteuid() != 0, reason="the uid layer needs root, as on Gradescope")
def test_gradescope_with_only_the_uid_layer_hides_the_source(tmp_path, public_tmp, config):
    """Check that with bubblewrap and Landlock off, the sandbox uid can read neither the source, the results nor the submission"""
    with patch.dict(os.environ, UID_ONLY):
        layers = detect_layers()
    if not layers.unprivileged_user:
        pytest.skip("; ".join(layers.off))
    # Laid out where every other user can reach it, as /autograder is: only run_autograder and the
    # grader may hide it.
    root = unpack_like_gradescope(build_gradescope_zip("spiral", config, tmp_path), public_tmp / "autograder")
    shutil.copy2(SUBMISSIONS / "spiral" / "solution.ipynb", root / "submission" / "solution.ipynb")
    for folder, dirs, files in os.walk(root):
        os.chmod(folder, 0o755)
    assert readable_by(BASE_UID, [root / "source" / "grading.yml"]) != []  # exposed before the run
    done = run_like_gradescope(root, UID_ONLY)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((root / "results" / "results.json").read_text())["score"] == config.assignment("spiral").max_points
    hidden = [root / "source" / "grading.yml", root / "source" / "solutions", root / "source",
              root / "results" / "results.json", root / "submission" / "solution.ipynb", root / "submission"]
    assert readable_by(BASE_UID, hidden) == []
