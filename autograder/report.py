"""`report`: one self-contained HTML page (plots embedded as PNG data) and CSV exports.

Per assignment: score histogram with mean/median/quartiles, per-question mean and pass rate
(hardest first), the hand-graded questions (graded so far, mean, who is still to grade), status
counts with the affected submissions, grading-time distribution. Totals include the hand-graded
points of each folder's manual CSVs, merged by `load_results`.
Across assignments: a gradebook (students x assignments). Exports: gradebook.csv,
canvas_gradebook.csv (Canvas's import layout: Student, ID, SIS User ID, SIS Login ID, Section,
one column per assignment, and a "Points Possible" row) and item_analysis.csv.
"""
from __future__ import annotations

import base64
import csv
import html
import io
import statistics
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .config import GradingConfig  # noqa: E402
from .manual import merge_folder  # noqa: E402
from .results import Status, SubmissionResult, atomic_write, student_of  # noqa: E402


def load_results(dirs: list[Path], config: GradingConfig) -> list[SubmissionResult]:
    """Every result under the given results folders, with the folders' manual CSVs merged in.

    Merging rewrites what it changes in each folder (result JSON, feedback, grades.csv), so the
    folder always agrees with the report.
    """
    return [result for folder in dirs for result in merge_folder(Path(folder), config)]


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
    labels = [item["question"] for item in items]
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
    """Per auto-graded question: mean points and the share of submissions with full points."""
    by_question: dict[str, list] = defaultdict(list)
    for result in results:
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


def build_report(config: GradingConfig, results: list[SubmissionResult], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    by_assignment: dict[str, list[SubmissionResult]] = defaultdict(list)
    for result in results:
        by_assignment[result.assignment].append(result)
    order = [aid for aid in config.assignments if aid in by_assignment]
    sections, item_rows = [], []
    for aid in order:
        group = by_assignment[aid]
        assignment = config.assignment(aid)
        totals = [r.total for r in group]
        items = item_analysis(group)
        item_rows += [{"assignment": aid, **item} for item in items]
        sections.append(_section(aid, assignment.title, assignment.points_possible, group, totals, items))
    gradebook = _gradebook(by_assignment, order)
    _write_csvs(config, out, gradebook, order, item_rows)
    page = _page(config, sections, gradebook, order)
    path = out / "report.html"
    atomic_write(path, page)
    return path


def _section(aid, title, max_total, group, totals, items) -> str:
    q1, median, q3 = _quartiles(totals)
    stats = (f"<p>{len(group)} submissions; mean {statistics.fmean(totals):.2f}, median {median:.2f}, "
             f"quartiles {q1:.2f} and {q3:.2f} of {max_total:g} points.</p>")
    rows = "".join(f"<tr><td>{html.escape(i['question'])}</td><td>{i['mean_points']:.2f} / {i['max_points']:g}</td>"
                   f"<td>{100 * i['pass_rate']:.0f}%</td></tr>" for i in items)
    statuses = []
    for status in Status:
        affected = sorted(r.submission for r in group if r.status == status)
        listed = "" if status == Status.OK or not affected else ": " + ", ".join(html.escape(a) for a in affected)
        statuses.append(f"<li><b>{status}</b> {len(affected)}{listed}</li>")
    seconds = [r.seconds for r in group if r.status != Status.INVALID] or [0.0]
    return f"""
<section id="{html.escape(aid)}">
<h2>{html.escape(title)} <small>({html.escape(aid)})</small></h2>
{_unisolated_warning(group)}{stats}
<div class="plots">
<img alt="score histogram for {aid}" src="{score_histogram(totals, max_total, 'Total scores')}">
<img alt="pass rate per question for {aid}" src="{question_chart(items, 'Questions, hardest first')}">
<img alt="grading time for {aid}" src="{time_histogram(seconds, 'Grading time')}">
</div>
<table><tr><th>question (hardest first)</th><th>mean points</th><th>full points</th></tr>{rows}</table>
{_hand_graded(group)}
<h3>Status</h3><ul>{''.join(statuses)}</ul>
</section>"""


def _hand_graded(group: list[SubmissionResult]) -> str:
    """Per hand-graded question: how many are graded, their mean, and who is still to grade."""
    valid = [r for r in group if r.status != Status.INVALID]
    qids = list(dict.fromkeys(q for r in valid for q, row in r.questions.items() if row.manual))
    if not qids:
        return ""
    rows, waiting = [], []
    for qid in qids:
        given = [r.questions[qid] for r in valid if qid in r.questions and not r.questions[qid].open]
        maximum = next(r.questions[qid].max_points for r in valid if qid in r.questions)
        mean = f"{statistics.fmean(q.points for q in given):.2f}" if given else "-"
        rows.append(f"<tr><td>{html.escape(qid)}</td><td>{len(given)} of {len(valid)}</td>"
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
    """{student: {"student": {...identity}, aid: total}}; a student's latest graded result wins."""
    book: dict[str, dict] = {}
    for aid in order:
        for result in by_assignment[aid]:
            key = student_of(result)
            entry = book.setdefault(key, {"identity": result.student or {"name": key}})
            entry[aid] = result.total
    return dict(sorted(book.items()))


def _write_csvs(config, out: Path, gradebook: dict, order: list[str], item_rows: list[dict]) -> None:
    def write(name: str, header: list[str], rows: list[list]) -> None:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(rows)
        atomic_write(out / name, buffer.getvalue())

    write("gradebook.csv", ["student", *order],
          [[student, *[_fmt(entry.get(aid)) for aid in order]] for student, entry in gradebook.items()])
    titles = [f"{config.assignment(aid).title} ({aid})" for aid in order]
    canvas_rows = [["Points Possible", "", "", "", "", *[f"{config.assignment(a).points_possible:g}" for a in order]]]
    for student, entry in gradebook.items():
        identity = entry["identity"]
        canvas_rows.append([identity.get("name", student), identity.get("canvas_id", ""), identity.get("sis_id", ""),
                            identity.get("login", ""), identity.get("section", ""),
                            *[_fmt(entry.get(aid)) for aid in order]])
    write("canvas_gradebook.csv", ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", *titles], canvas_rows)
    write("item_analysis.csv", ["assignment", "question", "max_points", "submissions", "mean_points", "pass_rate"],
          [[r["assignment"], r["question"], f"{r['max_points']:g}", r["n"], f"{r['mean_points']:.4f}",
            f"{r['pass_rate']:.4f}"] for r in item_rows])


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
}});
</script>
</body></html>
"""
