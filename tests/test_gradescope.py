"""The Gradescope zip: run_autograder in a folder laid out like /autograder writes a valid
results.json whose scores match the local grader; the otter bundle still works with `otter run`."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from autograder.gradescope import build_gradescope_zip, unpack_like_gradescope
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


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="binding a folder at /autograder needs bubblewrap")
@pytest.mark.parametrize("name, expected", [("solution.ipynb", 11), ("softmax_at_end.ipynb", 9)])
def test_run_autograder_like_gradescope(tmp_path, config, name, expected):
    """Check results.json from run_autograder against Gradescope's fields and the local score"""
    root = unpack_like_gradescope(build_gradescope_zip("spiral", config, tmp_path), tmp_path / "autograder")
    shutil.copy2(SUBMISSIONS / "spiral" / name, root / "submission" / name)
    env = {**os.environ, "NN4E_PYTHON": sys.executable}
    done = subprocess.run(["bwrap", "--dev-bind", "/", "/", "--bind", str(root), "/autograder",
                           "/autograder/run_autograder"], capture_output=True, text=True, env=env, timeout=900)
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
