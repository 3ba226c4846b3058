"""Per-submission result files (written atomically) and the grades CSV rebuilt from them."""
from __future__ import annotations

import csv
import io
import json
import os
import re
import tempfile
from pathlib import Path

from .config import Assignment, Question
from .submissions import Submission


class Status:
    OK = "ok"
    TIMEOUT = "timeout"
    ERROR = "error"
    INVALID = "invalid"


def question_row(question: Question, outcomes: list[dict], default_message: str) -> dict:
    """A question's score: its points when every check passed, else 0; manual ones stay open."""
    if question.manual:
        return {"points": None, "max_points": question.points, "manual": True, "checks": [],
                "feedback": "graded by hand"}
    passed = bool(outcomes) and all(o["passed"] for o in outcomes)
    failed = [o for o in outcomes if not o["passed"]]
    feedback = default_message or ("all checks passed" if passed else
                                   "; ".join(f"{o['description']}: {o['message']}" for o in failed))
    return {"points": question.points if passed else 0.0, "max_points": question.points,
            "manual": False, "checks": outcomes, "feedback": feedback}


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

    def write(self, submission: Submission, result: dict) -> None:
        """Write the result (and its probe data, if any) atomically; `_probes` goes to its own file."""
        probes = result.pop("_probes", None)
        if probes is not None:
            atomic_write(self.probes_path_for(submission), json.dumps(probes, separators=(",", ":")))
        atomic_write(self.path_for(submission), json.dumps(result, indent=1, sort_keys=True) + "\n")
        atomic_write(self.out / "feedback" / f"{safe_name(submission.name)}.md", feedback_markdown(result))

    def stored(self, submission: Submission) -> tuple[dict, dict] | None:
        """The previous result and probe data of these exact bytes, or None."""
        try:
            previous = json.loads(self.path_for(submission).read_text(encoding="utf-8"))
            probes = json.loads(self.probes_path_for(submission).read_text(encoding="utf-8"))
            from .submissions import read_notebook

            notebook, sha = read_notebook(submission.path, 2**31)
        except Exception:  # noqa: BLE001 - anything missing or unreadable means: execute again
            return None
        if previous.get("sha256") != sha or previous.get("status") == Status.INVALID:
            return None
        previous["_cells"] = [c["source"] for c in notebook["cells"] if c["cell_type"] == "code"]
        return previous, probes

    def reusable(self, submission: Submission, fingerprint: str) -> dict | None:
        """The stored result, if the same bytes were graded by the same grader and config."""
        path = self.path_for(submission)
        if not path.exists():
            return None
        try:
            previous = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return None
        from .submissions import read_notebook  # local: only needed when resuming

        try:
            _, sha = read_notebook(submission.path, 2**31)
        except Exception:  # noqa: BLE001 - invalid files are simply regraded
            return None
        if previous.get("fingerprint") == fingerprint and previous.get("sha256") == sha:
            return previous
        return None

    def write_csv(self, results: list[dict]) -> Path:
        qids = list(self.assignment.questions)
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["submission", *qids, "total", "max_total", "status", "message", "student", "student_id"])
        for result in sorted(results, key=lambda r: r["submission"]):
            rows = result.get("questions", {})
            points = [_fmt(rows.get(q, {}).get("points")) for q in qids]
            student = result.get("student") or {}
            writer.writerow([result["submission"], *points, _fmt(result["total"]), _fmt(result["max_total"]),
                             result["status"], result.get("message", ""), student.get("name", ""),
                             student.get("canvas_id") or student.get("sis_id", "")])
        path = self.out / "grades.csv"
        atomic_write(path, buffer.getvalue())
        return path


def _fmt(value) -> str:
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def feedback_markdown(result: dict) -> str:
    """The student's feedback: points per question, each check's outcome and what to try next.

    Check messages are written never to reveal expected values; hidden checks' code is not shown.
    """
    rows = result.get("questions", {})
    manual = sum(r["max_points"] for r in rows.values() if r["manual"])
    lines = [f"# {result['assignment']}: feedback for {result['submission']}", "",
             f"**Score: {result['total']:g} / {result['max_total']:g}** (auto-graded"
             + (f"; {manual:g} more point(s) are graded by hand)" if manual else ")"), ""]
    if result["status"] != Status.OK:
        lines += [f"**Grading stopped early ({result['status']}):** {result['message']}", ""]
    lines += ["| question | points | |", "| --- | --- | --- |"]
    for qid, row in rows.items():
        if row["manual"]:
            lines.append(f"| {qid} | / {row['max_points']:g} | graded by hand |")
        else:
            ok = row["points"] == row["max_points"]
            lines.append(f"| {qid} | {row['points']:g} / {row['max_points']:g} | {'all checks passed' if ok else 'see below'} |")
    for qid, row in rows.items():
        failed = [c for c in row.get("checks", []) if not c["passed"]]
        if not failed:
            continue
        lines += ["", f"## {qid}", ""]
        for check in row["checks"]:
            mark = "passed" if check["passed"] else "failed"
            lines.append(f"- {check['description']}: **{mark}**" + ("" if check["passed"] else f". {check['message']}"))
            if not check["passed"] and check.get("hint"):
                lines.append(f"  - What to try: {check['hint']}")
    if result.get("notes"):
        lines += ["", "## Notes", "", *[f"- {note}" for note in result["notes"]]]
    if result.get("cell_errors"):
        lines += ["", "## Errors in your cells", "", *[f"- {error}" for error in result["cell_errors"][:10]]]
    return "\n".join(lines) + "\n"
