"""Bulk downloads from learning-management systems: who submitted what, and which file counts.

Canvas "Download Submissions" names each file `<lastfirst>[_LATE]_<user id>_<submission id>_<file>`
(a resubmitted file may end in `-1`, `-2`, ...). `lastfirst` is the name lowercased with every
non-letter dropped, so it may hold any Unicode letter (`müllerjürgen`); the Canvas user id, not the
name, is the student's identity. A file that looks like such a download but does not parse
(`unparsed_canvas_names`) is graded without an identity, and the grade command warns about it.
Gradescope's export has one folder per submission, `submission_<id>/`, and a
`submission_metadata.yml` naming the submitters and the upload time.

Rule when one student has several notebooks: **the latest one wins**: the highest Canvas
submission id (then the highest resubmission number), or the newest Gradescope `:created_at`.
The others are not graded; the grade command lists them.
"""
from __future__ import annotations

import re
import shutil
import tempfile
import unicodedata
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

import yaml

from .submissions import InvalidSubmission, Submission

# [^\W_]: any Unicode letter or digit (Canvas keeps letters of every script); "_" separates the fields.
CANVAS_NAME = re.compile(r"^(?P<name>[^\W_]+)_(?:(?P<late>LATE|late)_)?(?P<user_id>\d+)_(?P<submission_id>\d+)_"
                         r"(?P<file>.+)$")
# What any Canvas download name contains, parsable or not: `_<user id>_<submission id>_<file>`.
CANVAS_LIKE = re.compile(r"_\d+_\d+_[^/]+$")
RESUBMISSION = re.compile(r"-(\d+)(\.[A-Za-z0-9]+)$")
GRADESCOPE_METADATA = "submission_metadata.yml"
NOTEBOOK_SUFFIXES = (".ipynb", ".zip")
MAX_BULK_BYTES = 4 * 2**30
MAX_BULK_FILES = 20_000


@dataclass(frozen=True)
class Choice:
    """Which file counts for a student, and which were set aside."""

    student: str
    kept: str
    superseded: tuple[str, ...]


def is_bulk_zip(path: Path) -> bool:
    """A Canvas or Gradescope bulk download, as opposed to one student's otter export."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = [PurePosixPath(n).name for n in archive.namelist()]
    except (zipfile.BadZipFile, OSError):
        return False
    return GRADESCOPE_METADATA in names or any(_canvas_match(n) for n in names)


def unpack_bulk_zip(path: Path, into: Path | None = None) -> Path:
    """Unpack a bulk download safely (no absolute or `..` paths, size and count caps)."""
    target = Path(into or tempfile.mkdtemp(prefix="nn4e-bulk-")) / path.stem
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
        if len(entries) > MAX_BULK_FILES or sum(e.file_size for e in entries) > MAX_BULK_BYTES:
            raise InvalidSubmission(f"{path.name} is too large to unpack as a bulk download")
        for entry in entries:
            parts = PurePosixPath(entry.filename).parts
            if entry.is_dir() or not parts or parts[0] == "/" or ".." in parts:
                continue
            destination = target.joinpath(*parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(entry) as source, destination.open("wb") as sink:
                shutil.copyfileobj(source, sink)
    return target


def identify(submissions: list[Submission], roots: list[Path]) -> tuple[list[Submission], list[Choice]]:
    """Attach student identity from Canvas names or Gradescope metadata; keep the latest per student."""
    metadata = {}
    for root in roots:
        meta_path = root / GRADESCOPE_METADATA
        if root.is_dir() and meta_path.exists():
            metadata.update(_gradescope_metadata(meta_path, root))
    tagged = []
    for sub in submissions:
        if sub.path.name == GRADESCOPE_METADATA:
            continue
        student, order = _canvas_identity(sub.path.name)
        for folder, (info, created) in metadata.items():
            if folder in sub.path.parents:
                student, order = info, (created,)
        tagged.append(replace(sub, student=student) if student else sub)
        if student:
            tagged[-1] = replace(tagged[-1], order=order)
    return _latest_per_student(tagged)


def unparsed_canvas_names(submissions: list[Submission]) -> list[str]:
    """The submissions whose file name looks like a Canvas download but gives no identity.

    Such a file is still graded, under its file name, but without the student's Canvas id: it
    cannot reach the Canvas gradebook until it is renamed `lastfirst_<user id>_<submission id>_<file>`.
    """
    return sorted(sub.name for sub in submissions
                  if CANVAS_LIKE.search(sub.path.name) and not _canvas_match(sub.path.name))


def _canvas_match(filename: str) -> re.Match | None:
    # macOS and some unzip tools store "ü" decomposed (u + combining diaeresis), which is no letter
    # on its own: compare the composed form.
    return CANVAS_NAME.match(unicodedata.normalize("NFC", filename))


def _canvas_identity(filename: str) -> tuple[dict | None, tuple]:
    match = _canvas_match(filename)
    if not match:
        return None, ()
    resubmission = RESUBMISSION.search(match["file"])
    student = {"name": match["name"], "canvas_id": match["user_id"], "source": "canvas",
               "late": bool(match["late"])}
    return student, (int(match["submission_id"]), int(resubmission.group(1)) if resubmission else 0)


def _gradescope_metadata(path: Path, root: Path) -> dict[Path, tuple[dict, str]]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise InvalidSubmission(f"{path}: not valid YAML ({exc})") from None
    found = {}
    for folder, info in data.items():
        if not isinstance(info, dict):
            continue
        submitters = info.get(":submitters") or info.get("submitters") or []
        first = submitters[0] if submitters and isinstance(submitters[0], dict) else {}
        student = {"name": str(first.get(":name") or first.get("name") or folder),
                   "sis_id": str(first.get(":sid") or first.get("sid") or ""),
                   "login": str(first.get(":email") or first.get("email") or ""), "source": "gradescope"}
        created = str(info.get(":created_at") or info.get("created_at") or "")
        found[root / str(folder)] = (student, created)
    return found


def _latest_per_student(submissions: list[Submission]) -> tuple[list[Submission], list[Choice]]:
    groups: dict[str, list[Submission]] = {}
    kept, choices = [], []
    for sub in submissions:
        if sub.student is None or sub.path.suffix.lower() not in NOTEBOOK_SUFFIXES:
            kept.append(sub)
            continue
        key = sub.student.get("canvas_id") or sub.student.get("sis_id") or sub.student["name"]
        groups.setdefault(key, []).append(sub)
    for group in groups.values():
        ordered = sorted(group, key=lambda s: (s.order, s.name))
        winner = ordered[-1]
        kept.append(winner)
        if len(ordered) > 1:
            choices.append(Choice(winner.student["name"], winner.name, tuple(s.name for s in ordered[:-1])))
    return sorted(kept, key=lambda s: s.name), choices
