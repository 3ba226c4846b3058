"""The grading page of one hand-graded question: every student's answer, a point field and a comment box.

One self-contained HTML file per question (`OUT/manual/<question>.html`) that needs no server:
the grader reads the prompt, opens the model answer when wanted (it starts collapsed, so a page
shown on a screen never reveals it by accident), grades answer by answer, and presses "Download
CSV", which saves `<question>.csv` in the layout of the template beside the page. Entries are kept
in the browser's local storage until then, so closing the tab loses nothing.

Student content is untrusted: markdown is rendered with raw HTML escaped and harmful links
removed, code and text outputs are escaped, figures are shown only as PNG/JPEG data, and a
Content-Security-Policy lets no script run but the page's own.
"""
from __future__ import annotations

import base64
import hashlib
import html
import json
import time
from dataclasses import dataclass

import mistune

from .answers import Question

_markdown = mistune.create_markdown(escape=True, plugins=["strikethrough", "table"])


@dataclass(frozen=True)
class Entry:
    """One submission on the page: its code, the name shown (the code when anonymous) and its answer."""

    code: str
    shown_as: str
    answer: dict          # {"cells": [...]} or {"missing": why}, as `answers.collect` gives it
    points: float | None  # prefilled from the question's CSV
    comment: str = ""


def render_markdown(text: str) -> str:
    return _markdown(text)


def render_cells(cells: list[dict]) -> str:
    """A notebook answer as HTML: markdown rendered safely, code and outputs escaped, figures inlined."""
    parts = []
    for cell in cells:
        if cell["cell_type"] == "markdown":
            parts.append(f'<div class="md">{render_markdown(cell["source"])}</div>')
            continue
        if cell["source"].strip():
            parts.append(f'<pre class="code">{html.escape(cell["source"])}</pre>')
        for output in cell.get("outputs", []):
            if "image" in output:
                parts.append(f'<img class="figure" alt="a figure in the answer" '
                             f'src="data:{html.escape(output["image"])};base64,{html.escape(output["data"])}">')
            elif "error" in output:
                parts.append(f'<pre class="error">{html.escape(output["error"])}</pre>')
            elif output.get("text"):
                parts.append(f'<pre class="output">{html.escape(output["text"])}</pre>')
    return "".join(parts) or '<p class="empty">(no cells)</p>'


def page(course: str, title: str, aid: str, question: Question, max_points: float, entries: list[Entry]) -> str:
    """The whole page; `entries` in the order to grade (sorted by code, so names cannot be guessed)."""
    articles = []
    for number, entry in enumerate(entries, start=1):
        answer = entry.answer
        body = (render_cells(answer["cells"]) if "cells" in answer
                else f'<p class="missing">{html.escape(answer.get("missing", "no answer was stored"))}</p>')
        points = "" if entry.points is None else f"{entry.points:g}"
        articles.append(f"""
<article class="answer" data-code="{html.escape(entry.code)}">
<h3>{number}. {html.escape(entry.shown_as)}</h3>
<div class="cells">{body}</div>
<div class="grade"><label>points (0 to {max_points:g}) <input class="points" type="number" min="0" max="{max_points:g}"
 step="any" value="{points}"></label>
<label>comment for the student <textarea class="comment" rows="2">{html.escape(entry.comment)}</textarea></label></div>
</article>""")
    model = "".join(f'<div class="md">{render_markdown(c["source"])}</div>' if c["cell_type"] == "markdown"
                    else f'<pre class="code">{html.escape(c["source"])}</pre>' for c in question.model_answer)
    # Saved entries are keyed by the page's question and submissions, and ignored once the page is
    # rebuilt (from a newer CSV).
    key = hashlib.sha256(json.dumps([aid, question.qid, [e.code for e in entries]]).encode()).hexdigest()[:16]
    script = _SCRIPT
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    policy = f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'sha256-{digest}'"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<title>{html.escape(aid)} {html.escape(question.qid)}: grading by hand</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1000px; color: #222; }}
.prompt, .model {{ background: #f6f8fa; border: 1px solid #ddd; padding: 0.4em 1em; margin: 0.6em 0; }}
.model summary {{ cursor: pointer; font-weight: bold; }}
article.answer {{ border-top: 2px solid #4C72B0; margin: 1.6em 0; padding-top: 0.2em; }}
pre {{ background: #f4f4f4; padding: 0.5em; overflow-x: auto; white-space: pre-wrap; }}
pre.error {{ background: #fde8e8; }} img.figure {{ max-width: 100%; }}
.grade {{ display: flex; gap: 1.5em; align-items: flex-start; background: #eef3fb; padding: 0.5em; }}
.grade label {{ display: flex; flex-direction: column; font-size: 0.9em; }}
.grade textarea {{ width: 32em; }} input.bad {{ outline: 2px solid #c00; }}
.missing {{ color: #a00; }}
#bar {{ position: sticky; top: 0; background: white; padding: 0.5em 0; border-bottom: 1px solid #ccc; }}
</style></head>
<body data-key="{key}" data-question="{html.escape(question.qid)}" data-built="{int(time.time() * 1000)}">
<h1>{html.escape(title)}: {html.escape(question.qid)}, graded by hand ({max_points:g} point(s))</h1>
<p>{html.escape(course)}. For graders only: this page holds the model answer. Students see their points
and your comment in their feedback, never this page.</p>
<div id="bar"><button id="download" type="button">Download CSV</button> <span id="status"></span>
<span>Save the file as <code>manual/{html.escape(question.qid)}.csv</code> in the results folder (replace the
template), then run <code>python -m autograder report</code>.</span></div>
<section class="prompt"><h2>The question</h2>{render_markdown(question.prompt)}</section>
<details class="model"><summary>Model answer (graders only; click to show)</summary>
<div class="model-body">{model or "<p>(the master notebook has no model answer)</p>"}</div></details>
<h2>{len(entries)} answer(s)</h2>
{''.join(articles)}
<script>{script}</script>
</body></html>
"""


# The page's only script: validates points, keeps entries in local storage, writes the CSV.
# `#selftest` in the URL fills every entry and exposes the CSV and the visible text, for tests.
_SCRIPT = r"""
(() => {
  const body = document.body, qid = body.dataset.question, key = "nn4e-manual:" + body.dataset.key;
  const answers = Array.from(document.querySelectorAll("article.answer"));
  const status = document.getElementById("status");
  const rows = () => answers.map(a => ({code: a.dataset.code, points: a.querySelector(".points").value.trim(),
                                        comment: a.querySelector(".comment").value}));
  const cell = s => /[",\r\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s;
  const toCsv = () => "submission,points,comment\n"
    + rows().map(r => [r.code, r.points, r.comment].map(cell).join(",")).join("\n") + "\n";
  const valid = input => {
    const v = input.value.trim(), n = Number(v);
    const ok = v === "" || (Number.isFinite(n) && n >= 0 && n <= Number(input.max));
    input.classList.toggle("bad", !ok);
    return ok;
  };
  const refresh = () => {
    const all = rows(), done = all.filter(r => r.points !== "").length;
    const bad = answers.filter(a => !valid(a.querySelector(".points"))).length;
    status.textContent = `${done} of ${all.length} graded` + (bad ? `; ${bad} with points out of range` : "");
    return bad === 0;
  };
  const save = () => {
    try { localStorage.setItem(key, JSON.stringify({saved: Date.now(), rows: rows()})); } catch (e) {}
    refresh();
  };
  try {
    const kept = JSON.parse(localStorage.getItem(key) || "null");
    if (kept && kept.saved > Number(body.dataset.built)) {
      const byCode = new Map(kept.rows.map(r => [r.code, r]));
      for (const a of answers) {
        const r = byCode.get(a.dataset.code);
        if (r) { a.querySelector(".points").value = r.points; a.querySelector(".comment").value = r.comment; }
      }
    }
  } catch (e) {}
  document.addEventListener("input", save);
  document.getElementById("download").addEventListener("click", () => {
    if (!refresh()) { alert("Some points are out of range (marked red): fix them first."); return; }
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([toCsv()], {type: "text/csv"}));
    link.download = qid + ".csv";
    document.body.appendChild(link);
    link.click();
    link.remove();
  });
  refresh();
  if (location.hash === "#selftest") {
    answers.forEach((a, i) => {
      a.querySelector(".points").value = a.querySelector(".points").max;
      a.querySelector(".comment").value = `checked, "answer ${i + 1}"`;
    });
    body.dataset.csv = toCsv();
    body.dataset.visibleText = body.innerText;
    body.dataset.modelShown = String(document.querySelector(".model-body").checkVisibility());
  }
})();
"""
