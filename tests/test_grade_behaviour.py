"""Grading behaviour on the spiral: partial credit after a timeout or crash, bad input in a batch,
locked cells, wrong assignment, resuming."""
from __future__ import annotations

import csv
import json
import tempfile
from pathlib import Path

import pytest

from autograder import grade as grade_module
from autograder.cli import main
from autograder.grade import grade_batch, grade_one, make_job
from autograder.submissions import Submission, discover
from conftest import SUBMISSIONS, config_with, load_notebook, write_notebook

pytestmark = pytest.mark.slow
SOLUTION = SUBMISSIONS / "spiral" / "solution.ipynb"


def edited(tmp_path, name: str, old: str, new: str, metadata: dict | None = None):
    notebook = load_notebook(SOLUTION)
    hits = 0
    for cell in notebook["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if old in text:
            cell["source"] = text.replace(old, new, 1)
            hits += 1
    assert hits, old
    if metadata:
        notebook["metadata"]["otter"].update(metadata)
    return write_notebook(notebook, tmp_path / name)


Q4_LINE = "    test_preds = torch.argmax(test_out, dim=1)"


def test_timeout_keeps_earlier_questions(tmp_path, raw_config):
    """Check that a cell past its limit gives status timeout, names the cell, and keeps q1-q3"""
    # 15 s: three times the spiral solution's slowest cell on a busy 2-core machine (about 5 s).
    config = config_with(raw_config, **{"assignments.spiral.limits": {"cell_timeout_s": 15}})
    path = edited(tmp_path, "loop.ipynb", Q4_LINE, "    while True:\n        pass\n" + Q4_LINE)
    result = grade_one(make_job("spiral", config, jobs=1), Submission(path, path.name)).result.to_json()
    assert result["status"] == "timeout"
    assert "`model.eval()`" in result["message"] and "15 s per-cell limit" in result["message"]
    points = {q: r["points"] for q, r in result["questions"].items() if not r["manual"]}
    assert points == {"q1": 2, "q2": 2, "q3": 3, "q4": 0, "q5": 0, "q7": 0}


def test_crash_keeps_earlier_questions(tmp_path, config):
    """Check that a process that kills itself gives status error and keeps the questions before it"""
    path = edited(tmp_path, "exit.ipynb", Q4_LINE, "    import os; os._exit(7)\n" + Q4_LINE)
    result = grade_one(make_job("spiral", config, jobs=1), Submission(path, path.name)).result.to_json()
    assert result["status"] == "error" and "exited with code 7" in result["message"]
    assert result["total"] == 7


def test_edited_constants_are_restored_and_flagged(tmp_path, config):
    """Check that lowering a threshold in the locked constants cell changes nothing but is flagged"""
    path = edited(tmp_path, "cheat.ipynb", "MIN_TEST_ACCURACY = 0.85", "MIN_TEST_ACCURACY = 0.0")
    result = grade_one(make_job("spiral", config, jobs=1), Submission(path, path.name)).result
    assert result.auto_complete and result.total == config.assignment("spiral").max_points
    result = result.to_json()
    assert any("edited; the grader relies on the released version" in note for note in result["notes"])


def test_deleted_check_cell_is_checked_at_the_end(tmp_path, config):
    """Check that a deleted grader.check cell still gets its question checked"""
    path = edited(tmp_path, "nocheck.ipynb", 'grader.check("q2")', "")
    result = grade_one(make_job("spiral", config, jobs=1), Submission(path, path.name)).result.to_json()
    assert result["questions"]["q2"]["points"] == 2
    assert any("q2 was checked at the end" in note for note in result["notes"])


def test_batch_with_bad_files_finishes(tmp_path, capsys, config):
    """Check that invalid files get rows with reasons while the valid notebook is graded"""
    folder = tmp_path / "subs"
    folder.mkdir()
    (folder / "solution.ipynb").write_bytes(SOLUTION.read_bytes())
    (folder / "essay.docx").write_bytes(b"PK\x03\x04 not a notebook")
    (folder / "truncated.ipynb").write_text('{"cells": [')
    edited(folder, "other.ipynb", "x", "x", metadata={"assignment_name": "mnist"})
    out = tmp_path / "out"
    assert main(["grade", "spiral", str(folder), "--out", str(out), "--jobs", "2"]) == 0
    rows = {r["submission"]: r for r in csv.DictReader((out / "grades.csv").open())}
    full = f"{config.assignment('spiral').max_points:g}"
    assert rows["solution.ipynb"]["status"] == "ok" and rows["solution.ipynb"]["total"] == full
    assert rows["essay.docx"]["status"] == "invalid" and "not a notebook" in rows["essay.docx"]["message"]
    assert rows["truncated.ipynb"]["status"] == "invalid" and "JSON" in rows["truncated.ipynb"]["message"]
    assert rows["other.ipynb"]["status"] == "invalid" and "'mnist'" in rows["other.ipynb"]["message"]
    assert "sandbox layers" in capsys.readouterr().err


def test_rerun_resumes_and_force_regrades(tmp_path, config, monkeypatch):
    """Check that a second run reuses unchanged results and --force grades again"""
    submissions = discover([SUBMISSIONS / "spiral" / "blank.ipynb"])
    job = make_job("spiral", config, jobs=1)
    first = grade_batch(job, submissions, tmp_path, progress=False)
    stored = json.loads((tmp_path / "results" / "blank.ipynb.json").read_text())
    assert stored["sha256"] and stored["fingerprint"] == job.fingerprint()

    def must_not_run(*args, **kwargs):
        raise AssertionError("re-executed an unchanged submission")

    monkeypatch.setattr(grade_module, "grade_one", must_not_run)
    assert grade_batch(job, submissions, tmp_path, progress=False) == first
    forced = grade_batch(job, submissions, tmp_path, force=True, progress=False)
    assert forced[0].status == "grader-error" and "re-executed" in forced[0].message
    assert json.loads((tmp_path / "results" / "blank.ipynb.json").read_text()) == stored, \
        "a grader fault keeps the previous result"


def test_reuse_matches_a_full_regrade_after_a_config_change(tmp_path, raw_config, monkeypatch):
    """Check that --reuse after a threshold and points change equals a full regrade, without executing"""
    names = ["solution.ipynb", "hardcoded_accuracy.ipynb", "softmax_at_end.ipynb", "blank.ipynb"]
    submissions = discover([SUBMISSIONS / "spiral" / n for n in names])
    config = config_with(raw_config)
    first = grade_batch(make_job("spiral", config, jobs=2), submissions, tmp_path / "out", progress=False)

    changed = config_with(raw_config, **{"assignments.spiral.thresholds": {"min_test_accuracy": 0.97,
                                                                           "max_best_val_loss": 0.45},
                                         "assignments.spiral.questions.q2": {"points": 5}})
    full = [r.to_json() for r in grade_batch(make_job("spiral", changed, jobs=2), submissions, tmp_path / "full",
                                             progress=False)]

    def must_not_run(*args, **kwargs):
        raise AssertionError("executed a notebook during --reuse")

    monkeypatch.setattr(grade_module, "grade_one", must_not_run)
    reused = [r.to_json() for r in grade_batch(make_job("spiral", changed, jobs=2), submissions, tmp_path / "out",
                                               progress=False, reuse=True)]
    as_points = lambda rs: {r["submission"]: {q: row["points"] for q, row in r["questions"].items()} for r in rs}  # noqa: E731
    assert as_points(reused) == as_points(full)
    assert {r["submission"]: r["seconds"] for r in reused} == {r.submission: r.seconds for r in first}, \
        "a recomputed result keeps the time its execution took"
    spiral = changed.assignment("spiral")  # q3, which owns the accuracy threshold, now fails at 97%
    assert {r["submission"]: r["total"] for r in reused}["solution.ipynb"] == spiral.max_points - spiral.questions["q3"].points


def test_reuse_reexecutes_only_submissions_missing_probe_data(tmp_path, config, monkeypatch):
    """Check that a check with no stored data forces re-execution of just the affected submissions"""
    submissions = discover([SUBMISSIONS / "spiral" / n for n in ("solution.ipynb", "blank.ipynb")])
    job = make_job("spiral", config, jobs=2)
    grade_batch(job, submissions, tmp_path, progress=False)
    stored = tmp_path / "results" / "blank.ipynb.json"
    data = json.loads(stored.read_text())
    data["probe_signatures"]["q4.0"] = "a check that did not exist"
    data["fingerprint"] = "older grader"
    stored.write_text(json.dumps(data))
    solution = json.loads((tmp_path / "results" / "solution.ipynb.json").read_text())
    solution["fingerprint"] = "older grader"
    (tmp_path / "results" / "solution.ipynb.json").write_text(json.dumps(solution))
    executed = []
    real = grade_module.grade_one
    monkeypatch.setattr(grade_module, "grade_one",
                        lambda job, sub, slot=0, **kw: executed.append(sub.name) or real(job, sub, slot, **kw))
    grade_batch(job, submissions, tmp_path, progress=False, reuse=True)
    assert executed == ["blank.ipynb"]


@pytest.mark.parametrize("jobs", ["2", "1"])  # --jobs 1 on two cores: with warm sandboxes waiting
def test_ctrl_c_leaves_no_partial_files_or_processes(tmp_path, jobs):
    """Check that SIGINT mid-batch exits cleanly: whole result files only, no sandbox process or folder left"""
    import signal
    import subprocess
    import sys
    import time

    from autograder.sandbox import BASE_UID, UID_RANGE

    folder = tmp_path / "subs"
    folder.mkdir()
    # Enough copies that some are still queued a second after the first result: a forked spiral
    # solution can take under a second, and four copies could all be done before the interrupt.
    for i in range(12):
        (folder / f"s{i:02d}.ipynb").write_bytes(SOLUTION.read_bytes().replace(b"Phase 1", f"Phase 1 ({i})".encode()))
    out = tmp_path / "out"
    # A shell's background job starts with SIGINT ignored, which Python would keep: restore it.
    proc = subprocess.Popen([sys.executable, "-m", "autograder", "grade", "spiral", str(folder), "--out", str(out),
                             "--jobs", jobs], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while not list((out / "results").glob("*.json")) and time.monotonic() < deadline:
        time.sleep(0.2)  # interrupt once the first result is on disk and the next ones are running
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert "run the same command again to resume" in err
    time.sleep(0.5)
    owners = []
    for entry in Path("/proc").iterdir():
        try:
            owners.append(entry.stat().st_uid if entry.name.isdigit() else -1)
        except OSError:
            continue
    assert not [uid for uid in owners if BASE_UID <= uid < BASE_UID + UID_RANGE]
    assert not list(Path(tempfile.gettempdir()).glob(f"nn4e-sandbox-{proc.pid}-*"))
    assert not list(out.rglob("*.tmp")), "half-written files were left behind"
    for path in (out / "results").glob("*.json"):
        assert json.loads(path.read_text())["status"] == "ok"


NO_LAYERS = {"NN4E_SANDBOX_NO_BWRAP": "1", "NN4E_SANDBOX_NO_LANDLOCK": "1", "NN4E_SANDBOX_NO_USER": "1"}


def test_grade_refuses_without_isolation(tmp_path, monkeypatch, capsys):
    """Check that with every isolation layer off, grade exits 2 naming what to enable, and grades nothing"""
    for name, value in NO_LAYERS.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    assert main(["grade", "spiral", str(SOLUTION), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--allow-unisolated" in err and "bubblewrap" in err and "Landlock" in err
    assert not (out / "grades.csv").exists()


def test_allow_unisolated_records_it_in_every_result(tmp_path, monkeypatch, capsys):
    """Check that --allow-unisolated grades, warns, and marks each result as unisolated"""
    for name, value in NO_LAYERS.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "out"
    assert main(["grade", "spiral", str(SUBMISSIONS / "spiral" / "blank.ipynb"), "--out", str(out),
                 "--allow-unisolated"]) == 0
    assert "WITHOUT filesystem isolation" in capsys.readouterr().err
    stored = json.loads((out / "results" / "blank.ipynb.json").read_text())
    assert "unisolated" in stored["sandbox"]


def test_a_full_disk_stops_the_batch_cleanly(tmp_path, config, monkeypatch, capsys):
    """Check that when free disk runs low mid-batch, grading stops with exit 1, keeps finished results and leaves no partial file"""
    folder = tmp_path / "subs"
    folder.mkdir()
    for name in ("a.ipynb", "b.ipynb", "c.ipynb"):
        (folder / name).write_bytes((SUBMISSIONS / "spiral" / "blank.ipynb").read_bytes())
    real = grade_module.shutil.disk_usage
    out = tmp_path / "out"

    def shrinking(path):
        # Plenty of space until the first result is written, then almost none.
        usage = real(path)
        results = out / "results"
        return usage._replace(free=10 * 2**20 if results.exists() and any(results.iterdir()) else usage.free)

    monkeypatch.setattr(grade_module.shutil, "disk_usage", shrinking)
    assert main(["grade", "spiral", str(folder), "--out", str(out), "--jobs", "1"]) == 1
    err = capsys.readouterr().err
    assert "min_free_disk_mb" in err and "stopped after 1 of 3" in err and "run the same command again" in err
    assert sorted(p.name for p in (out / "results").iterdir()) == ["a.ipynb.json"]
    assert not list(out.rglob("*.tmp"))
    monkeypatch.setattr(grade_module.shutil, "disk_usage", real)
    assert main(["grade", "spiral", str(folder), "--out", str(out), "--jobs", "1"]) == 0  # the rerun resumes
    assert len(list((out / "results").iterdir())) == 3
