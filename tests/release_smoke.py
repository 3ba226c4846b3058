"""Run a released notebook's first cells and first `grader.check` in a plain Jupyter kernel.

Used by test_release.py in the project's own environment, and run as a script with the Python of a
fresh venv that has only the release's requirements.txt: `python release_smoke.py NOTEBOOK...`
prints one JSON line per notebook. Imports nothing from this project.
"""
from __future__ import annotations

import json
import sys


def _text(cell) -> str:
    return "".join(o.get("text", "") + json.dumps(o.get("data", {})) for o in cell.outputs)


def first_cells_and_check(path: str) -> dict:
    """Execute a probe cell, the notebook up to its first grader.check, and report what each printed."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    first_check = next(i for i, c in enumerate(notebook.cells) if c.cell_type == "code" and "grader.check(" in c.source)
    probe = nbformat.v4.new_code_cell("import importlib.util\nprint('tooling:', importlib.util.find_spec('autograder'))")
    notebook.cells = [probe, *notebook.cells[:first_check + 1]]
    folder = path.rsplit("/", 1)[0]
    NotebookClient(notebook, timeout=300, kernel_name="python3", allow_errors=True,
                   resources={"metadata": {"path": folder}}).execute()
    return {"notebook": path,
            "python": sys.version.split()[0],
            "probe": _text(notebook.cells[0]),
            "init_errors": [o.get("ename", "") for o in notebook.cells[1].outputs if o.get("output_type") == "error"],
            "check": _text(notebook.cells[-1])}


if __name__ == "__main__":
    for notebook_path in sys.argv[1:]:
        print(json.dumps(first_cells_and_check(notebook_path)), flush=True)
