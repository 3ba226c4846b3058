"""docs/coverage.md maps the course material to questions, and the map stays true.

Every row of the coverage table names questions that exist in grading.yml (or gives a reason in
place of one), every question of every assignment is reached from the material, and no row is
left pending or unassigned.
"""
from __future__ import annotations

import re

from conftest import REPO_ROOT

COVERAGE = REPO_ROOT / "docs" / "coverage.md"
# "tensors q4", "tensors q10_1", "autograd q9, q10": an assignment id followed by its question ids.
REFERENCE = re.compile(r"\b([a-z][a-z0-9-]*) ((?:q\d+(?:_\d+)?(?:, | and |/| or )?)+)")


def table_rows() -> list[list[str]]:
    rows = []
    for line in COVERAGE.read_text().splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and not set(cells[0]) <= set("- ") and cells[0] != "Source item":
            rows.append(cells)
    return rows


def referenced(text: str, assignments) -> set[tuple[str, str]]:
    found = set()
    for aid, ids in REFERENCE.findall(text):
        if aid in assignments:
            found.update((aid, q) for q in re.findall(r"q\d+(?:_\d+)?", ids))
    return found


def test_every_row_is_assigned_or_explained(config):
    """Check that no coverage row is pending or unassigned, and a row without a question has a reason"""
    rows = table_rows()
    assert len(rows) > 100, "the coverage table lost its rows"
    for item, questions, note in rows:
        assert "PENDING" not in questions and "UNASSIGNED" not in questions, item
        if not referenced(questions, config.assignments):
            assert note, f"'{item}' has neither a question nor a written reason"


def test_rows_name_real_questions_and_every_question_is_reached(config):
    """Check that each question named in the table exists, and each question is named by a row"""
    named = set()
    for _, questions, _ in table_rows():
        named |= referenced(questions, config.assignments)
    real = {(aid, q) for aid, spec in config.assignments.items() for q in spec.questions}
    assert named - real == set(), "the coverage table names questions grading.yml does not have"
    assert real - named == set(), "these questions are missing from docs/coverage.md"
