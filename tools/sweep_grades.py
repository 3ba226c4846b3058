"""Sweep byte-different copies of the canned submissions over several grading seeds.

    python tools/sweep_grades.py spiral --copies 4 --seeds 0 1 2       # one assignment
    python tools/sweep_grades.py --all --copies 3 --seeds 0 1 2 --markdown

For each grading seed (`defaults.seed`), every canned notebook of the assignment is graded once as
it is and `--copies` more times with a different comment added to its first code cell. The same
code must get the same grade: the sweep reports, per seed, every notebook whose copies disagree on
status, points or check messages, and every notebook whose points are not the ones its
`tests/submissions/<id>.yml` entry promises (full marks for the solution, the run-twice copy and
the honest variants; exactly the listed questions lost for a mistake). It exits 1 if anything
disagrees. `--markdown` prints the table kept in docs/calibration.md.

The test suite grades one copy per assignment with the configured seed; this script is the slow,
wide version of that test.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from autograder.config import load_config  # noqa: E402
from autograder.grade import grade_batch, make_job  # noqa: E402
from autograder.submissions import discover  # noqa: E402

SUBMISSIONS = ROOT / "tests" / "submissions"


def expected_losses(aid: str) -> dict[str, list[str] | str]:
    """Notebook name -> the questions it must lose ("all" for the blank)."""
    spec = yaml.safe_load((SUBMISSIONS / f"{aid}.yml").read_text(encoding="utf-8"))
    losses: dict[str, list[str] | str] = {"solution": [], "run_twice": [], "blank": "all"}
    losses.update({name: entry["loses"] for name, entry in spec.items()})
    return losses


def write_copy(source: Path, target: Path, number: int) -> None:
    """`source` with one comment added to its first code cell (number 0 is the file unchanged)."""
    if number == 0:
        target.write_bytes(source.read_bytes())
        return
    notebook = json.loads(source.read_text(encoding="utf-8"))
    cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
    text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    cell["source"] = f"# copy {number}\n{text}"
    target.write_text(json.dumps(notebook, indent=1), encoding="utf-8")


def signature(result: dict) -> tuple:
    """What must not change between copies: status, points and every check's message."""
    return (result["status"], tuple((q, row["points"], tuple(c["message"] for c in row["checks"]))
                                    for q, row in sorted(result["questions"].items())))


def sweep(aid: str, copies: int, seeds: list[int], jobs: int) -> list[dict]:
    """One row per seed: notebooks graded, copies that disagreed, expectations broken."""
    config = load_config()
    assignment = config.assignment(aid)
    losses = expected_losses(aid)
    rows = []
    for seed in seeds:
        seeded = config.model_copy(update={"defaults": config.defaults.model_copy(update={"seed": seed})})
        with tempfile.TemporaryDirectory(prefix=f"sweep-{aid}-") as scratch:
            folder = Path(scratch) / "copies"
            folder.mkdir()
            for name in losses:
                for number in range(copies + 1):
                    write_copy(SUBMISSIONS / aid / f"{name}.ipynb", folder / f"{name}--{number}.ipynb", number)
            started = time.monotonic()
            results = [r.to_json() for r in grade_batch(make_job(aid, seeded, jobs=jobs), discover([folder]),
                                                        Path(scratch) / "out", progress=False)]
            seconds = time.monotonic() - started
        by_name: dict[str, list[dict]] = {}
        for result in results:
            by_name.setdefault(result["submission"].rsplit("--", 1)[0], []).append(result)
        disagree = sorted(name for name, group in by_name.items() if len({signature(r) for r in group}) > 1)
        broken = []
        for name, group in by_name.items():
            lose = losses[name]
            wanted = {q: 0.0 if (lose == "all" or q in lose) else spec.points
                      for q, spec in assignment.questions.items() if not spec.manual}
            if any({q: r["questions"][q]["points"] for q in wanted} != wanted or r["status"] != "ok"
                   for r in group):
                broken.append(name)
        rows.append({"assignment": aid, "seed": seed, "notebooks": len(by_name), "graded": len(results),
                     "disagree": disagree, "broken": sorted(broken), "seconds": round(seconds, 1)})
        print(f"{aid} seed {seed}: {len(results)} gradings of {len(by_name)} notebooks in {seconds:.0f} s; "
              f"copies disagree: {disagree or 'none'}; expectations broken: {sorted(broken) or 'none'}",
              file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("ids", nargs="*", help="assignment ids (default with --all: every canned one)")
    parser.add_argument("--all", action="store_true", help="every assignment with canned submissions")
    parser.add_argument("--copies", type=int, default=3, help="byte-different copies per notebook (default 3)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="grading seeds (default 0 1 2)")
    parser.add_argument("--jobs", type=int, default=2, help="submissions graded in parallel (default 2)")
    parser.add_argument("--markdown", action="store_true", help="print the results as a markdown table")
    args = parser.parse_args(argv)
    ids = args.ids or ([p.stem for p in sorted(SUBMISSIONS.glob("*.yml"))] if args.all else [])
    if not ids:
        parser.error("name at least one assignment id, or pass --all")
    rows = [row for aid in ids for row in sweep(aid, args.copies, args.seeds, args.jobs)]
    if args.markdown:
        print("| assignment | seed | notebooks x copies | copies that disagree | expectations broken |")
        print("| --- | --- | --- | --- | --- |")
        for row in rows:
            print(f"| {row['assignment']} | {row['seed']} | {row['notebooks']} x {args.copies + 1} | "
                  f"{', '.join(row['disagree']) or 'none'} | {', '.join(row['broken']) or 'none'} |")
    return 1 if any(row["disagree"] or row["broken"] for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
