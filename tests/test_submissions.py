"""Reading submissions: every kind of bad file is rejected with a message naming it."""
from __future__ import annotations

import json
import zipfile

import pytest

from autograder.submissions import InvalidSubmission, discover, read_notebook

CAP = 2 * 2**20
NOTEBOOK = {"cells": [{"cell_type": "code", "source": ["x = 1\n"], "metadata": {}, "outputs": []}],
            "metadata": {"otter": {"assignment_name": "spiral"}}, "nbformat": 4, "nbformat_minor": 5}


def make_zip(path, entries: dict[str, bytes]):
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def test_reads_notebook_and_otter_zip(tmp_path):
    """Check that an .ipynb and an otter export zip (with its .OTTER_LOG ignored) both load"""
    raw = json.dumps(NOTEBOOK).encode()
    (tmp_path / "a.ipynb").write_bytes(raw)
    make_zip(tmp_path / "b.zip", {"spiral.ipynb": raw, ".OTTER_LOG": b"\x80\x04not-unpickled", "spiral.pdf": b"%PDF"})
    for name in ("a.ipynb", "b.zip"):
        notebook, sha = read_notebook(tmp_path / name, CAP)
        assert notebook["cells"][0]["source"] == "x = 1\n" and len(sha) == 64


@pytest.mark.parametrize("name, content, message", [
    ("notes.txt", b"hello", "is not a notebook"),
    ("broken.ipynb", b"{not json", "not valid notebook JSON"),
    ("list.ipynb", b"[1, 2]", "no list of cells"),
    ("weird.ipynb", json.dumps({"cells": [{"cell_type": "widget"}]}).encode(), "cell 0 is malformed"),
    ("big.ipynb", b" " * (CAP + 1), "over the 2 MiB cap"),
])
def test_bad_files(tmp_path, name, content, message):
    """Check that non-notebooks, bad JSON, malformed cells and oversize files are invalid, by name"""
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(InvalidSubmission, match=message) as info:
        read_notebook(path, CAP)
    assert name in str(info.value)


def test_zip_with_two_or_no_notebooks(tmp_path):
    """Check that a zip must hold exactly one notebook"""
    raw = json.dumps(NOTEBOOK).encode()
    make_zip(tmp_path / "two.zip", {"a.ipynb": raw, "b.ipynb": raw})
    make_zip(tmp_path / "none.zip", {"readme.txt": b"hi"})
    with pytest.raises(InvalidSubmission, match="found 2"):
        read_notebook(tmp_path / "two.zip", CAP)
    with pytest.raises(InvalidSubmission, match="found 0"):
        read_notebook(tmp_path / "none.zip", CAP)


def test_zip_bomb_is_not_unpacked(tmp_path):
    """Check that a notebook that unpacks past the cap is rejected without unpacking it all"""
    make_zip(tmp_path / "bomb.zip", {"spiral.ipynb": b"0" * (50 * 2**20)})
    assert (tmp_path / "bomb.zip").stat().st_size < 1 * 2**20
    with pytest.raises(InvalidSubmission, match="unpacks to"):
        read_notebook(tmp_path / "bomb.zip", CAP)


def test_not_a_zip(tmp_path):
    """Check that a file named .zip that is not one gets a clear message"""
    (tmp_path / "fake.zip").write_bytes(b"PK not really")
    with pytest.raises(InvalidSubmission, match="not a readable zip"):
        read_notebook(tmp_path / "fake.zip", CAP)


def test_discover_folders_skips_hidden_files(tmp_path):
    """Check that folders expand to their files, sorted, without hidden or OS files"""
    (tmp_path / "sub").mkdir()
    for name in ("b.ipynb", "a.zip", ".hidden.ipynb", ".DS_Store", "sub/c.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [s.name for s in discover([tmp_path])] == ["a.zip", "b.ipynb", "sub/c.ipynb"]
    with pytest.raises(FileNotFoundError):
        discover([tmp_path / "missing"])
