"""Regenerate the canned submissions of an assignment from its student notebook and solution.

    python tests/submissions/make_canned.py spiral     # after `python -m autograder build spiral`

The solution is the build's filled release (`build/<id>/solution.ipynb`: the student notebook with
every answer cell filled in); the blank is the release itself; each entry in `<id>.yml` is a text
replacement applied to the solution: a mistake (`loses` lists its questions) or a correct answer
written in another style (`loses: []`). `run_twice.ipynb` is the solution with every code cell
executed twice in a row, as after a second "Run All": re-running cells must not change a grade.
"""
from __future__ import annotations

import copy
import json
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _source(cell: dict) -> str:
    source = cell["source"]
    return "".join(source) if isinstance(source, list) else source


def apply_mistake(notebook: dict, replacements: list[dict], name: str) -> dict:
    broken = copy.deepcopy(notebook)
    for item in replacements:
        hits = 0
        for cell in broken["cells"]:
            source = _source(cell)
            if item["old"] in source:
                cell["source"] = source.replace(item["old"], item["new"])
                hits += 1
        if not hits:
            raise SystemExit(f"{name}: text not found in the solution: {item['old']!r}")
    return broken


def run_twice(notebook: dict) -> dict:
    """Every code cell's source repeated, except otter's plumbing and `grader.check` cells."""
    twice = copy.deepcopy(notebook)
    for cell in twice["cells"]:
        source = _source(cell)
        if cell["cell_type"] != "code" or not source.strip() or "grader." in source or "otter" in source:
            continue
        cell["source"] = f"{source}\n\n# --- the same cell, run again ---\n{source}"
    return twice


def write(notebook: dict, path: Path) -> None:
    path.write_text(json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def main(aid: str) -> None:
    student = json.loads((ROOT / "assignments" / aid / f"{aid}.ipynb").read_text(encoding="utf-8"))
    filled = json.loads((ROOT / "build" / aid / "solution.ipynb").read_text(encoding="utf-8"))
    out = HERE / aid
    out.mkdir(exist_ok=True)
    write(filled, out / "solution.ipynb")
    write(student, out / "blank.ipynb")
    write(run_twice(filled), out / "run_twice.ipynb")
    for name, spec in yaml.safe_load((HERE / f"{aid}.yml").read_text()).items():
        write(apply_mistake(filled, spec["replace"], name), out / f"{name}.ipynb")
    print(f"wrote canned submissions in {out}")


if __name__ == "__main__":
    main(sys.argv[1])
