"""The build: grading.yml reaches the notebook and bundle, rebuilds are byte-identical, and a
solution that fails its own tests stops the build with a clear message."""
from __future__ import annotations

import ast
import json
import os
import zipfile

import pytest
import yaml

from autograder.build import BuildError, build_assignment, configure_master
from autograder.config import REPO_ROOT, load_config
from conftest import config_with, load_notebook

ASSIGNMENTS = sorted(load_config().assignments)
SPIRAL_MASTER = REPO_ROOT / "solutions" / "spiral" / "spiral.ipynb"


def cell_sources(notebook: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in notebook["cells"]]


def test_points_and_constants_come_from_grading_yml(raw_config):
    """Check that points, the constants cell and test literals follow grading.yml"""
    config = config_with(raw_config, **{"assignments.spiral.thresholds": {"min_test_accuracy": 0.77},
                                        "assignments.spiral.questions.q4": {"points": 5}})
    configured = configure_master(load_notebook(SPIRAL_MASTER), "spiral", config.assignment("spiral"))
    sources = cell_sources(configured)
    assert any(s.startswith("# Grading constants") and "MIN_TEST_ACCURACY = 0.77" in s for s in sources)
    assert any("name: q4" in s and "points: 5" in s for s in sources)
    assert any("100 * 0.77" in s for s in sources), "the threshold literal should replace the name in tests"


def test_question_lists_must_agree(raw_config):
    """Check that a question missing from grading.yml (or the notebook) fails the build by name"""
    questions = dict(raw_config["assignments"]["spiral"]["questions"])
    extra = config_with(raw_config, **{"assignments.spiral.questions": {**questions, "q9": {"points": 1}}})
    with pytest.raises(BuildError, match=r"\['q9'\]"):
        configure_master(load_notebook(SPIRAL_MASTER), "spiral", extra.assignment("spiral"))
    questions.pop("q5")
    fewer = config_with(raw_config, **{"assignments.spiral.questions": questions})
    with pytest.raises(BuildError, match="'q5'"):
        configure_master(load_notebook(SPIRAL_MASTER), "spiral", fewer.assignment("spiral"))


@pytest.mark.slow
@pytest.mark.parametrize("aid", ASSIGNMENTS)
def test_rebuild_is_byte_identical_to_the_committed_files(tmp_path, config, aid):
    """Check that rebuilding reproduces the committed student notebook and bundle byte for byte"""
    paths = build_assignment(aid, config, out_root=tmp_path, log=lambda *_: None)
    assert paths["student"].read_bytes() == (REPO_ROOT / "assignments" / aid / f"{aid}.ipynb").read_bytes()
    assert paths["bundle"].read_bytes() == (REPO_ROOT / "autograder" / "bundles" / f"{aid}-autograder.zip").read_bytes()
    with zipfile.ZipFile(paths["bundle"]) as bundle:
        assert all(info.date_time == (1980, 1, 1, 0, 0, 0) for info in bundle.infolist())
        assert "run_autograder" in bundle.namelist()


@pytest.mark.slow
def test_threshold_change_reaches_the_bundle(tmp_path, raw_config):
    """Check that a new threshold in grading.yml is in the rebuilt bundle's tests and notebook"""
    config = config_with(raw_config, **{"assignments.spiral.thresholds": {"min_test_accuracy": 0.77}})
    paths = build_assignment("spiral", config, out_root=tmp_path, log=lambda *_: None)
    with zipfile.ZipFile(paths["bundle"]) as bundle:
        tests = "".join(bundle.read(n).decode() for n in bundle.namelist() if n.startswith("tests/"))
    assert "0.77" in tests and "0.85" not in tests
    assert "MIN_TEST_ACCURACY = 0.77" in paths["student"].read_text()


@pytest.mark.slow
def test_solution_failing_its_tests_stops_the_build(tmp_path, raw_config):
    """Check that a wrong solution fails `build` with otter's per-question summary"""
    master = load_notebook(SPIRAL_MASTER)
    for cell in master["cells"]:
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        cell["source"] = text.replace("torch.tensor(y_train_np, dtype=torch.long)",
                                      "torch.tensor(y_train_np, dtype=torch.float32)")
    broken = tmp_path / "spiral" / "spiral.ipynb"
    broken.parent.mkdir()
    broken.write_text(json.dumps(master))
    config = config_with(raw_config, **{"assignments.spiral.notebook": os.path.relpath(broken, REPO_ROOT)})
    with pytest.raises(BuildError) as info:
        build_assignment("spiral", config, out_root=tmp_path / "out", log=lambda *_: None)
    assert "does not pass its own tests" in str(info.value) and "q1" in str(info.value)


def test_every_public_assert_says_what_is_wrong():
    """Check that every assert in a master's public test cells carries a message, since a student who
    runs grader.check sees only that message (a bare assert shows them just `AssertionError`)"""
    bare = []
    for aid in ASSIGNMENTS:
        question, in_tests = None, False
        for cell in load_notebook(REPO_ROOT / "solutions" / aid / f"{aid}.ipynb")["cells"]:
            source = cell_sources({"cells": [cell]})[0]
            first = source.strip().splitlines()[0] if source.strip() else ""
            if cell["cell_type"] == "raw" and first == "# BEGIN QUESTION":
                question = yaml.safe_load(source.split("\n", 1)[1])["name"]
            elif cell["cell_type"] == "raw" and first in ("# BEGIN TESTS", "# END TESTS"):
                in_tests = first == "# BEGIN TESTS"
            elif cell["cell_type"] == "code" and in_tests and "hidden: true" not in source:
                bare += [f"{aid} {question}: {ast.get_source_segment(source, node)}"
                         for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assert) and node.msg is None]
    assert not bare, ("give each of these public asserts a message that tells the student what is wrong:\n"
                      + "\n".join(bare))
