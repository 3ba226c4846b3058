"""A submission's grade as typed values, its result files (written atomically) and the grades CSV.

`SubmissionResult` (with its `QuestionResult`s and `CheckOutcome`s) is the one schema: the grader
builds it, `to_json` writes `results/<name>.json`, `from_json` reads it back for reports, the CSVs,
Gradescope's results.json and the feedback.
"""
from __future__ import annotations

import csv
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
    ERROR = "error"      # the student's process died, or the grader failed (then the message says so)
    INVALID = "invalid"  # the file could not be read as this assignment's notebook


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
    """A question's points: all of them when every check passed, else 0; manual ones stay open."""

    points: float | None
    max_points: float
    manual: bool = False
    checks: tuple[CheckOutcome, ...] = ()
    feedback: str = ""

    @classmethod
    def scored(cls, question: Question, outcomes: list[CheckOutcome], default_message: str = "") -> "QuestionResult":
        if question.manual:
            return cls(None, question.points, manual=True, feedback="graded by hand")
        passed = bool(outcomes) and all(o.passed for o in outcomes)
        feedback = default_message or ("all checks passed" if passed else
                                       "; ".join(f"{o.description}: {o.message}" for o in outcomes if not o.passed))
        return cls(question.points if passed else 0.0, question.points, False, tuple(outcomes), feedback)

    @property
    def full(self) -> bool:
        return not self.manual and self.points == self.max_points

    def to_json(self) -> dict:
        return {"points": self.points, "max_points": self.max_points, "manual": self.manual,
                "checks": [c.to_json() for c in self.checks], "feedback": self.feedback}

    @classmethod
    def from_json(cls, data: dict) -> "QuestionResult":
        return cls(data.get("points"), float(data["max_points"]), bool(data.get("manual", False)),
                   tuple(CheckOutcome.from_json(c) for c in data.get("checks", [])), str(data.get("feedback", "")))


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

    @classmethod
    def totalled(cls, questions: dict[str, QuestionResult], max_total: float, **fields) -> "SubmissionResult":
        """The result with its total summed from `questions`."""
        total = round(sum(q.points or 0 for q in questions.values()), 4)
        return cls(total=total, max_total=max_total, questions=questions, **fields)

    def to_json(self) -> dict:
        data = {"submission": self.submission, "assignment": self.assignment, "status": str(self.status),
                "total": self.total, "max_total": self.max_total, "message": self.message,
                "questions": {q: row.to_json() for q, row in self.questions.items()},
                "notes": list(self.notes), "cell_errors": list(self.cell_errors), "fingerprint": self.fingerprint,
                "sandbox": list(self.sandbox), "seconds": self.seconds, "probe_signatures": self.probe_signatures}
        for key in ("sha256", "student"):
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
                reused_probes=bool(data.get("reused_probes", False)))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"not a result file of this grader ({type(exc).__name__}: {exc})") from None


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
    """`OUT/results/<submission>.json` per submission and `OUT/grades.csv` for the batch."""

    def __init__(self, out: Path, assignment: Assignment):
        self.out = Path(out)
        self.assignment = assignment
        (self.out / "results").mkdir(parents=True, exist_ok=True)

    def path_for(self, submission: Submission) -> Path:
        return self.out / "results" / f"{safe_name(submission.name)}.json"

    def probes_path_for(self, submission: Submission) -> Path:
        return self.out / "probes" / f"{safe_name(submission.name)}.json"

    def write(self, submission: Submission, result: SubmissionResult, probes: dict | None = None) -> None:
        """Write the result, its feedback and its probe data (if any), each atomically."""
        if probes is not None:
            atomic_write(self.probes_path_for(submission), json.dumps(probes, separators=(",", ":")))
        atomic_write(self.path_for(submission), json.dumps(result.to_json(), indent=1, sort_keys=True) + "\n")
        atomic_write(self.out / "feedback" / f"{safe_name(submission.name)}.md", feedback_markdown(result))

    def _previous(self, submission: Submission) -> SubmissionResult | None:
        try:
            return SubmissionResult.from_json(json.loads(self.path_for(submission).read_text(encoding="utf-8")))
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
        writer.writerow(["submission", *qids, "total", "max_total", "status", "message", "student", "student_id"])
        for result in sorted(results, key=lambda r: r.submission):
            points = [_fmt(result.questions[q].points if q in result.questions else None) for q in qids]
            student = result.student or {}
            writer.writerow([result.submission, *points, _fmt(result.total), _fmt(result.max_total),
                             result.status, result.message, student.get("name", ""),
                             student.get("canvas_id") or student.get("sis_id", "")])
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
    rows = result.questions
    manual = sum(r.max_points for r in rows.values() if r.manual)
    lines = [f"# {result.assignment}: feedback for {result.submission}", "",
             f"**Score: {result.total:g} / {result.max_total:g}** (auto-graded"
             + (f"; {manual:g} more point(s) are graded by hand)" if manual else ")"), ""]
    if result.status != Status.OK:
        lines += [f"**Grading stopped early ({result.status}):** {result.message}", ""]
    lines += ["| question | points | |", "| --- | --- | --- |"]
    for qid, row in rows.items():
        if row.manual:
            lines.append(f"| {qid} | / {row.max_points:g} | graded by hand |")
        else:
            lines.append(f"| {qid} | {row.points:g} / {row.max_points:g} | "
                         f"{'all checks passed' if row.full else 'see below'} |")
    for qid, row in rows.items():
        if all(check.passed for check in row.checks):
            continue
        lines += ["", f"## {qid}", ""]
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
