"""Canvas and Gradescope bulk downloads: identity from names or metadata, the latest file wins."""
from __future__ import annotations

import unicodedata
import zipfile

from autograder.lms import identify, is_bulk_zip, unpack_bulk_zip, unparsed_canvas_names
from autograder.submissions import discover


def test_canvas_names_and_latest_wins(tmp_path):
    """Check Canvas identity parsing and that the highest submission id is graded"""
    for name in ["leeann_101_5001_spiral.ipynb", "leeann_101_5002_spiral-1.ipynb",
                 "roybob_LATE_102_5003_spiral.ipynb", "notes.txt"]:
        (tmp_path / name).write_text("{}")
    kept, choices = identify(discover([tmp_path]), [tmp_path])
    names = {s.name: s.student for s in kept}
    assert set(names) == {"leeann_101_5002_spiral-1.ipynb", "roybob_LATE_102_5003_spiral.ipynb", "notes.txt"}
    assert names["roybob_LATE_102_5003_spiral.ipynb"]["canvas_id"] == "102"
    assert names["roybob_LATE_102_5003_spiral.ipynb"]["late"] is True
    assert names["notes.txt"] is None
    assert [(c.student, c.kept, c.superseded) for c in choices] == [
        ("leeann", "leeann_101_5002_spiral-1.ipynb", ("leeann_101_5001_spiral.ipynb",))]


def test_canvas_names_with_any_letters(tmp_path):
    """Check that non-ASCII Canvas names keep their identity, late or not, and odd names are reported"""
    decomposed = unicodedata.normalize("NFD", "núñezana_13000_68000_autograd.ipynb")  # as macOS unzips it
    for name in ["müllerjürgen_12360_67910_autograd.ipynb", "çelikayşe_LATE_12361_67911_autograd.ipynb",
                 decomposed, "müller-jürgen_12362_67912_autograd.ipynb", "autograd.ipynb"]:
        (tmp_path / name).write_text("{}")
    submissions = discover([tmp_path])
    kept, _ = identify(submissions, [tmp_path])
    students = {s.student["canvas_id"]: s.student for s in kept if s.student}
    assert students["12360"] == {"name": "müllerjürgen", "canvas_id": "12360", "source": "canvas", "late": False}
    assert students["12361"]["name"] == "çelikayşe" and students["12361"]["late"] is True
    assert students["13000"]["name"] == "núñezana"  # composed again
    assert "12362" not in students, "a hyphen is not in a Canvas name: the file was renamed"
    assert unparsed_canvas_names(submissions) == ["müller-jürgen_12362_67912_autograd.ipynb"]


def test_gradescope_export_metadata(tmp_path):
    """Check Gradescope identity from submission_metadata.yml and the newest upload winning"""
    for folder in ("submission_1", "submission_2", "submission_3"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "spiral.ipynb").write_text("{}")
    (tmp_path / "submission_metadata.yml").write_text("""
submission_1:
  :submitters:
  - :name: Ann Lee
    :sid: '9001'
    :email: ann@example.edu
  :created_at: 2026-10-01 10:00:00.000000000 -07:00
submission_2:
  :submitters:
  - :name: Ann Lee
    :sid: '9001'
    :email: ann@example.edu
  :created_at: 2026-10-02 09:00:00.000000000 -07:00
submission_3:
  :submitters:
  - :name: Bob Roy
    :sid: '9002'
  :created_at: 2026-10-01 11:00:00.000000000 -07:00
""")
    kept, choices = identify(discover([tmp_path]), [tmp_path])
    assert sorted((s.name, s.student["name"], s.student["sis_id"]) for s in kept) == [
        ("submission_2/spiral.ipynb", "Ann Lee", "9001"), ("submission_3/spiral.ipynb", "Bob Roy", "9002")]
    assert choices[0].superseded == ("submission_1/spiral.ipynb",)


def test_bulk_zip_is_recognised_and_unpacked_safely(tmp_path):
    """Check that a Canvas zip is told apart from an otter export and unpacks without path escapes"""
    bulk = tmp_path / "submissions.zip"
    with zipfile.ZipFile(bulk, "w") as archive:
        archive.writestr("leeann_101_5001_spiral.ipynb", "{}")
        archive.writestr("../escape.ipynb", "{}")
    export = tmp_path / "export.zip"
    with zipfile.ZipFile(export, "w") as archive:
        archive.writestr("spiral.ipynb", "{}")
    assert is_bulk_zip(bulk) and not is_bulk_zip(export)
    folder = unpack_bulk_zip(bulk, tmp_path / "out")
    assert sorted(p.name for p in folder.iterdir()) == ["leeann_101_5001_spiral.ipynb"]
    assert not (tmp_path / "out" / "escape.ipynb").exists() and not (tmp_path / "escape.ipynb").exists()
