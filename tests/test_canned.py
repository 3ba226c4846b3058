"""Canned submissions of every assignment score exactly as expected.

The solution, every correct answer written in another style (`loses: []`) and the solution run
twice cell by cell get full marks; the blank gets no answer points; each realistic mistake loses
exactly its questions, with feedback that names the problem. Every hidden check is failed by at
least one mistake, and byte-different copies of one notebook get identical results.
"""
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
            _GRADED[aid] = ({r.submission: r.to_json() for r in results}, out)  # as results/*.json hold it
        return _GRADED[aid]

    return get


def expected_points(config, aid: str, loses: list[str] | str) -> dict[str, float]:
    questions = config.assignment(aid).questions
    return {q: 0.0 if (loses == "all" or q in loses) else spec.points
            for q, spec in questions.items() if not spec.manual}


def variants(aid: str) -> dict[str, dict]:
    """The assignment's `<id>.yml`: mistakes and honest variants, by name."""
    return yaml.safe_load((SUBMISSIONS / f"{aid}.yml").read_text())


def cases():
    for aid in canned_ids():
        yield pytest.param(aid, "solution.ipynb", [], id=f"{aid}-solution")
        yield pytest.param(aid, "run_twice.ipynb", [], id=f"{aid}-run_twice")
        yield pytest.param(aid, "blank.ipynb", "all", id=f"{aid}-blank")
        for name, spec in variants(aid).items():
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
    assert list(rows[0]) == ["submission", *questions, "total", "max_total", "to_grade", "status", "message",
                             "student", "student_id", "late"]
    assert {row["submission"] for row in rows} == set(results)
    for row in rows:
        stored = json.loads((out / "results" / f"{row['submission']}.json").read_text())
        assert float(row["total"]) == stored["total"]
        for qid in questions:
            entry = stored["questions"][qid]
            assert {"points", "max_points", "feedback"} <= set(entry)


def mistakes():
    for aid in canned_ids():
        for name, spec in variants(aid).items():
            if spec["loses"]:
                yield pytest.param(aid, name, spec, id=f"{aid}-{name}")


@pytest.mark.parametrize("aid, name, spec", list(mistakes()))
def test_feedback_names_the_mistake(graded, aid, name, spec):
    """Check that each canned mistake's feedback (or hint) names its problem, not only its lost points"""
    keywords = spec.get("feedback")
    assert keywords, f"{aid}.yml: give {name} a `feedback:` keyword its feedback must contain"
    results, _ = graded(aid)
    questions = results[f"{name}.ipynb"]["questions"]
    for qid in spec["loses"]:
        said = " ".join([questions[qid]["feedback"], *(c.get("hint", "") for c in questions[qid]["checks"])])
        for keyword in [keywords] if isinstance(keywords, str) else keywords:
            assert keyword.lower() in said.lower(), f"{name}, {qid}: {keyword!r} not in {said!r}"


@pytest.mark.parametrize("aid", canned_ids())
def test_every_check_is_failed_by_a_mistake(graded, config, aid):
    """Check that every hidden check fails on at least one canned mistake (none is dead or untested)"""
    results, _ = graded(aid)
    lost = [f"{name}.ipynb" for name, spec in variants(aid).items() if spec["loses"]]
    unfailed = []
    for qid, question in config.assignment(aid).questions.items():
        if question.manual:
            continue
        for number, check in enumerate(results["solution.ipynb"]["questions"][qid]["checks"]):
            failing = [name for name in lost
                       if not results[name]["questions"][qid]["checks"][number]["passed"]
                       and not results[name]["questions"][qid]["checks"][number]["message"].startswith("not ")]
            if not failing:
                unfailed.append(f"{qid}: {check['description']}")
    assert not unfailed, f"no canned mistake of {aid} fails these checks: add one for each\n" + "\n".join(unfailed)


def _comment_changed(source: Path, target: Path) -> None:
    """A copy of `source` with one comment added to its first code cell, byte-different only."""
    notebook = json.loads(source.read_text(encoding="utf-8"))
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    cell["source"] = "# a second copy of this notebook\n" + text
    target.write_text(json.dumps(notebook, indent=1), encoding="utf-8")


@pytest.mark.parametrize("aid", canned_ids())
def test_byte_different_copies_get_identical_results(graded, config, tmp_path, aid):
    """Check that a copy differing by one comment gets the same status, points and messages"""
    results, _ = graded(aid)
    honest = [f"{n}.ipynb" for n, spec in variants(aid).items() if not spec["loses"]] or ["solution.ipynb"]
    mistake = next(f"{n}.ipynb" for n, spec in variants(aid).items() if spec["loses"])
    folder = tmp_path / "copies"
    folder.mkdir()
    for name in (honest[0], mistake):
        _comment_changed(SUBMISSIONS / aid / name, folder / name)
    copies = [r.to_json() for r in grade_batch(make_job(aid, config, jobs=2), discover([folder]), tmp_path / "out",
                                               progress=False)]
    for copy in copies:
        original = results[copy["submission"]]
        assert copy["status"] == original["status"]
        assert {q: (row["points"], [c["message"] for c in row["checks"]]) for q, row in copy["questions"].items()} == \
            {q: (row["points"], [c["message"] for c in row["checks"]]) for q, row in original["questions"].items()}


@pytest.mark.parametrize("aid", ["autograd", "spiral"])
def test_a_dask_cluster_grades_exactly_as_the_local_run(graded, config, dask_cluster, tmp_path, aid):
    """Check that every canned submission graded on a two-worker LocalCluster gets the local run's
    result (status, points, checks, feedback, messages) and the same hand-graded answers"""
    from distributed import Client

    from autograder.cluster import ClusterEngine

    local, local_out = graded(aid)
    out = tmp_path / "cluster"
    with Client(dask_cluster.scheduler_address, set_as_default=False) as client:
        engine = ClusterEngine(client, dask_cluster.scheduler_address)
        remote = grade_batch(make_job(aid, config, jobs=2), discover([SUBMISSIONS / aid]), out, progress=False,
                             engine=engine)
    assert sorted(r.submission for r in remote) == sorted(local)
    for result in remote:
        ours, theirs = result.to_json(), dict(local[result.submission])
        ours.pop("seconds"), theirs.pop("seconds")
        assert ours == theirs, result.submission
    answers = sorted(p.name for p in (local_out / "answers").glob("*.json"))
    assert answers == sorted(p.name for p in (out / "answers").glob("*.json"))
    for name in answers:
        assert (out / "answers" / name).read_text() == (local_out / "answers" / name).read_text(), name
    assert (out / "grades.csv").read_text() == (local_out / "grades.csv").read_text()
