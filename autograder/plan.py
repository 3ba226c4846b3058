"""Turn a submitted notebook into the steps the grader runs: student cells, then probes.

Otter's plumbing cells (init, `grader.check`, export) are not executed: each `grader.check("qN")`
cell becomes the point where question N's probes run. Locked cells are compared with the released
student notebook by cell id; the grading-constants cell always comes from the release, so a
student cannot lower a threshold or an epoch budget by editing it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

CHECK_CALL = re.compile(r"""grader\.check\(\s*["']([A-Za-z0-9_\-]+)["']\s*\)""")
CONSTANTS_MARKER = "# Grading constants"
PRELUDE = '''\
class _GraderStub:
    """Stands in for otter's grader: checks run outside this process."""
    def check(self, *args, **kwargs): return None
    def check_all(self, *args, **kwargs): return None
    def export(self, *args, **kwargs): return None
grader = _GraderStub()
'''


@dataclass(frozen=True)
class Step:
    kind: str  # "run" or "probe"
    source: str = ""
    question: str = ""
    label: str = ""


@dataclass
class Plan:
    steps: list[Step]
    notes: list[str] = field(default_factory=list)


def _is_plumbing(source: str) -> bool:
    return "otter.Notebook(" in source or "grader.export(" in source or "grader.check_all(" in source


def _label(number: int, source: str) -> str:
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    return f"code cell {number} (`{first[:60]}`)"


def _locked_code_cells(reference: dict) -> list[dict]:
    return [c for c in reference["cells"]
            if c["cell_type"] == "code" and c.get("metadata", {}).get("editable") is False]


def build_plan(submission: dict, reference: dict, questions: list[str]) -> Plan:
    """Steps for `submission`, with notes on locked cells that were edited, deleted or restored."""
    notes: list[str] = []
    constants = next((c for c in reference["cells"]
                      if c["cell_type"] == "code" and c["source"].startswith(CONSTANTS_MARKER)), None)
    by_id = {c.get("id"): c for c in submission["cells"] if c.get("id")}
    for locked in _locked_code_cells(reference):
        mine = by_id.get(locked.get("id"))
        name = f"the locked cell `{locked['source'].splitlines()[0][:50]}`"
        if mine is None:
            notes.append(f"{name} was deleted or retyped; the grader relies on the released version")
        elif mine["source"].strip() != locked["source"].strip():
            notes.append(f"{name} was edited; the grader relies on the released version")

    steps = [Step("run", PRELUDE, label="grader prelude")]
    if constants is not None:
        steps.append(Step("run", constants["source"], label="grading constants (from the release)"))
    probed: set[str] = set()
    number = 0
    for cell in submission["cells"]:
        if cell["cell_type"] != "code":
            continue
        number += 1
        source = cell["source"]
        is_constants = constants is not None and (
            cell.get("id") == constants.get("id") or source.startswith(CONSTANTS_MARKER))
        if is_constants:
            continue
        checked = [q for q in CHECK_CALL.findall(source) if q in questions]
        extra_code = len(source.strip().splitlines()) > len(checked)
        if extra_code and not _is_plumbing(source):
            steps.append(Step("run", source, label=_label(number, source)))
        for qid in checked:
            if qid not in probed:
                probed.add(qid)
                steps.append(Step("probe", question=qid, label=_label(number, source)))
    for qid in questions:
        if qid not in probed:
            notes.append(f"the `grader.check(\"{qid}\")` cell was missing; {qid} was checked at the end of the notebook")
            steps.append(Step("probe", question=qid, label="end of notebook"))
    return Plan(steps, notes)
