"""Hand-graded questions: answers found in notebooks, the grading page, the manual CSVs and their merge.

Fast tests cover the pieces on synthetic results; the slow ones take canned autograd submissions
(under Canvas names) from `grade` through `manual`, a filled CSV and `report` to the Canvas
export, then regrade them and check that no hand-graded point is lost.
"""
from __future__ import annotations

import csv
import html
import json
import re
import shutil
import subprocess

import pytest

from autograder import answers
from autograder.cli import main
from autograder.config import REPO_ROOT
from autograder.manual import ManualGradesError, ManualSheets, code_for, merge_folder, prepare
from autograder.manual_page import Entry, page, render_cells
from autograder.results import QuestionResult, ResultStore, SubmissionResult
from autograder.submissions import Submission
from conftest import SUBMISSIONS, load_notebook, write_notebook

AID = "autograd"
FOLDERS = {"leeann_101_5001_autograd.ipynb": "solution.ipynb", "royrob_102_5002_autograd.ipynb": "blank.ipynb"}
# Leeann's own words for q9 (not the model answer), so the page can show that it hides the model.
OWN_ANSWER = "I drew the graph on paper: a = 3, b = -3, d = exp(-1); backward gives df/dx = -1.37."


def asked(config, aid=AID):
    assignment = config.assignment(aid)
    return answers.load_questions(REPO_ROOT / assignment.notebook, REPO_ROOT / "assignments" / aid / f"{aid}.ipynb",
                                  assignment.manual_questions)


def model_text(question) -> str:
    return " ".join(cell["source"] for cell in question.model_answer)


# -- answers: where a hand-graded answer sits in a notebook --------------------------------------
@pytest.mark.parametrize("aid", ["autograd", "tensors", "perceptron-xor", "spiral", "mnist", "pipeline"])
def test_every_hand_graded_question_is_found_with_prompt_and_model_answer(config, aid):
    """Check that each manual question of grading.yml maps to a released prompt and a model answer"""
    found = asked(config, aid)
    assert list(found) == [q for q in config.assignment(aid).questions if q in config.assignment(aid).manual_questions]
    for question in found.values():
        assert question.prompt_id and "graded by hand" in question.heading and question.model_answer
    blank = load_notebook(SUBMISSIONS / aid / "blank.ipynb")
    collected = answers.collect(blank, found)
    assert all(entry["cells"] for entry in collected.values()), collected


def test_an_answer_is_found_without_cell_ids_and_keeps_added_cells(config):
    """Check that a notebook re-saved without ids still yields each answer, with cells the student added"""
    found = asked(config)
    notebook = load_notebook(SUBMISSIONS / AID / "blank.ipynb")
    index = next(i for i, c in enumerate(notebook["cells"]) if c.get("id") == found["q9"].prompt_id)
    notebook["cells"].insert(index + 2, {"cell_type": "code", "source": "print('my check')", "metadata": {},
                                         "outputs": [{"output_type": "stream", "name": "stdout", "text": "ok\n"}]})
    for cell in notebook["cells"]:
        cell.pop("id", None)
        cell["source"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    collected = answers.collect(notebook, found)
    cells = collected["q9"]["cells"]
    assert [c["cell_type"] for c in cells] == ["markdown", "code"]
    assert cells[1]["outputs"] == [{"text": "ok\n"}]
    assert all("cells" in entry for entry in collected.values())


def test_a_deleted_prompt_is_reported_not_guessed(config):
    """Check that an answer whose prompt cell was deleted is 'missing' with a reason, and others are kept"""
    found = asked(config)
    notebook = load_notebook(SUBMISSIONS / AID / "blank.ipynb")
    notebook["cells"] = [c for c in notebook["cells"] if c.get("id") != found["q14"].prompt_id]
    for cell in notebook["cells"]:
        cell["source"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    collected = answers.collect(notebook, found)
    assert "open the file" in collected["q14"]["missing"] and "cells" in collected["q9"]


def test_outputs_are_kept_as_data_never_as_html():
    """Check that figures stay PNG data, HTML outputs become their text, bad base64 and huge text are dropped"""
    budget = [answers.MAX_ANSWER_BYTES]
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    cell = {"cell_type": "code", "source": "plot()", "outputs": [
        {"output_type": "display_data", "data": {"image/png": png, "text/plain": "<Figure>"}},
        {"output_type": "display_data", "data": {"text/html": "<script>alert(1)</script>", "text/plain": "table"}},
        {"output_type": "display_data", "data": {"image/png": "not base64 \"><script>"}},
        {"output_type": "stream", "text": "x" * (answers.MAX_TEXT_CHARS + 10)}]}
    kept = answers._kept_cell(cell, budget)["outputs"]
    assert kept[0] == {"image": "image/png", "data": png}
    assert kept[1] == {"text": "table"}
    assert "script" not in json.dumps(kept[2:])
    assert "more characters left out" in kept[-1]["text"]


def test_a_stale_release_is_named(config):
    """Check that a release whose hand-graded questions differ from grading.yml asks for a rebuild"""
    assignment = config.assignment(AID)
    master = json.loads((REPO_ROOT / assignment.notebook).read_text())
    released = json.loads((REPO_ROOT / "assignments" / AID / f"{AID}.ipynb").read_text())
    for notebook in (master, released):
        for cell in notebook["cells"]:
            cell["source"] = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    with pytest.raises(answers.AnswersError, match="rebuild"):
        answers.questions(master, released, [*assignment.manual_questions, "q3"])


# -- the manual CSVs -------------------------------------------------------------------------------
def fake_results(config, tmp_path, names=("ann.ipynb", "bob.ipynb")) -> list[SubmissionResult]:
    assignment = config.assignment(AID)
    store = ResultStore(tmp_path, assignment)
    results = []
    for name in names:
        questions = {q: (QuestionResult.by_hand(spec, None) if spec.manual else
                         QuestionResult(spec.points, spec.points)) for q, spec in assignment.questions.items()}
        result = SubmissionResult.totalled(questions, assignment.points_possible, submission=name, assignment=AID,
                                           status="ok")
        results.append(store.write(Submission(tmp_path / name, name), result))
    return results


def sheet(tmp_path, qid: str, text: str) -> None:
    (tmp_path / "manual").mkdir(exist_ok=True)
    (tmp_path / "manual" / f"{qid}.csv").write_text(text, encoding="utf-8")


@pytest.mark.parametrize("qid, text, message", [
    ("q9", "submission,points,comment\n{ann},1,\nSNOBODY1,1,\n", r"q9\.csv, line 3: no submission 'SNOBODY1'"),
    ("q3", "submission,points,comment\n{ann},2,\n", r"q3\.csv: q3 is graded automatically"),
    ("q99", "submission,points,comment\n", r"q99\.csv: autograd has no question 'q99'"),
    ("q9", "submission,points,comment\n{ann},1.5,\n", r"q9\.csv, line 2: points '1\.5' must be a number from 0 to 1"),
    ("q9", "submission,points,comment\n{ann},-1,\n", r"line 2: points '-1'"),
    ("q9", "submission,points,comment\n{ann},one,\n", r"line 2: points 'one'"),
    ("q9", "submission,points,comment\n{ann},1,\n{ann},0,\n", r"line 3: S\w+ is graded twice \(also on line 2\)"),
    ("q9", "student,score\n", r"q9\.csv, line 1: the header must be submission,points,comment"),
    ("q9", "submission,points,comment\n{ann},1,good,extra\n", r"line 2: expected 3 columns"),
])
def test_a_bad_sheet_is_refused_with_its_row(config, tmp_path, qid, text, message):
    """Check that unknown submissions, non-manual questions and out-of-range points name file and line"""
    results = fake_results(config, tmp_path)
    sheet(tmp_path, qid, text.format(ann=code_for(AID, "ann.ipynb")))
    with pytest.raises(ManualGradesError, match=message):
        merge_folder(tmp_path, config)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    assert not (tmp_path / "report").exists()
    stored = json.loads((tmp_path / "results" / "ann.ipynb.json").read_text())
    assert stored == results[0].to_json(), "a refused sheet changes no result"


def test_points_merge_by_code_or_name_and_a_missing_row_stays_open(config, tmp_path):
    """Check the merge: points and comment fill the question, a blank or missing row leaves it open"""
    fake_results(config, tmp_path)
    ann = code_for(AID, "ann.ipynb")
    sheet(tmp_path, "q9", f'submission,points,comment\n{ann},0.5,"Graph right, adjoints wrong"\nbob.ipynb,,\n')
    sheet(tmp_path, "q16", "\ufeffsubmission,points,comment\nbob.ipynb,1,\n")  # a spreadsheet's BOM
    merged = {r.submission: r for r in merge_folder(tmp_path, config)}
    ann_q9, bob_q9 = merged["ann.ipynb"].questions["q9"], merged["bob.ipynb"].questions["q9"]
    assert (ann_q9.points, ann_q9.feedback) == (0.5, "Graph right, adjoints wrong") and bob_q9.open
    assert merged["bob.ipynb"].questions["q16"].points == 1 and merged["ann.ipynb"].questions["q16"].open
    auto = config.assignment(AID).max_points
    assert merged["ann.ipynb"].total == auto + 0.5 and merged["bob.ipynb"].total == auto + 1
    assert merged["ann.ipynb"].max_total == config.assignment(AID).points_possible
    assert list(merged["ann.ipynb"].questions) == list(config.assignment(AID).questions)
    rows = {r["submission"]: r for r in csv.DictReader((tmp_path / "grades.csv").open())}
    assert rows["ann.ipynb"]["q9"] == "0.5" and rows["bob.ipynb"]["q9"] == ""
    assert rows["bob.ipynb"]["to_grade"] == "q9 q10 q11 q14"
    feedback = (tmp_path / "feedback" / "ann.ipynb.md").read_text()
    assert "| q9 | 0.5 / 1 | graded by hand |" in feedback and "Graph right, adjoints wrong" in feedback
    assert "| q16 | - / 1 | to be graded by hand |" in feedback

    (tmp_path / "manual" / "q9.csv").unlink()  # removing a sheet reopens its points
    assert merge_folder(tmp_path, config)[0].questions["q9"].open


def test_templates_add_new_submissions_and_keep_existing_rows(config, tmp_path):
    """Check that the template gains a row per new submission and never changes rows already there"""
    fake_results(config, tmp_path, names=("ann.ipynb",))
    ann = code_for(AID, "ann.ipynb")
    sheet(tmp_path, "q9", f'submission,points,comment\n{ann},1.0,"kept, as typed"\n')
    fake_results(config, tmp_path, names=("bob.ipynb",))
    ManualSheets.load(tmp_path, AID, config.assignment(AID)).write_templates(["ann.ipynb", "bob.ipynb"])
    text = (tmp_path / "manual" / "q9.csv").read_text()
    assert text == f'submission,points,comment\n{ann},1.0,"kept, as typed"\n{code_for(AID, "bob.ipynb")},,\n'
    assert (tmp_path / "manual" / "q16.csv").read_text().count("\n") == 3


def test_codes_are_stable_and_distinct():
    """Check that a submission's code depends only on the assignment and the name"""
    assert code_for("autograd", "a.ipynb") == code_for("autograd", "a.ipynb") != code_for("spiral", "a.ipynb")
    assert len({code_for("autograd", f"s{i}.ipynb") for i in range(2000)}) == 2000


# -- the page ----------------------------------------------------------------------------------------
def test_hostile_answers_are_shown_as_text(config):
    """Check that markdown HTML, script links and HTML outputs never become markup, and only our script runs"""
    question = asked(config)["q9"]
    hostile = [{"cell_type": "markdown", "source": "<script>steal()</script> <img src=x onerror=alert(2)>\n\n"
                                                   "[x](javascript:void) ![y](javascript:void)"},
               {"cell_type": "code", "source": "</pre><script>x()</script>", "outputs": [{"text": "<b>hi</b>"}]}]
    shown = render_cells(hostile)
    assert "<script" not in shown and "<img src=x" not in shown and "javascript:" not in shown
    assert "&lt;script&gt;steal()" in shown  # shown as text
    text = page("Course", "Autograd", AID, question, 1, [Entry("SAAAA", "SAAAA", {"cells": hostile}, None)])
    assert len(re.findall(r"<script>", text)) == 1 and "script-src 'sha256-" in text
    assert re.search(r'<details class="model">', text) and "<details class=\"model\" open" not in text


@pytest.fixture(scope="module")
def graded_canvas(tmp_path_factory, config):
    """Two canned autograd submissions under Canvas names, graded once; Leeann answers q9 in her own words."""
    root = tmp_path_factory.mktemp("manual")
    (root / "subs").mkdir()
    found = asked(config)
    for name, canned in FOLDERS.items():
        notebook = load_notebook(SUBMISSIONS / AID / canned)
        if canned == "solution.ipynb":
            index = next(i for i, c in enumerate(notebook["cells"]) if c.get("id") == found["q9"].prompt_id)
            notebook["cells"][index + 1]["source"] = OWN_ANSWER
        write_notebook(notebook, root / "subs" / name)
    assert main(["grade", AID, str(root / "subs"), "--out", str(root / "out"), "--jobs", "2"]) == 0
    return root


def working_copy(graded_canvas, tmp_path):
    shutil.copytree(graded_canvas / "out", tmp_path / "out")
    return tmp_path / "out"


@pytest.mark.slow
def test_canned_round_trip_to_canvas(graded_canvas, tmp_path, config, capsys):
    """Check grade -> manual -> filled CSV -> report: points in grades.csv, JSON, feedback, report and Canvas"""
    out = working_copy(graded_canvas, tmp_path)
    assert main(["manual", AID, "--out", str(out)]) == 0
    assert "q9: 0 of 2 graded" in capsys.readouterr().out
    manual = config.assignment(AID).manual_questions
    assert sorted(p.name for p in (out / "manual").iterdir()) == sorted([f"{q}.csv" for q in manual]
                                                                        + [f"{q}.html" for q in manual])
    leeann, royrob = (code_for(AID, name) for name in FOLDERS)
    template = list(csv.reader((out / "manual" / "q9.csv").open()))
    assert template[0] == ["submission", "points", "comment"] and sorted(r[0] for r in template[1:]) == \
        sorted([leeann, royrob])
    page_text = (out / "manual" / "q9.html").read_text()
    assert html.escape(OWN_ANSWER) in page_text and "leeann" not in page_text, "anonymous by default"

    for qid in manual:  # Leeann gets everything but q16; Royrob's q9 gets 0 and the rest is left open
        rows = [[leeann, "1", f"{qid}: well argued"]] if qid != "q16" else []
        rows += [[royrob, "0", "No answer given."]] if qid == "q9" else []
        with (out / "manual" / f"{qid}.csv").open("w", newline="") as handle:
            csv.writer(handle).writerows([["submission", "points", "comment"], *rows])
    assert main(["report", str(out), "--out", str(tmp_path / "report")]) == 0

    auto, possible = config.assignment(AID).max_points, config.assignment(AID).points_possible
    grades = {r["submission"]: r for r in csv.DictReader((out / "grades.csv").open())}
    lee = grades["leeann_101_5001_autograd.ipynb"]
    assert lee["q9"] == "1" and lee["q16"] == "" and float(lee["total"]) == auto + len(manual) - 1
    assert lee["max_total"] == f"{possible:g}" and lee["to_grade"] == "q16"
    stored = json.loads((out / "results" / "leeann_101_5001_autograd.ipynb.json").read_text())
    assert stored["questions"]["q9"] == {"points": 1.0, "max_points": 1.0, "manual": True, "checks": [],
                                         "feedback": "q9: well argued"}
    feedback = (out / "feedback" / "leeann_101_5001_autograd.ipynb.md").read_text()
    assert "q14: well argued" in feedback and "| q16 | - / 1 | to be graded by hand |" in feedback
    for question in asked(config).values():  # the student's feedback never carries a model answer
        assert model_text(question)[:80] not in feedback
    report = (tmp_path / "report" / "report.html").read_text()
    assert re.search(r"<b>q16</b> \(2\): leeann, royrob", report) and re.search(r"<b>q10</b> \(1\): royrob", report)
    canvas = list(csv.reader((tmp_path / "report" / "canvas_gradebook.csv").open()))
    assert canvas[1][0] == "Points Possible" and canvas[1][5] == f"{possible:g}"
    assert ["leeann", "101", "", "", "", f"{auto + len(manual) - 1:g}"] in canvas
    assert ["royrob", "102", "", "", "", "0"] in canvas


@pytest.mark.slow
def test_regrading_never_drops_hand_graded_points(graded_canvas, tmp_path, config):
    """Check that grade --force and --reuse keep the manual points, and a bad sheet stops grade before it runs"""
    out = working_copy(graded_canvas, tmp_path)
    leeann = code_for(AID, "leeann_101_5001_autograd.ipynb")
    sheet(out, "q9", f"submission,points,comment\n{leeann},1,Good.\n")
    subs = graded_canvas / "subs"
    for flags in (["--force"], ["--reuse", "--force"], []):
        assert main(["grade", AID, str(subs / "leeann_101_5001_autograd.ipynb"), "--out", str(out), *flags]) == 0
        stored = json.loads((out / "results" / "leeann_101_5001_autograd.ipynb.json").read_text())
        assert stored["questions"]["q9"]["points"] == 1 and stored["total"] == config.assignment(AID).max_points + 1
        assert "Good." in (out / "feedback" / "leeann_101_5001_autograd.ipynb.md").read_text()

    sheet(out, "q9", f"submission,points,comment\n{leeann},5,Too many.\n")
    before = (out / "results" / "leeann_101_5001_autograd.ipynb.json").read_text()
    assert main(["grade", AID, str(subs), "--out", str(out), "--force"]) == 2
    assert (out / "results" / "leeann_101_5001_autograd.ipynb.json").read_text() == before


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_grading_page_in_headless_chromium(graded_canvas, tmp_path, config):
    """Check the page in Chromium: answers visible, model answer hidden, its CSV accepted by the merge"""
    out = working_copy(graded_canvas, tmp_path)
    prepare(out, AID, config)
    flags = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    url = (out / "manual" / "q9.html").as_uri() + "#selftest"
    dom = subprocess.run([*flags, "--dump-dom", "--virtual-time-budget=5000", url],
                         capture_output=True, text=True, timeout=120).stdout
    body = dict(re.findall(r'([\w-]+)="([^"]*)"', re.search(r"<body([^>]*)>", dom).group(1)))
    visible = html.unescape(body["data-visible-text"])
    assert OWN_ANSWER in visible and "Type your answer here" in visible
    assert model_text(asked(config)["q9"])[:60] not in visible and body["data-model-shown"] == "false"
    downloaded = html.unescape(body["data-csv"])
    (out / "manual" / "q9.csv").write_text(downloaded)  # what "Download CSV" saves
    merged = {r.submission: r.questions["q9"] for r in merge_folder(out, config)}
    assert {row.points for row in merged.values()} == {1.0}
    assert {row.feedback for row in merged.values()} == {'checked, "answer 1"', 'checked, "answer 2"'}


def test_hand_graded_question_helpers():
    """Check a hand-graded row: open until given points, then its feedback is the comment"""
    from autograder.config import Question

    question = Question(points=3, manual=True)
    assert QuestionResult.by_hand(question, None).open
    given = QuestionResult.by_hand(question, 2, "fine")
    assert not given.open and given.points == 2 and given.feedback == "fine" and not given.full
