"""Hand-graded points: one CSV per question in `OUT/manual/<question>.csv`, merged into the results.

A sheet has the columns `submission,points,comment`, one row per submission. `submission` is the
submission's anonymous code (what the grading page and the template show) or its name in
grades.csv. Blank points leave the question open ("still to grade"). The sheets are the only
record of hand-graded points: `grade` (also with `--force` and `--reuse`) and `report` merge them
into every result they write, so regrading the auto-graded part never drops them.

A sheet is refused, with its file and row named, when it is not such a CSV, names a question that
is not hand-graded or a submission that is not in the folder, gives points outside 0..maximum, or
grades one submission twice.
"""
from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .config import Assignment
from .results import QuestionResult, ResultFileError, ResultStore, SubmissionResult, atomic_write, student_of

HEADER = ["submission", "points", "comment"]
FOLDER = "manual"


class ManualGradesError(ValueError):
    """A manual CSV cannot be used; the message names the file, the row and what to fix."""


@dataclass(frozen=True)
class HandGrade:
    points: float | None  # None: not graded yet
    comment: str = ""


def code_for(aid: str, submission: str) -> str:
    """A submission's anonymous code: stable for the same assignment and submission name.

    It hides names from a grader reading answers; it is not a secret (anyone who knows the names can
    compute it).
    """
    digest = hashlib.sha256(f"{aid}\0{submission}".encode()).digest()
    return "S" + base64.b32encode(digest).decode("ascii")[:7]


class ManualSheets:
    """The manual CSVs of one assignment in one results folder, read and checked."""

    def __init__(self, folder: Path, aid: str, assignment: Assignment, grades: dict[str, dict[str, HandGrade]],
                 rows: dict[str, dict[str, int]]):
        self.folder, self.aid, self.assignment = folder, aid, assignment
        self.grades = grades  # {qid: {submission code or name as written: HandGrade}}
        self._rows = rows     # {qid: {key: CSV line number}} for error messages

    @classmethod
    def load(cls, out: Path, aid: str, assignment: Assignment) -> "ManualSheets":
        """Read `out/manual/*.csv`; raise ManualGradesError on the first problem found."""
        folder = Path(out) / FOLDER
        manual = assignment.manual_questions
        grades, rows = {}, {}
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            qid = path.stem
            if qid not in assignment.questions:
                raise ManualGradesError(f"{path}: {aid} has no question {qid!r}; name the file after a hand-graded "
                                        f"question ({', '.join(manual) or 'there are none'}) or move it away")
            if qid not in manual:
                raise ManualGradesError(f"{path}: {qid} is graded automatically, not by hand; only "
                                        f"{', '.join(manual) or 'no question'} may have a manual CSV")
            grades[qid], rows[qid] = _read_sheet(path, assignment.questions[qid].points)
        return cls(folder, aid, assignment, grades, rows)

    def check_known(self, submissions: list[str]) -> None:
        """Every row must name a submission of the folder (by code or by name)."""
        known = set(submissions) | {code_for(self.aid, name) for name in submissions}
        for qid, sheet in self.grades.items():
            for key in sheet:
                if key not in known:
                    raise ManualGradesError(
                        f"{self.folder / (qid + '.csv')}, line {self._rows[qid][key]}: no submission {key!r} "
                        f"was graded into {self.folder.parent}; use the codes of the template that "
                        f"`python -m autograder manual {self.aid}` writes, or delete the row")

    def grade_for(self, qid: str, submission: str) -> HandGrade | None:
        sheet = self.grades.get(qid, {})
        return sheet.get(code_for(self.aid, submission)) or sheet.get(submission)

    def apply(self, result: SubmissionResult) -> SubmissionResult:
        """The result with its hand-graded questions as the sheets say (open when they say nothing)."""
        questions = dict(result.questions)
        for qid in self.assignment.manual_questions:
            grade = self.grade_for(qid, result.submission)
            question = self.assignment.questions[qid]
            questions[qid] = QuestionResult.by_hand(question, grade.points if grade else None,
                                                    grade.comment if grade else "")
        # In grading.yml's order (a result read back from JSON has its questions sorted by name).
        order = [q for q in self.assignment.questions if q in questions]
        merged = result.with_questions({q: questions[q] for q in [*order, *(q for q in questions if q not in order)]})
        return result if merged == result else merged

    def write_templates(self, submissions: list[str]) -> list[Path]:
        """Create each question's CSV, or append rows for submissions it lacks; existing rows are kept."""
        self.folder.mkdir(parents=True, exist_ok=True)
        written = []
        for qid in self.assignment.manual_questions:
            path = self.folder / f"{qid}.csv"
            missing = [code_for(self.aid, name) for name in sorted(submissions, key=lambda n: code_for(self.aid, n))
                       if self.grade_for(qid, name) is None]
            if path.exists() and not missing:
                continue
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            if not path.exists():
                writer.writerow(HEADER)
            writer.writerows([code, "", ""] for code in missing)
            text = buffer.getvalue()
            if path.exists():
                existing = path.read_text(encoding="utf-8-sig")
                text = existing + ("" if existing.endswith("\n") or not existing else "\n") + text
            atomic_write(path, text)  # replaced whole, never half-written
            written.append(path)
        return written


def _read_sheet(path: Path, maximum: float) -> tuple[dict[str, HandGrade], dict[str, int]]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet may add a byte-order mark
    except (OSError, UnicodeDecodeError) as exc:
        raise ManualGradesError(f"{path}: cannot be read as UTF-8 text ({exc}); save it as CSV (UTF-8)") from None
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or [h.strip().lower() for h in header] != HEADER:
        raise ManualGradesError(f"{path}, line 1: the header must be {','.join(HEADER)} (found "
                                f"{','.join(header or []) or 'nothing'})")
    grades, lines = {}, {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(HEADER):
            raise ManualGradesError(f"{path}, line {line}: expected 3 columns (submission, points, comment), "
                                    f"found {len(row)}; quote a comment that holds commas")
        key, points_text, comment = row[0].strip(), row[1].strip(), row[2].strip()
        if key in grades:
            raise ManualGradesError(f"{path}, line {line}: {key} is graded twice (also on line {lines[key]}); "
                                    "keep one row")
        grades[key], lines[key] = HandGrade(_points(path, line, points_text, maximum), comment), line
    return grades, lines


def _points(path: Path, line: int, text: str, maximum: float) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or value > maximum:
        raise ManualGradesError(f"{path}, line {line}: points {text!r} must be a number from 0 to {maximum:g} "
                                "(or blank while the answer is still to grade)")
    return value


def collect(out: Path, config) -> tuple[Path, list[SubmissionResult]]:
    """grades.csv of a folder rebuilt from every result in it (after `grade --shard`), sheets merged."""
    aids = {r.assignment for r in read_folder(out)}
    if len(aids) != 1:
        raise ManualGradesError(f"{out} holds results of {', '.join(sorted(aids))}: collect one assignment's "
                                "folder at a time (grade each into results/<id>)")
    return Path(out) / "grades.csv", merge_folder(out, config, always_csv=True)


def merge_folder(out: Path, config, always_csv: bool = False) -> list[SubmissionResult]:
    """Merge the manual CSVs into every result of a results folder and rewrite what changed.

    Rewrites the changed results' JSON and feedback, and grades.csv (always with `always_csv`);
    returns every result.
    """
    results = read_folder(out)
    by_assignment: dict[str, list[SubmissionResult]] = {}
    for result in results:
        by_assignment.setdefault(result.assignment, []).append(result)
    merged = []
    for aid, group in by_assignment.items():
        assignment = config.assignment(aid)
        sheets = ManualSheets.load(out, aid, assignment)
        sheets.check_known([r.submission for r in group])
        store = ResultStore(out, assignment, sheets)
        updated = [store.save(result) for result in group]
        if always_csv or updated != group or not (out / "grades.csv").exists():
            store.write_csv(updated)
        merged += updated
    return merged


@dataclass(frozen=True)
class Prepared:
    """What `prepare` wrote for one hand-graded question."""

    qid: str
    page: Path
    sheet: Path
    graded: int
    submissions: int


def prepare(out: Path, aid: str, config, show_names: bool = False) -> list[Prepared]:
    """Write each hand-graded question's grading page and CSV template into `out/manual/`.

    Reads the results and stored answers of `out` (a `grade --out` folder); existing rows of the
    CSVs are kept and prefill the pages.
    """
    from . import answers as answers_api
    from .config import REPO_ROOT
    from .manual_page import Entry, page

    assignment = config.assignment(aid)
    manual = assignment.manual_questions
    if not manual:
        raise ManualGradesError(f"{aid} has no hand-graded questions (none is `manual: true` in grading.yml)")
    results = sorted((r for r in read_folder(out) if r.assignment == aid), key=lambda r: code_for(aid, r.submission))
    if not results:
        raise FileNotFoundError(f"{out}: no results of {aid} here; grade with `python -m autograder grade {aid} "
                                f"SUBMISSIONS --out {out}` first")
    asked = answers_api.load_questions(REPO_ROOT / assignment.notebook, REPO_ROOT / "assignments" / aid /
                                       f"{aid}.ipynb", manual)
    names = [r.submission for r in results]
    sheets = ManualSheets.load(out, aid, assignment)
    sheets.check_known(names)
    sheets.write_templates(names)
    sheets = ManualSheets.load(out, aid, assignment)
    store = ResultStore(out, assignment)
    prepared = []
    for qid in manual:
        entries = []
        for result in results:
            stored = _stored_answers(store.answers_path_for(result.submission), result)
            grade = sheets.grade_for(qid, result.submission)
            code = code_for(aid, result.submission)
            shown = f"{code} ({student_of(result)})" if show_names else code
            entries.append(Entry(code, shown, stored.get(qid, {"missing": "no answer was stored"}),
                                 grade.points if grade else None, grade.comment if grade else ""))
        path = sheets.folder / f"{qid}.html"
        atomic_write(path, page(config.course.name, assignment.title, aid, asked[qid],
                                assignment.questions[qid].points, entries))
        graded = sum(entry.points is not None for entry in entries)
        prepared.append(Prepared(qid, path, sheets.folder / f"{qid}.csv", graded, len(entries)))
    return prepared


def _stored_answers(path: Path, result: SubmissionResult) -> dict:
    """The answers `grade` kept for the submission, or a reason per question why there are none."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            return data
    except (OSError, ValueError):
        pass
    why = (f"the submission could not be read: {result.message}" if result.status == "invalid" else
           "no answers were stored for this submission: regrade it with `grade --force` to show them here")
    return {qid: {"missing": why} for qid in result.questions}


def sheets_for_batch(out: Path, aid: str, assignment: Assignment, names: list[str]) -> ManualSheets:
    """The folder's sheets, checked against the batch's submissions and those already graded there."""
    sheets = ManualSheets.load(out, aid, assignment)
    if sheets.grades:
        stored = []
        for path in sorted((Path(out) / "results").glob("*.json")):
            try:
                stored.append(str(json.loads(path.read_text(encoding="utf-8"))["submission"]))
            except (OSError, ValueError, KeyError, TypeError):  # unreadable results are regraded anyway
                continue
        sheets.check_known([*names, *stored])
    return sheets


def read_folder(out: Path) -> list[SubmissionResult]:
    """Every result in `out/results/*.json`; a file that is not one raises ResultFileError naming it."""
    files = sorted((out / "results").glob("*.json")) if (out / "results").is_dir() else []
    if not files:
        raise FileNotFoundError(f"{out}: no results/*.json here; pass the --out folder of `grade`")
    results = []
    for path in files:
        try:
            results.append(SubmissionResult.from_json(json.loads(path.read_text(encoding="utf-8"))))
        except ValueError as exc:
            raise ResultFileError(f"{path}: {exc}; regrade it with `python -m autograder grade ... --force`, "
                                  "or move it out of the folder") from None
    return results
