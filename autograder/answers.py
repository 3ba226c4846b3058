"""Answers to the hand-graded questions: where they sit in a notebook, and the copy kept with the results.

otter-assign marks a hand-graded question in the student notebook: its prompt cell starts with
`<!-- BEGIN QUESTION -->`, and the cell after its answer starts with `<!-- END QUESTION -->` (often
the next question's prompt). The k-th marked prompt of the released notebook is the k-th manual
question of the master, which `questions()` checks against the master's prompt text.

In a submission, a question's answer is every cell between its prompt and the end marker. The
prompt is found by the released cell id, else by the prompt's first line (a notebook re-saved
without ids); the end by the released id, else by the marker. A student may add cells in between:
they are part of the answer.

`grade` keeps each submission's answers in `OUT/answers/<submission>.json`: notebook JSON as the
student saved it (sources, text outputs, PNG/JPEG figures), capped in size. Nothing is executed,
and no output is ever trusted as HTML: `manual_page` escapes or sanitises everything it shows.
"""
from __future__ import annotations

import base64
import binascii
import functools
import re
from dataclasses import dataclass
from pathlib import Path

from .submissions import parse_notebook

BEGIN_MARK = "<!-- BEGIN QUESTION -->"
END_MARK = "<!-- END QUESTION -->"
IMAGE_TYPES = ("image/png", "image/jpeg")
MAX_TEXT_CHARS = 20_000     # per cell source or text output: an answer is a few paragraphs
MAX_IMAGE_BYTES = 2 * 2**20
MAX_ANSWER_BYTES = 6 * 2**20  # per submission, all questions: the rest is dropped with a note
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]+")


class AnswersError(ValueError):
    """The released or master notebook does not match grading.yml; the message says what to rebuild."""


@dataclass(frozen=True)
class Question:
    """A hand-graded question as the release lays it out, with what only graders see."""

    qid: str
    prompt_id: str | None   # released cell id of the prompt
    end_id: str | None      # released cell id of the cell that ends the answer (None: the notebook's end)
    heading: str            # the prompt's first line, e.g. "**Question 6 (1 point, graded by hand).** ..."
    prompt: str             # markdown, without otter's markers
    model_answer: list[dict]  # the master's solution cells (cell_type, source)


def questions(master: dict, released: dict, manual: list[str]) -> dict[str, Question]:
    """The hand-graded questions `manual` as released, in notebook order, with their model answers.

    Raises AnswersError when the release and the master disagree: the build is stale.
    """
    master_blocks = _master_blocks(master)
    marked = _marked_prompts(released)
    ordered = [q for q in master_blocks if q in manual]
    if set(ordered) != set(manual) or len(marked) != len(manual):
        raise AnswersError(f"the release has {len(marked)} hand-graded question(s) and grading.yml "
                           f"{len(manual)} ({', '.join(manual) or 'none'}): rebuild the assignment with "
                           "`python -m autograder build`")
    found = {}
    for qid, (index, end) in zip(ordered, marked):
        prompt, model = master_blocks[qid]
        cells = released["cells"]
        text = _strip_marks(cells[index]["source"])
        if prompt.strip() and _first_line(prompt) not in text:
            raise AnswersError(f"{qid}: the released prompt does not match the master's; rebuild the assignment")
        found[qid] = Question(qid, cells[index].get("id"), cells[end].get("id") if end is not None else None,
                              _first_line(text), text, model)
    return found


def load_questions(master_path: Path, released_path: Path, manual: list[str]) -> dict[str, Question]:
    """`questions()` from the files on disk (read once per version of the two files)."""
    for path in (master_path, released_path):
        if not path.exists():
            raise AnswersError(f"{path} is missing: run `python -m autograder build`")
    return _load(master_path, master_path.stat().st_mtime_ns, released_path, released_path.stat().st_mtime_ns,
                 tuple(manual))


@functools.lru_cache(maxsize=8)
def _load(master_path: Path, _master_mtime: int, released_path: Path, _released_mtime: int,
          manual: tuple[str, ...]) -> dict[str, Question]:
    return questions(parse_notebook(master_path.read_bytes(), master_path.name),
                     parse_notebook(released_path.read_bytes(), released_path.name), list(manual))


def collect(notebook: dict, asked: dict[str, Question]) -> dict[str, dict]:
    """{qid: {"cells": [...]}} with each answer's cells, or {"missing": why} when it cannot be found."""
    budget = [MAX_ANSWER_BYTES]
    found = {}
    for qid, question in asked.items():
        span = _answer_span(notebook["cells"], question)
        if span is None:
            found[qid] = {"missing": f"the notebook has no cell with the prompt of {qid} "
                                     f"({question.heading[:60]}); open the file to find the answer"}
            continue
        found[qid] = {"cells": [_kept_cell(cell, budget) for cell in notebook["cells"][span[0]:span[1]]]}
    return found


def _answer_span(cells: list[dict], question: Question) -> tuple[int, int] | None:
    ids = [cell.get("id") for cell in cells]
    start = ids.index(question.prompt_id) if question.prompt_id in ids else next(
        (i for i, cell in enumerate(cells) if cell["cell_type"] == "markdown" and question.heading
         and question.heading in cell["source"]), None)
    if start is None:
        return None
    for end in range(start + 1, len(cells)):
        if (question.end_id is not None and ids[end] == question.end_id) or END_MARK in cells[end]["source"] \
                or BEGIN_MARK in cells[end]["source"]:
            return start + 1, end
    return start + 1, len(cells)


def _kept_cell(cell: dict, budget: list[int]) -> dict:
    """The parts of a cell a grader reads: its source and, for code, text outputs and figures."""
    kept = {"cell_type": cell["cell_type"], "source": _capped(cell["source"], budget)}
    if cell["cell_type"] == "code":
        kept["outputs"] = [out for out in map(lambda o: _kept_output(o, budget), cell.get("outputs") or [])
                           if out is not None]
    return kept


def _kept_output(output, budget: list[int]) -> dict | None:
    if not isinstance(output, dict):
        return None
    kind = output.get("output_type")
    if kind == "stream":
        return {"text": _capped(_text(output.get("text")), budget)}
    if kind == "error":
        return {"error": _capped(f"{output.get('ename', '')}: {output.get('evalue', '')}", budget)}
    data = output.get("data") if kind in ("execute_result", "display_data") else None
    if not isinstance(data, dict):
        return None
    for mime in IMAGE_TYPES:
        image = _text(data.get(mime)).strip()
        if image and _BASE64.fullmatch(image):
            size = len(image) * 3 // 4
            if size > MAX_IMAGE_BYTES or size > budget[0] or not _decodes(image):
                return {"text": f"[a figure of {size / 2**20:.1f} MiB is left out: too large to show]"}
            budget[0] -= size
            return {"image": mime, "data": re.sub(r"\s+", "", image)}
    text = _text(data.get("text/plain"))
    return {"text": _capped(text, budget)} if text else None


def _decodes(image: str) -> bool:
    try:
        base64.b64decode(re.sub(r"\s+", "", image), validate=True)
        return True
    except (binascii.Error, ValueError):
        return False


def _text(value) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _capped(text: str, budget: list[int]) -> str:
    if len(text) > MAX_TEXT_CHARS:
        text = text[:MAX_TEXT_CHARS] + f"\n[... {len(text) - MAX_TEXT_CHARS} more characters left out]"
    if len(text) > budget[0]:
        text = text[:max(0, budget[0])] + "\n[... the rest is left out: the answers are over the size cap]"
    budget[0] -= len(text)
    return text


def _master_blocks(master: dict) -> dict[str, tuple[str, list[dict]]]:
    """{qid: (prompt markdown, solution cells)} for every question of an otter-assign master."""
    blocks, current, in_solution = {}, None, False
    for cell in master["cells"]:
        source = cell["source"]
        first = source.strip().splitlines()[0] if source.strip() else ""
        if cell["cell_type"] == "raw" and first == "# BEGIN QUESTION":
            name = re.search(r"^name:\s*(\S+)", source, re.MULTILINE)
            current = name.group(1) if name else None
            if current:
                blocks[current] = ("", [])
        elif cell["cell_type"] == "raw" and first == "# END QUESTION":
            current = None
        elif cell["cell_type"] == "raw" and first in ("# BEGIN SOLUTION", "# END SOLUTION"):
            in_solution = first == "# BEGIN SOLUTION"
        elif current and in_solution:
            blocks[current][1].append({"cell_type": cell["cell_type"], "source": source})
        elif current and cell["cell_type"] == "markdown" and not blocks[current][1]:
            prompt, model = blocks[current]
            blocks[current] = ((prompt + "\n\n" + source).strip(), model)
    return blocks


def _marked_prompts(released: dict) -> list[tuple[int, int | None]]:
    """(prompt index, end index or None) of each hand-graded question, in notebook order."""
    cells = released["cells"]
    spans, start = [], None
    for index, cell in enumerate(cells):
        source = cell["source"] if cell["cell_type"] == "markdown" else ""
        if start is not None and END_MARK in source:
            spans.append((start, index))
            start = None
        if BEGIN_MARK in source:
            start = index
    if start is not None:
        spans.append((start, None))
    return spans


def _strip_marks(source: str) -> str:
    text = source.replace(END_MARK, "")
    return text[text.index(BEGIN_MARK) + len(BEGIN_MARK):].strip() if BEGIN_MARK in text else text.strip()


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")
