"""A submission's grade as typed values, its result files (written atomically) and the grades CSV.

`SubmissionResult` (with its `QuestionResult`s and `CheckOutcome`s) is the one schema: the grader
builds it, `to_json` writes `results/<name>.json`, `from_json` reads it back for reports, the CSVs,
Gradescope's results.json and the feedback.

A result's `max_total` is every point of the assignment, hand-graded ones included; its `total` is
what was awarded so far. A hand-graded question stays open (`points` None) until a manual CSV
(`manual.py`) gives it points, so a fresh result's total is the auto-graded part.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from .config import Assignment, Question
from .submissions import Submission


class ResultFileError(ValueError):
    """A results file cannot be read as this grader's result; the message names it."""


class Status(StrEnum):
    """How a submission's grading ended; every report, CSV and feedback reads it from here."""

    OK = "ok"            # every cell ran (cell errors are the student's, and cost their questions)
    TIMEOUT = "timeout"  # a cell or the notebook ran past its limit; questions probed before it count
    ERROR = "error"      # the student's process died (os._exit, a segfault, the memory cap)
    INVALID = "invalid"  # the file could not be read as this assignment's notebook
    # The grader failed (its sandbox did not start, a bug): not the student's doing. Such a result
    # is never stored as a grade: grades.csv lists it with no points, and the next run retries it.
    GRADER_ERROR = "grader-error"


@dataclass(frozen=True)
class CheckOutcome:
    """One hidden check's outcome; `message` and `hint` are shown to the student."""

    description: str
    passed: bool
    message: str = ""
    hint: str | None = None

    def to_json(self) -> dict:
        data = {"description": self.description, "passed": self.passed, "message": self.message}
        if self.hint:
            data["hint"] = self.hint
        return data

    @classmethod
    def from_json(cls, data: dict) -> "CheckOutcome":
        return cls(str(data["description"]), bool(data["passed"]), str(data.get("message", "")), data.get("hint"))


@dataclass(frozen=True)
class QuestionResult:
    """A question's points: all of them when every check passed, else 0.

    A hand-graded (`manual`) question has no checks: its points are None until a grader gives them,
    and its `feedback` is then the grader's comment.
    """

    points: float | None
    max_points: float
    manual: bool = False
    checks: tuple[CheckOutcome, ...] = ()
    feedback: str = ""
    scoring: str = "all"  # "all": every check must pass; "partial": each passed check earns its share

    @classmethod
    def scored(cls, question: Question, outcomes: list[CheckOutcome], default_message: str = "") -> "QuestionResult":
        if question.manual:
            return cls.by_hand(question, None)
        passed = bool(outcomes) and all(o.passed for o in outcomes)
        feedback = default_message or ("all checks passed" if passed else
                                       "; ".join(f"{o.description}: {o.message}" for o in outcomes if not o.passed))
        if question.scoring == "partial" and outcomes:
            weights = question.weights or [1.0] * len(outcomes)
            share = sum(w for w, o in zip(weights, outcomes) if o.passed) / sum(weights)
            return cls(round(question.points * share, 4), question.points, False, tuple(outcomes), feedback, "partial")
        return cls(question.points if passed else 0.0, question.points, False, tuple(outcomes), feedback)

    @classmethod
    def by_hand(cls, question: Question, points: float | None, comment: str = "") -> "QuestionResult":
        """A hand-graded question: open (None) or given `points` with the grader's comment."""
        return cls(points, question.points, manual=True, feedback=comment if points is not None else "graded by hand")

    @property
    def full(self) -> bool:
        return not self.manual and self.points == self.max_points

    @property
    def open(self) -> bool:
        """A hand-graded question no grader has given points yet."""
        return self.manual and self.points is None

    @property
    def scoring_note(self) -> str:
        """How the question's points were decided, in the student's terms."""
        passed = sum(c.passed for c in self.checks)
        if self.scoring == "partial":
            return (f"Partial credit: each passed check earns its share of the points; {passed} of "
                    f"{len(self.checks)} passed, {self.points or 0:g} of {self.max_points:g} point(s).")
        return (f"All or nothing: the {self.max_points:g} point(s) need every check to pass; {passed} of "
                f"{len(self.checks)} passed.")

    def to_json(self) -> dict:
        data = {"points": self.points, "max_points": self.max_points, "manual": self.manual,
                "checks": [c.to_json() for c in self.checks], "feedback": self.feedback}
        if self.scoring != "all":
            data["scoring"] = self.scoring
        return data

    @classmethod
    def from_json(cls, data: dict) -> "QuestionResult":
        return cls(data.get("points"), float(data["max_points"]), bool(data.get("manual", False)),
                   tuple(CheckOutcome.from_json(c) for c in data.get("checks", [])), str(data.get("feedback", "")),
                   str(data.get("scoring", "all")))


@dataclass(frozen=True)
class SubmissionResult:
    """A submission's grade: what `results/<name>.json` holds, and what reports and exports read.

    The stored probe data (for `grade --reuse`) travels beside it, never inside it.
    """

    submission: str
    assignment: str
    status: Status
    total: float
    max_total: float
    questions: dict[str, QuestionResult] = field(default_factory=dict)
    message: str = ""
    notes: tuple[str, ...] = ()
    cell_errors: tuple[str, ...] = ()
    fingerprint: str = ""
    sandbox: tuple[str, ...] = ()
    seconds: float = 0.0
    sha256: str | None = None
    student: dict | None = None
    probe_signatures: dict[str, str] = field(default_factory=dict)
    reused_probes: bool = False
    device: str | None = None  # "cpu" or "cuda:<index>": where the notebook ran (None: nothing ran)

    @classmethod
    def totalled(cls, questions: dict[str, QuestionResult], max_total: float, **fields) -> "SubmissionResult":
        """The result with its total summed from `questions`."""
        return cls(total=_awarded(questions), max_total=max_total, questions=questions, **fields)

    def with_questions(self, questions: dict[str, QuestionResult]) -> "SubmissionResult":
        """The same result with `questions` replaced and the total summed again."""
        return dataclasses.replace(self, questions=questions, total=_awarded(questions))

    @property
    def auto_complete(self) -> bool:
        """Every auto-graded question earned all its points (hand-graded ones aside)."""
        return all(row.full for row in self.questions.values() if not row.manual)

    @property
    def still_to_grade(self) -> list[str]:
        """The hand-graded questions that are still open."""
        return [qid for qid, row in self.questions.items() if row.open]

    def to_json(self) -> dict:
        data = {"submission": self.submission, "assignment": self.assignment, "status": str(self.status),
                "total": self.total, "max_total": self.max_total, "message": self.message,
                "questions": {q: row.to_json() for q, row in self.questions.items()},
                "notes": list(self.notes), "cell_errors": list(self.cell_errors), "fingerprint": self.fingerprint,
                "sandbox": list(self.sandbox), "seconds": self.seconds, "probe_signatures": self.probe_signatures}
        for key in ("sha256", "student", "device"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.reused_probes:
            data["reused_probes"] = True
        return data

    @classmethod
    def from_json(cls, data: dict) -> "SubmissionResult":
        """Read a stored result; a file that does not follow this layout raises ValueError."""
        try:
            return cls(
                submission=str(data["submission"]), assignment=str(data["assignment"]), status=Status(data["status"]),
                total=float(data["total"]), max_total=float(data["max_total"]),
                questions={q: QuestionResult.from_json(row) for q, row in data.get("questions", {}).items()},
                message=str(data.get("message", "")), notes=tuple(data.get("notes", [])),
                cell_errors=tuple(data.get("cell_errors", [])), fingerprint=str(data.get("fingerprint", "")),
                sandbox=tuple(data.get("sandbox", [])), seconds=float(data.get("seconds", 0.0)),
                sha256=data.get("sha256"), student=data.get("student"),
                probe_signatures=dict(data.get("probe_signatures", {})),
                reused_probes=bool(data.get("reused_probes", False)), device=data.get("device"))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a result file of this grader ({type(exc).__name__}: {exc})") from None


def student_of(result: SubmissionResult) -> str:
    """The student's name from the LMS download, else the submission's file name."""
    return (result.student or {}).get("name") or result.submission


def _awarded(questions: dict[str, QuestionResult]) -> float:
    """Points awarded so far: open hand-graded questions count 0."""
    return round(sum(q.points or 0 for q in questions.values()), 4)


def atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file and rename, so an interrupted run never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name.replace("/", "__")).strip("._") or "submission"


class ResultStore:
    """`OUT/results/<submission>.json` per submission and `OUT/grades.csv` for the batch.

    Beside them: `feedback/<submission>.md` for the student, `probes/` (for `grade --reuse`) and
    `answers/` (the hand-graded answers, for `manual`). With `sheets` (a `manual.ManualSheets`), every
    result is written with its hand-graded points merged in.
    """

    def __init__(self, out: Path, assignment: Assignment, sheets=None):
        self.out = Path(out)
        self.assignment = assignment
        self.sheets = sheets
        (self.out / "results").mkdir(parents=True, exist_ok=True)

    def path_for(self, name: str) -> Path:
        """The result file of the submission named `name`."""
        return self.out / "results" / f"{safe_name(name)}.json"

    def probes_path_for(self, submission: Submission) -> Path:
        return self.out / "probes" / f"{safe_name(submission.name)}.json"

    def answers_path_for(self, name: str) -> Path:
        return self.out / "answers" / f"{safe_name(name)}.json"

    def write(self, submission: Submission, result: SubmissionResult, probes: dict | None = None,
              answers: dict | None = None) -> SubmissionResult:
        """Write the result (hand-graded points merged), its feedback, probe data and answers, each atomically."""
        if probes is not None:
            atomic_write(self.probes_path_for(submission), json.dumps(probes, separators=(",", ":")))
        if answers is not None:
            atomic_write(self.answers_path_for(submission.name), json.dumps(answers, separators=(",", ":")))
        return self.save(result, always=True)

    def save(self, result: SubmissionResult, always: bool = False) -> SubmissionResult:
        """Merge the hand-graded points and write the result and its feedback if they changed (or `always`)."""
        merged = self.sheets.apply(result) if self.sheets is not None else result
        if always or merged != result:
            text = json.dumps(merged.to_json(), indent=1, sort_keys=True) + "\n"
            atomic_write(self.path_for(result.submission), text)
            atomic_write(self.out / "feedback" / f"{safe_name(result.submission)}.md", feedback_markdown(merged))
        return merged

    def _previous(self, submission: Submission) -> SubmissionResult | None:
        try:
            return SubmissionResult.from_json(json.loads(self.path_for(submission.name).read_text(encoding="utf-8")))
        except (OSError, ValueError):  # missing, unreadable or from another grader: grade again
            return None

    def stored(self, submission: Submission) -> tuple[SubmissionResult, dict, list[str]] | None:
        """The previous result, probe data and code cells of these exact bytes, or None."""
        from .submissions import read_notebook  # local: only needed when regrading

        previous = self._previous(submission)
        try:
            probes = json.loads(self.probes_path_for(submission).read_text(encoding="utf-8"))
            notebook, sha = read_notebook(submission.path, 2**31)
        except Exception:  # noqa: BLE001 - anything missing or unreadable means: execute again
            return None
        if previous is None or previous.sha256 != sha or previous.status == Status.INVALID:
            return None
        return previous, probes, [c["source"] for c in notebook["cells"] if c["cell_type"] == "code"]

    def reusable(self, submission: Submission, fingerprint: str) -> SubmissionResult | None:
        """The stored result, if the same bytes were graded by the same grader and config."""
        from .submissions import read_notebook  # local: only needed when resuming

        previous = self._previous(submission)
        if previous is None or previous.fingerprint != fingerprint:
            return None
        try:
            _, sha = read_notebook(submission.path, 2**31)
        except Exception:  # noqa: BLE001 - invalid files are simply regraded
            return None
        return previous if previous.sha256 == sha else None

    def write_csv(self, results: list[SubmissionResult]) -> Path:
        qids = list(self.assignment.questions)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["submission", *qids, "total", "max_total", "to_grade", "status", "message", "student",
                         "student_id", "late"])
        for result in sorted(results, key=lambda r: r.submission):
            graded = result.status != Status.GRADER_ERROR  # a grader fault is no grade, not a zero
            points = [_fmt(result.questions[q].points if graded and q in result.questions else None) for q in qids]
            student = result.student or {}
            writer.writerow([result.submission, *points, _fmt(result.total if graded else None),
                             _fmt(result.max_total), " ".join(result.still_to_grade), result.status, result.message,
                             student.get("name", ""), student.get("canvas_id") or student.get("sis_id", ""),
                             "late" if student.get("late") else ""])
        path = self.out / "grades.csv"
        atomic_write(path, buffer.getvalue())
        return path


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def feedback_markdown(result: SubmissionResult) -> str:
    """The student's feedback: points per question, each check's outcome and what to try next.

    Check messages are written never to reveal expected values; hidden checks' code is not shown.
    """
    if result.status == Status.INVALID:  # nothing ran: say what to resubmit, not an empty table
        return (f"# {result.assignment}: feedback for {result.submission}\n\n"
                f"**This file could not be graded:** {result.message}\n\n"
                f"Submit the notebook of this assignment ({result.assignment}.ipynb), or the zip that "
                "`grader.export()` makes from it, and it will be graded.\n")
    rows = result.questions
    open_points = sum(rows[q].max_points for q in result.still_to_grade)
    lines = [f"# {result.assignment}: feedback for {result.submission}", "",
             f"**Score: {result.total:g} / {result.max_total:g}**"
             + (f" ({open_points:g} point(s) are still to be graded by hand)" if open_points else ""), ""]
    if result.status != Status.OK:
        lines += [f"**Grading stopped early ({result.status}):** {result.message}", ""]
    lines += ["| question | points | |", "| --- | --- | --- |"]
    for qid, row in rows.items():
        if row.open:
            lines.append(f"| {qid} | - / {row.max_points:g} | to be graded by hand |")
        elif row.manual:
            lines.append(f"| {qid} | {row.points:g} / {row.max_points:g} | graded by hand |")
        else:
            lines.append(f"| {qid} | {row.points:g} / {row.max_points:g} | "
                         f"{'all checks passed' if row.full else 'see below'} |")
    for qid, row in rows.items():
        if row.manual and not row.open and row.feedback:
            lines += ["", f"## {qid} (graded by hand)", "", row.feedback]
    for qid, row in rows.items():
        if all(check.passed for check in row.checks):
            continue
        lines += ["", f"## {qid}", "", row.scoring_note, ""]
        for check in row.checks:
            mark = "passed" if check.passed else "failed"
            lines.append(f"- {check.description}: **{mark}**" + ("" if check.passed else f". {check.message}"))
            if not check.passed and check.hint:
                lines.append(f"  - What to try: {check.hint}")
    if result.notes:
        lines += ["", "## Notes", "", *[f"- {note}" for note in result.notes]]
    if result.cell_errors:
        lines += ["", "## Errors in your cells", "", *[f"- {error}" for error in result.cell_errors[:10]]]
    return "\n".join(lines) + "\n"
