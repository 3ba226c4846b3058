"""The instructor report: plots embedded, CSV exports in the right layout, renders in Chromium."""
from __future__ import annotations

import base64
import csv
import json
import re
import shutil
import subprocess

import pytest

from autograder.report import build_report, item_analysis, load_results
from autograder.results import ResultFileError, ResultStore, SubmissionResult
from autograder.submissions import Submission


def fake_result(aid: str, name: str, points: dict, status="ok", seconds=5.0, student=None,
                sandbox=("process",)) -> SubmissionResult:
    questions = {q: {"points": p, "max_points": m, "manual": False, "checks": [], "feedback": ""}
                 for q, (p, m) in points.items()}
    result = {"submission": name, "assignment": aid, "status": status, "message": "", "questions": questions,
              "total": sum(p for p, _ in points.values()), "max_total": sum(m for _, m in points.values()),
              "seconds": seconds, "notes": [], "cell_errors": [], "sandbox": list(sandbox)}
    if student:
        result["student"] = student
    return SubmissionResult.from_json(result)


@pytest.fixture()
def results_dirs(tmp_path, config):
    spiral = config.assignment("spiral")
    stores = {}
    for aid in ("spiral",):
        stores[aid] = ResultStore(tmp_path / aid, spiral)
    maxima = {q: s.points for q, s in spiral.questions.items() if not s.manual}
    grid = [("ann.ipynb", {q: m for q, m in maxima.items()}, "ok", {"name": "Ann Lee", "canvas_id": "101"}),
            ("bob.ipynb", {**maxima, "q1": 0, "q4": 0}, "ok", {"name": "Bob Roy", "canvas_id": "102"}),
            ("cat.ipynb", {q: 0 for q in maxima}, "timeout", {"name": "Cat Sun", "canvas_id": "103"}),
            ("junk.txt", {q: 0 for q in maxima}, "invalid", None)]
    for name, points, status, student in grid:
        result = fake_result("spiral", name, {q: (p, maxima[q]) for q, p in points.items()}, status, student=student)
        stores["spiral"].write(Submission(tmp_path / name, name), result)
    return [tmp_path / "spiral"]


def test_report_files_and_exports(results_dirs, tmp_path, config):
    """Check the HTML's embedded plots and the three CSV exports"""
    path = build_report(config, load_results(results_dirs, config), tmp_path / "report")
    page = path.read_text()
    images = re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 and all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "http://" not in page and "https://" not in page, "the report must work offline"
    assert "junk.txt" in page and "timeout" in page
    canvas = list(csv.reader((path.parent / "canvas_gradebook.csv").open()))
    assert canvas[0][:5] == ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
    spiral = config.assignment("spiral")  # Points Possible counts the hand-graded point, still open for Ann
    assert canvas[1][0] == "Points Possible" and canvas[1][5] == f"{spiral.points_possible:g}"
    assert ["Ann Lee", "101", "", "", "", f"{spiral.max_points:g}"] in canvas  # Ann has every auto question right
    items = list(csv.DictReader((path.parent / "item_analysis.csv").open()))
    assert [row["question"] for row in items][:2] == ["q1", "q4"], "hardest questions come first"
    gradebook = list(csv.DictReader((path.parent / "gradebook.csv").open()))  # Bob lost q1 and q4
    bob = spiral.max_points - spiral.questions["q1"].points - spiral.questions["q4"].points
    assert {row["student"]: row["spiral"] for row in gradebook}["Bob Roy"] == f"{bob:g}"


def test_item_analysis_pass_rates():
    """Check mean points and pass rate per question"""
    results = [fake_result("a", "x", {"q1": (2, 2), "q2": (0, 3)}), fake_result("a", "y", {"q1": (0, 2), "q2": (3, 3)}),
               fake_result("a", "z", {"q1": (2, 2), "q2": (0, 3)})]
    items = {i["question"]: i for i in item_analysis(results)}
    assert items["q1"]["pass_rate"] == pytest.approx(2 / 3) and items["q2"]["mean_points"] == pytest.approx(1.0)


def test_missing_results_folder_is_named(tmp_path, config):
    """Check that a folder without results gets a clear message"""
    with pytest.raises(FileNotFoundError, match="no results"):
        load_results([tmp_path], config)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_report_renders_in_headless_chromium(results_dirs, tmp_path, config):
    """Check that Chromium renders the page with every image decoded, and takes a screenshot"""
    path = build_report(config, load_results(results_dirs, config), tmp_path / "report")
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", "--virtual-time-budget=5000", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-images-ok="true"' in dom and 'data-image-count="3"' in dom
    shot = tmp_path / "shot.png"
    subprocess.run([*flags, "--window-size=1200,1600", f"--screenshot={shot}", path.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_unisolated_results_are_flagged(tmp_path, config):
    """Check that the report warns about, and names, every submission graded without isolation"""
    spiral = config.assignment("spiral")
    maxima = {q: (s.points, s.points) for q, s in spiral.questions.items() if not s.manual}
    store = ResultStore(tmp_path / "spiral", spiral)
    for name, layers in (("safe.ipynb", ["process", "bubblewrap"]), ("risky.ipynb", ["process", "unisolated"])):
        result = fake_result("spiral", name, maxima, sandbox=layers)
        store.write(Submission(tmp_path / name, name), result)
    page = build_report(config, load_results([tmp_path / "spiral"], config), tmp_path / "report").read_text()
    warning = re.search(r'<p class="warning">(.*?)</p>', page, re.S)
    assert warning and "without filesystem isolation" in warning.group(1)
    assert "risky.ipynb" in warning.group(1) and "safe.ipynb" not in warning.group(1)


def test_a_result_survives_its_file():
    """Check that a result written to JSON reads back as the same typed result"""
    result = fake_result("spiral", "a.ipynb", {"q1": (2, 2), "q2": (0, 2)}, student={"name": "Ada"})
    assert SubmissionResult.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_a_file_that_is_not_a_result_is_named(tmp_path, config):
    """Check that the report names a results file it cannot read and says what to do"""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "notes.json").write_text('{"hello": 1}')
    with pytest.raises(ResultFileError, match=r"notes\.json.*--force"):
        load_results([tmp_path], config)
