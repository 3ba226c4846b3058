"""The student release holds only what students need, and works without this project's tooling."""
from __future__ import annotations

import json
import zipfile

import pytest

from autograder.release import release
from test_hygiene import MARKERS, source


@pytest.fixture(scope="module")
def released(tmp_path_factory, config):
    return release(config, tmp_path_factory.mktemp("rel") / "release")


def test_release_holds_only_student_material(released, config):
    """Check that the release has notebooks, data, requirements and README, and no grading internals"""
    folder, archive = released
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    expected_notebooks = {f"assignments/{aid}/{aid}.ipynb" for aid in config.assignments}
    assert expected_notebooks <= set(files)
    for name in files:
        assert (name in expected_notebooks or name in ("README.md", "requirements.txt")
                or name.startswith("datasets/")), name
        assert not any(bad in name for bad in ("solution", "checks.py", "grading.yml", "autograder", "tests/"))
    for notebook_path in expected_notebooks:
        text = "\n".join(source(c) for c in json.loads((folder / notebook_path).read_text())["cells"])
        assert not MARKERS.search(text)
    with zipfile.ZipFile(archive) as zf:
        assert sorted(n.split("/", 1)[1] for n in zf.namelist()) == files
    assert "otter-grader==7.0.0" in (folder / "requirements.txt").read_text()


@pytest.mark.slow
def test_student_runs_first_cells_and_check_without_project_tooling(released, config):
    """Check that each released notebook's init cell and first grader.check run in a plain kernel"""
    import nbformat
    from nbclient import NotebookClient

    folder, _ = released
    for aid in config.assignments:
        path = folder / "assignments" / aid / f"{aid}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        first_check = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and "grader.check(" in c.source)
        probe = nbformat.v4.new_code_cell(
            "import importlib.util\nprint('tooling:', importlib.util.find_spec('autograder'))")
        notebook.cells = [probe, *notebook.cells[:first_check + 1]]
        client = NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True,
                                resources={"metadata": {"path": str(path.parent)}})
        client.execute()
        outputs = lambda cell: "".join(o.get("text", "") + json.dumps(o.get("data", {})) for o in cell.outputs)  # noqa: E731
        assert "tooling: None" in outputs(notebook.cells[0])
        assert not any(o.get("output_type") == "error" for o in notebook.cells[1].outputs), aid
        check_output = outputs(notebook.cells[-1])
        assert "q1" in check_output and "results" in check_output, check_output[:500]
