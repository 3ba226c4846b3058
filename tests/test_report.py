"""The instructor report: plots embedded, CSV exports in the right layout, renders in Chromium."""
from __future__ import annotations

import base64
import csv
import html
import json
import re
import shutil
import subprocess

import pytest

from conftest import config_with

from autograder.report import build_report, item_analysis, load_results, question_titles
from autograder.results import ResultFileError, ResultStore, SubmissionResult
from autograder.submissions import Submission

BOB_Q1 = {"description": "X_train is batch-first", "passed": False, "message": "shape is (2, 200), expected (N, 2)"}


def fake_result(aid: str, name: str, points: dict, status="ok", seconds=5.0, student=None,
                sandbox=("process",), manual=(), failing=None, message="") -> SubmissionResult:
    """A result with `points` {qid: (points, max)}; `manual` qids are hand-graded and open;
    `failing` {qid: [check JSON]} gives a question's failing checks."""
    questions = {q: {"points": p, "max_points": m, "manual": False, "checks": (failing or {}).get(q, []),
                     "feedback": ""} for q, (p, m) in points.items()}
    questions.update({q: {"points": None, "max_points": m, "manual": True, "checks": [], "feedback": "graded by hand"}
                      for q, m in dict(manual).items()})
    result = {"submission": name, "assignment": aid, "status": status, "message": message, "questions": questions,
              "total": sum(p for p, _ in points.values()),
              "max_total": sum(m for _, m in points.values()) + sum(dict(manual).values()),
              "seconds": seconds, "notes": [], "cell_errors": [], "sandbox": list(sandbox)}
    if student:
        result["student"] = student
    return SubmissionResult.from_json(result)


@pytest.fixture()
def results_dirs(tmp_path, config):
    """spiral: Ann full auto points, Bob (late) lost q1 and q4, Cat timed out, junk.txt invalid; q6 open for all."""
    spiral = config.assignment("spiral")
    stores = {}
    for aid in ("spiral",):
        stores[aid] = ResultStore(tmp_path / aid, spiral)
    maxima = {q: s.points for q, s in spiral.questions.items() if not s.manual}
    manual = {q: s.points for q, s in spiral.questions.items() if s.manual}
    grid = [("ann.ipynb", {q: m for q, m in maxima.items()}, "ok", {"name": "Ann Lee", "canvas_id": "101"}),
            ("bob.ipynb", {**maxima, "q1": 0, "q4": 0}, "ok", {"name": "Bob Roy", "canvas_id": "102", "late": True}),
            ("cat.ipynb", {q: 0 for q in maxima}, "timeout", {"name": "Cat Sun", "canvas_id": "103"}),
            ("junk.txt", {q: 0 for q in maxima}, "invalid", None)]
    failing = {"q1": [BOB_Q1, {"description": "y_train holds class indices", "passed": True, "message": ""}]}
    for name, points, status, student in grid:
        result = fake_result("spiral", name, {q: (p, maxima[q]) for q, p in points.items()}, status, student=student,
                             manual=manual, failing=failing if name == "bob.ipynb" else None,
                             message="not a notebook: broken JSON" if status == "invalid" else "")
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
    # 3 valid submissions x 7 questions, each cell a feedback link; every question header titled;
    # the invalid submission listed apart.
    assert 'data-heatmap-links="21"' in dom and 'data-titled-questions="7"' in dom
    assert 'data-invalid-listed="1"' in dom
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


def test_question_titles_from_the_released_notebook(tmp_path, config):
    """Check that titles come from the "**Question N (...)**" prompts, dotted numbers included"""
    cells = [{"cell_type": "markdown", "source": ["**Question 1 (2 points).** Convert the arrays to tensors.\n", "- more"]},
             {"cell_type": "code", "source": "**Question 3 (1 point).** not a prompt"},
             {"cell_type": "markdown", "source": "<!-- BEGIN QUESTION -->\n\n**Question 10.2 (1 point, graded by hand).** "
                                                 "From your table: which `layer` learns the slowest, and why does it "
                                                 "matter for training deep networks?"}]
    notebook = tmp_path / "x.ipynb"
    notebook.write_text(json.dumps({"cells": cells}))
    titles = question_titles("x", notebook)
    assert titles["q1"] == "Convert the arrays to tensors" and set(titles) == {"q1", "q10_2"}
    assert titles["q10_2"] == "From your table"
    assert question_titles("x", tmp_path / "missing.ipynb") == {}
    assert set(question_titles("spiral")) == set(config.assignment("spiral").questions), "the release titles all"


def test_heatmap_failures_invalid_and_late(results_dirs, tmp_path, config):
    """Check the heatmap's feedback links, titles, failing checks, late column and the invalid list"""
    out = tmp_path / "out" / "report"
    page = build_report(config, load_results(results_dirs, config), out).read_text()
    heatmap = re.search(r'<table class="heatmap">(.*?)</table>', page, re.S).group(1)
    links = re.findall(r'<a href="([^"]+)">', heatmap)
    assert len(links) == 3 * 7, "one linked cell per valid submission and question"
    assert all((out / link).resolve().is_file() for link in links)
    assert {link.rsplit("/", 1)[1] for link in links} == {"ann.ipynb.md", "bob.ipynb.md", "cat.ipynb.md"}
    assert "junk.txt" not in heatmap and heatmap.count(">to grade by hand</a>") == 3  # q6 open for each
    assert all(html.escape(title) in heatmap for title in question_titles("spiral").values())
    bob = re.search(r"<tr><td>Bob Roy</td><td class=\"late\">(\w*)</td>", heatmap)
    ann = re.search(r"<tr><td>Ann Lee</td><td class=\"late\">(\w*)</td>", heatmap)
    assert bob.group(1) == "late" and ann.group(1) == ""
    failures = re.search(r'<li data-question="q1">(.*?)</ol></li>', page, re.S).group(1)
    assert "shape is (2, 200), expected (N, 2)" in failures and "2 of 3 lost points" in failures
    assert "y_train holds class indices" not in failures, "a passing check is no reason"
    invalid = re.search(r'<ul class="invalid">(.*?)</ul>', page, re.S).group(1)
    assert "junk.txt" in invalid and "broken JSON" in invalid
    assert "<p>3 submissions (1 invalid" in page, "the invalid submission is left out of the statistics"
    items = {row["question"]: row for row in csv.DictReader((out / "item_analysis.csv").open())}
    assert items["q2"]["submissions"] == "3" and items["q2"]["pass_rate"] == "0.6667"
    assert items["q1"]["title"] == question_titles("spiral")["q1"] != ""


def test_lost_points_csv(results_dirs, tmp_path, config):
    """Check lost_<aid>.csv: one row per student and question short of full points, with why"""
    out = build_report(config, load_results(results_dirs, config), tmp_path / "report").parent
    rows = list(csv.DictReader((out / "lost_spiral.csv").open()))
    bob = {row["question"]: row for row in rows if row["student"] == "Bob Roy"}
    assert set(bob) == {"q1", "q4", "q6"}
    assert bob["q1"]["why"] == "X_train is batch-first: shape is (2, 200), expected (N, 2)"
    assert bob["q1"]["points"] == "0" and bob["q1"]["max_points"] == "2" and bob["q1"]["submission"] == "bob.ipynb"
    assert bob["q6"]["why"] == "to grade by hand" and bob["q6"]["points"] == ""
    assert bob["q1"]["title"] == question_titles("spiral")["q1"] != ""
    assert {row["question"] for row in rows if row["student"] == "Ann Lee"} == {"q6"}
    assert not any(row["submission"] == "junk.txt" for row in rows), "invalid submissions are listed in the page"


def test_canvas_column_and_blank_invalid(results_dirs, tmp_path, config, raw_config):
    """Check the Canvas header with and without canvas_id, and that invalid exports blank, not 0"""
    spiral = config.assignment("spiral")
    results = load_results(results_dirs, config)
    page = build_report(config, results, tmp_path / "plain").read_text()
    header = next(csv.reader((tmp_path / "plain" / "canvas_gradebook.csv").open()))
    assert header[5] == f"{spiral.title} (spiral)" and "Canvas create a new column" in page
    with_id = config_with(raw_config, **{"assignments.spiral.canvas_id": 12345})
    page = build_report(with_id, results, tmp_path / "linked").read_text()
    canvas = list(csv.reader((tmp_path / "linked" / "canvas_gradebook.csv").open()))
    assert canvas[0][5] == f"{spiral.title} (12345)" and "create a new column" not in page
    assert canvas[1][5] == f"{spiral.points_possible:g}", "Points Possible includes the hand-graded points"
    assert ["junk.txt", "", "", "", "", ""] in canvas
    gradebook = {row["student"]: row["spiral"] for row in csv.DictReader((tmp_path / "linked" / "gradebook.csv").open())}
    assert gradebook["junk.txt"] == "" and gradebook["Cat Sun"] == "0"
