"""Canned submissions of every assignment score exactly as expected: the solution gets full marks,
the blank gets no answer points, and each realistic mistake loses exactly its questions."""
from __future__ import annotations

import csv
import json

import pytest
import yaml

from autograder.grade import grade_batch, make_job
from autograder.submissions import discover
from conftest import SUBMISSIONS, canned_ids

pytestmark = pytest.mark.slow
_GRADED: dict[str, dict] = {}


@pytest.fixture(scope="module")
def graded(tmp_path_factory, config):
    """Grade each assignment's canned folder once (two jobs), keyed by file name."""

    def get(aid: str) -> tuple[dict, object]:
        if aid not in _GRADED:
            out = tmp_path_factory.mktemp(f"graded-{aid}")
            job = make_job(aid, config, jobs=2)
            results = grade_batch(job, discover([SUBMISSIONS / aid]), out, progress=False)
            _GRADED[aid] = ({r["submission"]: r for r in results}, out)
        return _GRADED[aid]

    return get


def expected_points(config, aid: str, loses: list[str] | str) -> dict[str, float]:
    questions = config.assignment(aid).questions
    return {q: 0.0 if (loses == "all" or q in loses) else spec.points
            for q, spec in questions.items() if not spec.manual}


def cases():
    for aid in canned_ids():
        mistakes = yaml.safe_load((SUBMISSIONS / f"{aid}.yml").read_text())
        yield pytest.param(aid, "solution.ipynb", [], id=f"{aid}-solution")
        yield pytest.param(aid, "blank.ipynb", "all", id=f"{aid}-blank")
        for name, spec in mistakes.items():
            yield pytest.param(aid, f"{name}.ipynb", spec["loses"], id=f"{aid}-{name}")


@pytest.mark.parametrize("aid, filename, loses", list(cases()))
def test_canned_submission_scores(graded, config, aid, filename, loses):
    """Check each question's points of a canned submission against its expected losses"""
    results, _ = graded(aid)
    result = results[filename]
    assert result["status"] == "ok", result["message"]
    points = {q: row["points"] for q, row in result["questions"].items() if not row["manual"]}
    assert points == expected_points(config, aid, loses), json.dumps(result["questions"], indent=1)[:3000]


@pytest.mark.parametrize("aid", canned_ids())
def test_csv_and_result_files(graded, config, aid):
    """Check grades.csv's columns and one JSON result per submission with per-question feedback"""
    results, out = graded(aid)
    with (out / "grades.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    questions = list(config.assignment(aid).questions)
    assert list(rows[0]) == ["submission", *questions, "total", "max_total", "status", "message",
                             "student", "student_id"]
    assert {row["submission"] for row in rows} == set(results)
    for row in rows:
        stored = json.loads((out / "results" / f"{row['submission']}.json").read_text())
        assert float(row["total"]) == stored["total"]
        for qid in questions:
            entry = stored["questions"][qid]
            assert {"points", "max_points", "feedback"} <= set(entry)
