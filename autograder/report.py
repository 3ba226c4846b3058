"""`report`: one self-contained HTML page (plots embedded as PNG data) and CSV exports.

Per assignment: score histogram with mean/median/quartiles, per-question mean and pass rate
(hardest first), a student x question heatmap whose cells link to each student's feedback file,
each question's most frequent failing checks, the hand-graded questions (graded so far, mean, who
is still to grade), status counts with the affected submissions, the invalid submissions apart
with their messages, grading-time distribution. Questions are shown with their titles, read from
the released student notebook (`question_titles`). Totals include the hand-graded points of each
folder's manual CSVs, merged by `load_results`.

`invalid` submissions (not a notebook of the assignment) are left out of every statistic (means,
quartiles, histograms, pass rates, failing checks) and exported blank, never as 0: a blank cell
leaves Canvas's grade as it is.

Across assignments: a gradebook (students x assignments). Exports: gradebook.csv,
canvas_gradebook.csv (Canvas's import layout: Student, ID, SIS User ID, SIS Login ID, Section,
one column per assignment, and a "Points Possible" row), item_analysis.csv, and per assignment
lost_<aid>.csv (one row per student and question that did not get full points, with why).
A column is headed `Title (canvas_id)` when grading.yml gives the assignment's Canvas id, so the
import updates that Canvas column; without it, `Title (aid)`, and Canvas adds a new column.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import json
import os
import re
import statistics
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import quote

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .config import REPO_ROOT, GradingConfig  # noqa: E402
from .manual import merge_folder  # noqa: E402
from .results import QuestionResult, Status, SubmissionResult, atomic_write, safe_name, student_of  # noqa: E402

TITLE_CHARS = 60
TOP_FAILURES = 3  # failing checks listed per question
TO_GRADE = "to grade by hand"
# The bold lead of a question's prompt in the student notebook, e.g.
# "**Question 10.2 (1 point, graded by hand).** From your table: ..."
QUESTION_HEADING = re.compile(r"^\*\*Question (?P<number>\d+(?:\.\d+)*) \([^)]*\)\.?\*\*\.?\s*(?P<text>.*)", re.S)
OTTER_MARK = re.compile(r"<!--.*?-->", re.S)
# Results that are no grade: the file is not a notebook of the assignment (invalid), or the grader
# itself failed (grader-error). They stay out of every statistic, are listed apart, and export blank.
NOT_GRADED = frozenset(status for status in Status if status.value in ("invalid", "grader-error"))


class LoadedResults(list):
    """The results of several folders, remembering which folder each came from (for feedback links)."""

    def __init__(self, pairs: list[tuple[Path, SubmissionResult]] = ()):
        super().__init__(result for _, result in pairs)
        self.folders = {(r.assignment, r.submission): Path(folder) for folder, r in pairs}

    def folder_of(self, result: SubmissionResult) -> Path | None:
        return self.folders.get((result.assignment, result.submission))


def load_results(dirs: list[Path], config: GradingConfig) -> LoadedResults:
    """Every result under the given results folders, with the folders' manual CSVs merged in.

    Merging rewrites what it changes in each folder (result JSON, feedback, grades.csv), so the
    folder always agrees with the report. The list remembers each result's folder, so the report
    can link to its feedback file.
    """
    return LoadedResults([(Path(folder), result) for folder in dirs for result in merge_folder(Path(folder), config)])


def question_titles(aid: str, notebook: Path | None = None) -> dict[str, str]:
    """{question id: short title} from the released student notebook `assignments/<aid>/<aid>.ipynb`.

    A question's prompt is the markdown cell starting "**Question N (...).**"; its title is the first
    sentence after that bold lead, trimmed to about TITLE_CHARS characters. qN maps to "Question N"
    and q10_2 to "Question 10.2". A missing or unreadable notebook gives {} (callers fall back to ids).
    """
    path = notebook or REPO_ROOT / "assignments" / aid / f"{aid}.ipynb"
    try:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError, TypeError):  # no release built yet: ids are still usable
        return {}
    titles = {}
    for cell in cells:
        if not isinstance(cell, dict) or cell.get("cell_type") != "markdown":
            continue
        source = cell.get("source", "")
        text = OTTER_MARK.sub("", "".join(source) if isinstance(source, list) else str(source)).strip()
        match = QUESTION_HEADING.match(text)
        if match:
            titles.setdefault("q" + match["number"].replace(".", "_"), _short_title(match["text"]))
    return titles


def _short_title(text: str) -> str:
    """The first sentence of a prompt as plain text, trimmed to about TITLE_CHARS characters."""
    unlisted = re.sub(r"(?m)^\s*[-*]\s+", "", text)  # "Write\n\n- `f()`, which ..." reads "Write f(), which ..."
    plain = " ".join(re.sub(r"[`*]", "", unlisted).split())
    sentence = re.match(r"(.+?)[.!?:](?=\s|$)", plain)
    title = sentence.group(1) if sentence else plain
    return title if len(title) <= TITLE_CHARS else title[:TITLE_CHARS - 1].rstrip(" ,;") + "\u2026"


def _label(qid: str, titles: dict[str, str]) -> str:
    """"q1: Convert the arrays" (or the id alone without a title)."""
    return f"{qid}: {titles[qid]}" if titles.get(qid) else qid


def _valid(group: list[SubmissionResult]) -> list[SubmissionResult]:
    """The results that count in statistics: every one that is a grade (see NOT_GRADED)."""
    return [r for r in group if r.status not in NOT_GRADED]


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def score_histogram(totals: list[float], max_total: float, title: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.hist(totals, bins=min(20, max(5, int(max_total) + 1)), range=(0, max_total), color="#4C72B0",
            edgecolor="white")
    q1, median, q3 = _quartiles(totals)
    mean = statistics.fmean(totals)
    for value, style, label in [(mean, "-", f"mean {mean:.1f}"), (median, "--", f"median {median:.1f}"),
                                (q1, ":", f"Q1 {q1:.1f}"), (q3, ":", f"Q3 {q3:.1f}")]:
        ax.axvline(value, color="#C44E52", linestyle=style, linewidth=1.5, label=label)
    ax.set_xlabel(f"total score (points, out of {max_total:g})")
    ax.set_ylabel("submissions")
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def question_chart(items: list[dict], title: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 0.45 * len(items) + 1.2))
    # "$" would start matplotlib's mathtext, and a title may quote TeX: show it as written.
    labels = [_label(item["question"], {item["question"]: item.get("title", "")}).replace("$", r"\$")
              for item in items]
    ax.barh(labels, [100 * item["pass_rate"] for item in items], color="#55A868")
    ax.invert_yaxis()  # hardest first, at the top
    ax.set_xlim(0, 100)
    ax.set_xlabel("submissions with full points (%)")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def time_histogram(seconds: list[float], title: str) -> str:
    fig, ax = plt.subplots(figsize=(6.4, 3.0))
    ax.hist(seconds, bins=15, color="#8172B2", edgecolor="white")
    ax.set_xlabel("grading time per submission (s)")
    ax.set_ylabel("submissions")
    ax.set_title(title)
    ax.spines[["top", "right"]].set_visible(False)
    return _png(fig)


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    if len(values) < 2:
        value = values[0] if values else 0.0
        return value, value, value
    q1, median, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return q1, median, q3


def item_analysis(results: list[SubmissionResult]) -> list[dict]:
    """Per auto-graded question: mean points and the share of submissions with full points.

    Invalid submissions are left out: they say nothing about how hard a question is.
    """
    by_question: dict[str, list] = defaultdict(list)
    for result in _valid(results):
        for qid, row in result.questions.items():
            if not row.manual:
                by_question[qid].append(row)
    items = []
    for qid, rows in by_question.items():
        maximum = rows[0].max_points
        points = [r.points or 0 for r in rows]
        items.append({"question": qid, "max_points": maximum, "n": len(rows),
                      "mean_points": statistics.fmean(points),
                      "pass_rate": sum(p == maximum for p in points) / len(rows)})
    return sorted(items, key=lambda item: (item["pass_rate"], item["question"]))


def why_lost(row: QuestionResult) -> list[str]:
    """Why a question did not get full points: its failing checks' messages, or "to grade by hand"."""
    if row.open:
        return [TO_GRADE]
    if row.manual:
        return [row.feedback or "graded by hand"]
    failing = [f"{c.description}: {c.message}" if c.message else c.description for c in row.checks if not c.passed]
    return failing or [row.feedback or "no points"]


def lost_rows(group: list[SubmissionResult], titles: dict[str, str]) -> list[list[str]]:
    """lost_<aid>.csv: one row per valid submission and question short of full points (open ones too)."""
    rows = []
    for result in sorted(_valid(group), key=lambda r: (student_of(r), r.submission)):
        for qid, row in result.questions.items():
            if row.open or (row.points or 0) < row.max_points:
                rows.append([student_of(result), result.submission, qid, titles.get(qid, ""), _fmt(row.points),
                             f"{row.max_points:g}", " | ".join(why_lost(row))])
    return rows


def feedback_link(folder: Path | None, result: SubmissionResult, out: Path) -> str | None:
    """The href from the report folder `out` to the result's feedback file, or None when there is none."""
    if folder is None:
        return None
    path = Path(folder) / "feedback" / f"{safe_name(result.submission)}.md"
    if not path.is_file():
        return None
    # Relative, so the report and the results folders can be moved or zipped together.
    return quote(Path(os.path.relpath(path, out)).as_posix())


def canvas_column(aid: str, assignment) -> str:
    """Canvas's gradebook header: `Title (canvas id)` updates that Canvas column; `Title (aid)` adds one."""
    return f"{assignment.title} ({assignment.canvas_id or aid})"


def build_report(config: GradingConfig, results: list[SubmissionResult], out: Path) -> Path:
    """Write report.html and the CSV exports into `out`; return the page's path.

    With `results` from `load_results`, heatmap cells link to each submission's feedback file.
    """
    out.mkdir(parents=True, exist_ok=True)
    by_assignment: dict[str, list[SubmissionResult]] = defaultdict(list)
    for result in results:
        by_assignment[result.assignment].append(result)
    order = [aid for aid in config.assignments if aid in by_assignment]
    folder_of = results.folder_of if isinstance(results, LoadedResults) else (lambda result: None)
    sections, item_rows = [], []
    for aid in order:
        group = by_assignment[aid]
        assignment = config.assignment(aid)
        titles = question_titles(aid)
        items = [{**item, "title": titles.get(item["question"], "")} for item in item_analysis(group)]
        item_rows += [{"assignment": aid, **item} for item in items]
        links = {r.submission: feedback_link(folder_of(r), r, out) for r in group}
        sections.append(_section(aid, assignment, group, items, titles, links))
        _write_csv(out / f"lost_{aid}.csv", ["student", "submission", "question", "title", "points", "max_points",
                                             "why"], lost_rows(group, titles))
    gradebook = _gradebook(by_assignment, order)
    _write_csvs(config, out, gradebook, order, item_rows)
    page = _page(config, sections, gradebook, order)
    path = out / "report.html"
    atomic_write(path, page)
    return path


def _section(aid, assignment, group, items, titles, links) -> str:
    valid = _valid(group)
    totals = [r.total for r in valid]
    max_total = assignment.points_possible
    rows = "".join(f"<tr><td>{html.escape(_label(i['question'], titles))}</td>"
                   f"<td>{i['mean_points']:.2f} / {i['max_points']:g}</td>"
                   f"<td>{100 * i['pass_rate']:.0f}%</td></tr>" for i in items)
    statuses = []
    for status in Status:
        affected = sorted(r.submission for r in group if r.status == status)
        # Ungraded ones are listed with their messages below.
        listed = "" if status == Status.OK or status in NOT_GRADED or not affected else ": " + ", ".join(
            html.escape(a) for a in affected)
        statuses.append(f"<li><b>{status}</b> {len(affected)}{listed}</li>")
    seconds = [r.seconds for r in valid] or [0.0]
    if totals:
        q1, median, q3 = _quartiles(totals)
        left_out = f" ({len(group) - len(valid)} invalid, left out and listed below)" if len(valid) < len(group) else ""
        stats = (f"<p>{len(valid)} submissions{left_out}; mean {statistics.fmean(totals):.2f}, median {median:.2f}, "
                 f"quartiles {q1:.2f} and {q3:.2f} of {max_total:g} points.</p>")
        plots = f"""<div class="plots">
<img alt="score histogram for {aid}" src="{score_histogram(totals, max_total, 'Total scores')}">
<img alt="pass rate per question for {aid}" src="{question_chart(items, 'Questions, hardest first')}">
<img alt="grading time for {aid}" src="{time_histogram(seconds, 'Grading time')}">
</div>"""
    else:
        stats, plots = "<p>No valid submission: every one is listed under Invalid submissions.</p>", ""
    return f"""
<section id="{html.escape(aid)}" data-assignment="{html.escape(aid)}">
<h2>{html.escape(assignment.title)} <small>({html.escape(aid)})</small></h2>
{_unisolated_warning(group)}{stats}
{_canvas_note(aid, assignment)}
{plots}
<table><tr><th>question (hardest first)</th><th>mean points</th><th>full points</th></tr>{rows}</table>
{_heatmap(assignment, valid, titles, links)}
{_failures(valid, items, titles)}
{_hand_graded(group, titles)}
<h3>Status</h3><ul>{''.join(statuses)}</ul>
{_invalid_list(group)}
</section>"""


def _canvas_note(aid: str, assignment) -> str:
    """Which Canvas column canvas_gradebook.csv fills: the existing one, or a new one Canvas creates."""
    column = html.escape(canvas_column(aid, assignment))
    if assignment.canvas_id:
        return (f'<p class="canvas">canvas_gradebook.csv updates the Canvas assignment {assignment.canvas_id} '
                f"({column}).</p>")
    return (f'<p class="canvas warning">grading.yml gives no <code>canvas_id</code> for {html.escape(aid)}: importing '
            f"canvas_gradebook.csv makes Canvas create a new column &ldquo;{column}&rdquo;. To update the existing "
            f"column, set <code>canvas_id</code> to the number in the assignment's Canvas address.</p>")


def _share_colour(share: float) -> str:
    """Red (no points) through yellow to green (full points)."""
    return f"hsl({120 * max(0.0, min(1.0, share)):.0f}, 60%, 78%)"


def _heatmap(assignment, valid: list[SubmissionResult], titles: dict[str, str], links: dict) -> str:
    """Students x questions, each cell coloured by its share of the points and linked to the feedback."""
    if not valid:
        return ""
    qids = list(dict.fromkeys([*assignment.questions, *(q for r in valid for q in r.questions)]))
    head = "".join(f'<th class="q" title="{html.escape(_label(q, titles))}">{html.escape(q)}'
                   f'<br><small>{html.escape(titles.get(q, ""))}</small></th>' for q in qids)
    body = []
    for result in sorted(valid, key=lambda r: (student_of(r), r.submission)):
        link = links.get(result.submission)
        late = "late" if (result.student or {}).get("late") else ""
        cells = "".join(_heatmap_cell(result.questions.get(q), link) for q in qids)
        body.append(f'<tr><td>{html.escape(student_of(result))}</td><td class="late">{late}</td>{cells}'
                    f'<td class="total">{result.total:g} / {result.max_total:g}</td></tr>')
    return (f'<h3>Students by question</h3><p>Each cell links to the student\'s feedback file.</p>'
            f'<div class="scroll"><table class="heatmap"><tr><th>student</th><th>late</th>{head}<th>total</th></tr>'
            f"{''.join(body)}</table></div>")


def _heatmap_cell(row: QuestionResult | None, link: str | None) -> str:
    if row is None:
        return '<td class="cell missing">-</td>'
    if row.open:
        text, style = TO_GRADE, "background: #e8e8e8"
    else:
        share = (row.points or 0) / row.max_points if row.max_points else 1.0
        text, style = f"{row.points or 0:g} / {row.max_points:g}", f"background: {_share_colour(share)}"
    tip = "; ".join(why_lost(row)) if row.open or (row.points or 0) < row.max_points else "full points"
    shown = f'<a href="{html.escape(link)}">{html.escape(text)}</a>' if link else html.escape(text)
    return f'<td class="cell" style="{style}" title="{html.escape(tip)}">{shown}</td>'


def _failures(valid: list[SubmissionResult], items: list[dict], titles: dict[str, str]) -> str:
    """Per auto-graded question (hardest first): its most frequent failing checks, with counts."""
    blocks = []
    for item in items:
        qid = item["question"]
        reasons = Counter(reason for r in valid if qid in r.questions and not r.questions[qid].full
                          for reason in why_lost(r.questions[qid]))
        if not reasons:
            continue
        lost = sum(1 for r in valid if qid in r.questions and not r.questions[qid].full)
        listed = "".join(f"<li>{html.escape(reason)} <b>({count})</b></li>"
                         for reason, count in reasons.most_common(TOP_FAILURES))
        more = f"<li>and {len(reasons) - TOP_FAILURES} other reason(s)</li>" if len(reasons) > TOP_FAILURES else ""
        blocks.append(f'<li data-question="{html.escape(qid)}"><b>{html.escape(_label(qid, titles))}</b>: '
                      f"{lost} of {len(valid)} lost points<ol>{listed}{more}</ol></li>")
    if not blocks:
        return ""
    return f'<h3>Most frequent failing checks</h3><ul class="failures">{"".join(blocks)}</ul>'


def _invalid_list(group: list[SubmissionResult]) -> str:
    """The submissions that are no grade (invalid ones, grader faults), apart, each with its message."""
    invalid = sorted((r for r in group if r.status in NOT_GRADED), key=lambda r: r.submission)
    if not invalid:
        return ""
    items = "".join(f"<li><b>{html.escape(r.submission)}</b>"
                    + (f" ({html.escape(student_of(r))})" if r.student else "")
                    + ("" if r.status == Status.INVALID else f" [{r.status}: grade it again]")
                    + f": {html.escape(r.message or 'not a notebook of this assignment')}</li>" for r in invalid)
    return (f"<h3>Invalid submissions</h3><p>Left out of the statistics above and exported blank (not 0).</p>"
            f'<ul class="invalid">{items}</ul>')


def _hand_graded(group: list[SubmissionResult], titles: dict[str, str]) -> str:
    """Per hand-graded question: how many are graded, their mean, and who is still to grade."""
    valid = _valid(group)
    qids = list(dict.fromkeys(q for r in valid for q, row in r.questions.items() if row.manual))
    if not qids:
        return ""
    rows, waiting = [], []
    for qid in qids:
        given = [r.questions[qid] for r in valid if qid in r.questions and not r.questions[qid].open]
        maximum = next(r.questions[qid].max_points for r in valid if qid in r.questions)
        mean = f"{statistics.fmean(q.points for q in given):.2f}" if given else "-"
        rows.append(f"<tr><td>{html.escape(_label(qid, titles))}</td><td>{len(given)} of {len(valid)}</td>"
                    f"<td>{mean} / {maximum:g}</td></tr>")
        open_ones = sorted(student_of(r) for r in valid if qid in r.still_to_grade)
        if open_ones:
            waiting.append(f"<li><b>{html.escape(qid)}</b> ({len(open_ones)}): "
                           f"{', '.join(html.escape(n) for n in open_ones)}</li>")
    still = (f'<h4 class="to-grade">Still to grade</h4><ul>{"".join(waiting)}</ul>' if waiting
             else "<p>Every hand-graded answer has its points.</p>")
    return (f'<h3>Graded by hand</h3><table class="hand"><tr><th>question</th><th>graded</th><th>mean points</th></tr>'
            f"{''.join(rows)}</table>{still}")


def _gradebook(by_assignment: dict, order: list[str]) -> dict[str, dict]:
    """{student: {"identity": {...}, aid: total}}; a student's latest graded result wins.

    A result that is no grade (NOT_GRADED) has the total None (exported blank), and never replaces one.
    """
    book: dict[str, dict] = {}
    for aid in order:
        for result in by_assignment[aid]:
            key = student_of(result)
            entry = book.setdefault(key, {"identity": result.student or {"name": key}})
            if result.status in NOT_GRADED:
                entry.setdefault(aid, None)
            else:
                entry[aid] = result.total
    return dict(sorted(book.items()))


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write(path, buffer.getvalue())


def _write_csvs(config, out: Path, gradebook: dict, order: list[str], item_rows: list[dict]) -> None:
    _write_csv(out / "gradebook.csv", ["student", *order],
               [[student, *[_fmt(entry.get(aid)) for aid in order]] for student, entry in gradebook.items()])
    columns = [canvas_column(aid, config.assignment(aid)) for aid in order]
    canvas_rows = [["Points Possible", "", "", "", "", *[f"{config.assignment(a).points_possible:g}" for a in order]]]
    for student, entry in gradebook.items():
        identity = entry["identity"]
        canvas_rows.append([identity.get("name", student), identity.get("canvas_id", ""), identity.get("sis_id", ""),
                            identity.get("login", ""), identity.get("section", ""),
                            *[_fmt(entry.get(aid)) for aid in order]])
    _write_csv(out / "canvas_gradebook.csv", ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *columns],
               canvas_rows)
    _write_csv(out / "item_analysis.csv",
               ["assignment", "question", "title", "max_points", "submissions", "mean_points", "pass_rate"],
               [[r["assignment"], r["question"], r.get("title", ""), f"{r['max_points']:g}", r["n"],
                 f"{r['mean_points']:.4f}", f"{r['pass_rate']:.4f}"] for r in item_rows])


def _unisolated_warning(group: list[SubmissionResult]) -> str:
    """A warning naming every submission that was graded without filesystem isolation."""
    names = sorted(r.submission for r in group if "unisolated" in r.sandbox)
    if not names:
        return ""
    return (f'<p class="warning"><b>Warning:</b> {len(names)} submission(s) were graded without filesystem '
            f"isolation (--allow-unisolated), so their code could read hidden checks and other files: "
            f"{', '.join(html.escape(n) for n in names)}.</p>\n")


def _fmt(value) -> str:
    return "" if value is None else f"{value:g}"


def _page(config, sections: list[str], gradebook: dict, order: list[str]) -> str:
    head = "".join(f"<th>{html.escape(aid)}</th>" for aid in order)
    body = "".join(f"<tr><td>{html.escape(student)}</td>"
                   + "".join(f"<td>{_fmt(entry.get(aid))}</td>" for aid in order) + "</tr>"
                   for student, entry in gradebook.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(config.course.name)}: grade report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }}
h1 {{ margin-bottom: 0.2em; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: 0.2em; }}
.plots {{ display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }}
.plots img {{ max-width: 520px; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }}
th {{ background: #f4f4f4; }}
.warning {{ background: #fff3cd; border: 1px solid #e0b400; padding: 0.5em 0.8em; }}
.scroll {{ overflow-x: auto; }}
table.heatmap th.q {{ max-width: 9em; font-weight: normal; vertical-align: bottom; }}
table.heatmap td.cell, table.heatmap td.total {{ text-align: center; white-space: nowrap; }}
table.heatmap td.cell a {{ color: inherit; }}
table.heatmap td.late {{ color: #a33; }}
</style></head>
<body>
<h1>{html.escape(config.course.name)}: grade report</h1>
<p>{html.escape(config.course.code)}, {html.escape(config.course.term)}. Totals include the hand-graded points
entered so far (the manual CSVs of each results folder); what is still to grade is listed per assignment.</p>
{''.join(sections)}
<section id="gradebook"><h2>Gradebook</h2>
<table><tr><th>student</th>{head}</tr>{body}</table></section>
<script>
// Marks the page once every plot has decoded, so a headless browser can confirm it rendered.
window.addEventListener("load", () => {{
  const images = Array.from(document.images);
  document.body.dataset.imagesOk = String(images.length > 0 && images.every(i => i.complete && i.naturalWidth > 0));
  document.body.dataset.imageCount = String(images.length);
  // What the per-assignment parts rendered: feedback links in the heatmaps, titled question
  // headers, and the invalid submissions listed apart.
  document.body.dataset.heatmapLinks = String(document.querySelectorAll("table.heatmap td.cell a[href]").length);
  document.body.dataset.titledQuestions = String(
    Array.from(document.querySelectorAll("table.heatmap th.q small")).filter(s => s.textContent.trim()).length);
  document.body.dataset.invalidListed = String(document.querySelectorAll("ul.invalid li").length);
}});
</script>
</body></html>
"""
