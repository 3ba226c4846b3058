"""A fault of the grader is never a student's zero; and the smaller promises a TA relies on.

The sandbox's start-up is checked before a batch and aborts it with the runner's own error output;
a submission the grader failed on is listed as `grader-error` with no points, never stored, and
retried by the next run, and the exit code says so. Also: one default results folder per
assignment, progress lines that give the reason, a warning when the release no longer matches
grading.yml, partial credit by weight, and the feedback of an unreadable file.
"""
from __future__ import annotations

import csv
import io
import json

import pytest

from autograder import checks as checks_api
from autograder import grade as grade_module
from autograder import sandbox as sandbox_module
from autograder.build import stale_build
from autograder.cli import main
from autograder.config import ConfigError, GradingConfig, Question
from autograder.grade import GraderBroken, GraderFault, Progress, grade_batch, make_job
from autograder.results import CheckOutcome, QuestionResult, Status, SubmissionResult, feedback_markdown
from autograder.submissions import Submission, discover
from conftest import SUBMISSIONS, config_with

MARKER = "ModuleNotFoundError: No module named 'encodings' (marker 4711)"


def broken_interpreter(folder):
    """An 'interpreter' that fails the way a venv the sandbox cannot see does."""
    script = folder / "python3"
    script.write_text(f"#!/bin/sh\necho 'Fatal Python error: init_fs_encoding' >&2\necho \"{MARKER}\" >&2\nexit 1\n")
    script.chmod(0o755)
    return script


def test_a_sandbox_that_cannot_start_stops_the_batch_with_its_stderr(public_tmp, monkeypatch, capsys):
    """Check the start-up self-check: exit 2, the runner's stderr shown, no result written"""
    monkeypatch.setattr(sandbox_module, "sandbox_python", lambda: str(broken_interpreter(public_tmp)))
    out = public_tmp / "out"
    code = main(["grade", "spiral", str(SUBMISSIONS / "spiral" / "solution.ipynb"), "--out", str(out),
                 "--no-bwrap", "--jobs", "1"])
    err = capsys.readouterr().err
    assert code == 2 and MARKER in err and "did not start" in err and "nothing was graded" in err
    assert not list((out / "results").glob("*.json")) if (out / "results").exists() else True
    assert not (out / "grades.csv").exists()


def invalid_folder(tmp_path, names=("a.ipynb", "b.ipynb", "c.ipynb")):
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in names:
        (folder / name).write_text("not a notebook")  # graded as invalid: no sandbox needed
    return folder


def test_a_grader_error_is_no_grade_and_the_next_run_retries_it(tmp_path, monkeypatch, capsys):
    """Check that a grader failure is listed without points, not stored, exits 1, and is regraded next time"""
    real = grade_module.grade_one

    def flaky(job, submission, slot=0, warm=None):
        if submission.name == "a.ipynb":
            raise RuntimeError("disk controller hiccup")
        return real(job, submission, slot, warm)

    monkeypatch.setattr(grade_module, "grade_one", flaky)
    folder, out = invalid_folder(tmp_path), tmp_path / "out"
    assert main(["grade", "spiral", str(folder), "--out", str(out), "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert "a.ipynb: grader-error no grade" in err and "disk controller hiccup" in err
    assert "the grader failed on 1 submission(s)" in err
    rows = {r["submission"]: r for r in csv.DictReader((out / "grades.csv").open())}
    assert rows["a.ipynb"]["status"] == "grader-error" and rows["a.ipynb"]["total"] == "" and rows["a.ipynb"]["q1"] == ""
    assert "not the student's fault" in rows["a.ipynb"]["message"]
    assert not (out / "results" / "a.ipynb.json").exists() and not (out / "feedback" / "a.ipynb.md").exists()

    monkeypatch.setattr(grade_module, "grade_one", real)
    assert main(["grade", "spiral", str(folder), "--out", str(out), "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    assert "a.ipynb: invalid no grade" in err and "grader-error" not in err
    assert json.loads((out / "results" / "a.ipynb.json").read_text())["status"] == "invalid"


def test_gradescope_records_no_score_when_the_grader_fails(tmp_path, monkeypatch, capsys):
    """Check that on Gradescope a grader fault fails the run (rerunnable) instead of writing a 0"""
    def fails(job, submission, slot=0, warm=None):
        raise RuntimeError("grader bug")

    monkeypatch.setattr(grade_module, "grade_one", fails)
    folder = invalid_folder(tmp_path, ("a.ipynb",))
    results = tmp_path / "results" / "results.json"
    assert main(["gradescope-run", "spiral", "--submission", str(folder), "--results", str(results)]) == 1
    assert "grader bug" in capsys.readouterr().err and not results.exists()


def test_a_start_up_failure_mid_batch_stops_it(tmp_path, monkeypatch, config):
    """Check that once a notebook's sandbox fails to start, no further submission is started"""
    started = []

    def dies(job, submission, slot=0, warm=None):
        started.append(submission.name)
        raise GraderFault("the grader's sandbox did not start: exited with code 1", "ImportError: libtorch (marker)")

    monkeypatch.setattr(grade_module, "grade_one", dies)
    with pytest.raises(GraderBroken, match=r"(?s)did not start.*batch stopped; 0 of 3.*libtorch \(marker\)"):
        grade_batch(make_job("spiral", config, jobs=1), discover([invalid_folder(tmp_path)]), tmp_path / "out",
                    progress=False)
    assert started == ["a.ipynb"]
    assert not list((tmp_path / "out" / "results").glob("*.json"))


def test_progress_lines_give_the_reason():
    """Check that error, timeout and invalid lines say why"""
    stream = io.StringIO()
    meter = Progress(2, stream=stream)
    for status, message in [(Status.TIMEOUT, "code cell 7 (`train(...)`) exceeded the 120 s per-cell limit"),
                            (Status.INVALID, "x.txt is not a notebook: submit the .ipynb file")]:
        meter.update(SubmissionResult("x", "spiral", status, 0, 14, message=message))
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("exceeded the 120 s per-cell limit") and "submit the .ipynb file" in lines[1]


def test_each_assignment_has_its_own_default_results_folder(tmp_path, monkeypatch):
    """Check that `grade ID` without --out writes results/ID, so two assignments never mix"""
    folder = invalid_folder(tmp_path, ("a.ipynb",))
    monkeypatch.chdir(tmp_path)
    assert main(["grade", "spiral", str(folder), "--jobs", "1"]) == 0
    assert main(["grade", "autograd", str(folder), "--jobs", "1"]) == 0
    assert (tmp_path / "results" / "spiral" / "grades.csv").exists()
    assert json.loads((tmp_path / "results" / "autograd" / "results" / "a.ipynb.json").read_text())["assignment"] \
        == "autograd"


def test_a_release_that_no_longer_matches_grading_yml_is_warned_about(raw_config):
    """Check the stale-build warning for a changed threshold and changed points, and none when they agree"""
    assert stale_build("spiral", config_with(raw_config)) == []
    threshold = config_with(raw_config, **{"assignments.spiral.thresholds.min_test_accuracy": 0.9})
    assert any("other thresholds" in p for p in stale_build("spiral", threshold))
    points = config_with(raw_config, **{"assignments.spiral.questions.q4.points": 3})
    assert any("gives q4 2 point(s), grading.yml 3" in p for p in stale_build("spiral", points))


def test_partial_credit_by_weight_and_how_each_question_is_scored():
    """Check partial credit (weighted), all-or-nothing, and the sentence the feedback uses for each"""
    outcomes = [CheckOutcome("shape", True), CheckOutcome("values", False, "wrong values"), CheckOutcome("dtype", True)]
    partial = QuestionResult.scored(Question(points=3, scoring="partial", weights=[1, 2, 3]), outcomes)
    assert partial.points == 2.0 and "Partial credit" in partial.scoring_note and "2 of 3 passed" in partial.scoring_note
    whole = QuestionResult.scored(Question(points=3), outcomes)
    assert whole.points == 0 and "All or nothing" in whole.scoring_note
    assert QuestionResult.from_json(json.loads(json.dumps(partial.to_json()))) == partial
    result = SubmissionResult.totalled({"q1": whole}, 3, submission="s", assignment="spiral", status=Status.OK)
    assert "All or nothing: the 3 point(s) need every check to pass; 2 of 3 passed." in feedback_markdown(result)


def test_weights_must_fit_the_checks(raw_config):
    """Check that weights need scoring: partial, and one weight per check"""
    with pytest.raises(ValueError, match="scoring: partial"):
        Question(points=2, weights=[1, 1])
    config = config_with(raw_config, **{"assignments.spiral.questions.q4": {"points": 2, "scoring": "partial",
                                                                            "weights": [1]}})
    count = len(checks_api.load_checks("spiral", GradingConfig.model_validate(raw_config).assignment("spiral"))
                .for_question("q4"))
    assert count != 1
    with pytest.raises(ConfigError, match=rf"questions\.q4\.weights has 1 weight\(s\), but q4 has {count} check"):
        checks_api.load_checks("spiral", config.assignment("spiral"))


def test_an_unreadable_file_gets_a_short_feedback_that_says_what_to_resubmit(tmp_path, config):
    """Check the feedback of an invalid submission: the reason and what to submit, no empty table"""
    folder = invalid_folder(tmp_path, ("a.ipynb",))
    grade_batch(make_job("spiral", config, jobs=1), [Submission(folder / "a.ipynb", "a.ipynb")], tmp_path / "out",
                progress=False)
    feedback = (tmp_path / "out" / "feedback" / "a.ipynb.md").read_text()
    assert "could not be graded" in feedback and "spiral.ipynb" in feedback and "| question |" not in feedback
