"""The stages of grading one submission on their own, without a sandbox: read, plan, record; and
what the "unchanged, skip" fingerprint covers."""
from __future__ import annotations

from pathlib import Path

import pytest

from autograder.config import REPO_ROOT
from autograder.grade import Execution, make_job, plan_submission, read_submission, record
from autograder.results import Status
from autograder.submissions import InvalidSubmission, Submission
from conftest import SUBMISSIONS

SOLUTION = SUBMISSIONS / "spiral" / "solution.ipynb"


@pytest.fixture(scope="module")
def job(config):
    return make_job("spiral", config, jobs=1)


def test_read_refuses_a_file_that_is_no_notebook(tmp_path, job):
    """Check that reading names the file and says what is wrong"""
    bad = tmp_path / "essay.ipynb"
    bad.write_text("not json")
    with pytest.raises(InvalidSubmission, match="essay.ipynb"):
        read_submission(job, Submission(bad, bad.name))


def test_plan_probes_every_graded_question_after_its_cells(job):
    """Check that the plan runs cells and probes each question with checks once, in order"""
    notebook, sha = read_submission(job, Submission(SOLUTION, SOLUTION.name))
    assert len(sha) == 64
    planned = plan_submission(job, notebook)
    probed = [step.question for step in planned.steps if step.kind != "run"]
    assert probed == [q for q in job.assignment.questions if planned.suite.for_question(q)]
    assert planned.uses_torch and planned.code_cells


def test_record_of_a_run_that_stopped_early(job):
    """Check that a run stopped by a timeout before any probe scores nothing, says so per check,
    and keeps the run's status and message"""
    notebook, _ = read_submission(job, Submission(SOLUTION, SOLUTION.name))
    planned = plan_submission(job, notebook)
    execution = Execution(status=Status.TIMEOUT, message="cell 3 exceeded the 120 s per-cell limit")
    graded = record(job, {"submission": "solution.ipynb", "assignment": "spiral"}, planned, execution, started=0.0)
    result = graded.result
    assert result.status == Status.TIMEOUT and result.total == 0 and graded.probes == {}
    assert result.message == execution.message
    messages = {check.message for row in result.questions.values() for check in row.checks}
    assert messages == {"not reached: the notebook stopped before this question"}


def test_the_fingerprint_covers_every_file_that_can_change_a_grade(job):
    """Check that the fingerprint reads every grader module (results.py and config.py included),
    every file of the check package, the student notebook and the lock file"""
    files = set(job.fingerprint_files())
    grader = set((REPO_ROOT / "autograder").glob("*.py"))
    package = set((REPO_ROOT / "solutions" / "spiral").glob("*.py"))
    assert grader <= files and package <= files
    assert {REPO_ROOT / "autograder" / "results.py", REPO_ROOT / "autograder" / "config.py"} <= files
    assert job.student_notebook in files and REPO_ROOT / "requirements.lock" in files


def test_the_fingerprint_follows_the_declared_data(job, config):
    """Check that declaring another data file changes the fingerprint"""
    other = config.model_copy(update={"assignments": {**config.assignments, "spiral": config.assignments[
        "spiral"].model_copy(update={"data": ["spiral.csv", "xor.csv"]})}})
    assert make_job("spiral", other, jobs=1).fingerprint() != job.fingerprint()
