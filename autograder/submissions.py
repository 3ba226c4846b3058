"""Find submissions on disk and read each one into a notebook dict, or a clear reason it is invalid.

A submission is an `.ipynb`, an otter export `.zip` holding exactly one notebook, or a folder of
them. Nothing here executes or unpickles submission content: an otter `.OTTER_LOG` is ignored.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

MAX_ZIP_ENTRIES = 200
IGNORED_NAMES = {".DS_Store", "Thumbs.db"}


class InvalidSubmission(Exception):
    """The file cannot be graded; the message names it and says what to do."""


@dataclass(frozen=True)
class Submission:
    """One file to grade. `name` is what the grades CSV shows; `student` comes from LMS names."""

    path: Path
    name: str
    student: dict | None = None
    order: tuple = ()  # for "latest wins": larger is later


def discover(paths: list[Path]) -> list[Submission]:
    """Expand files and folders into submissions, in a stable order. Missing paths raise."""
    found: list[Submission] = []
    for path in paths:
        if path.is_dir():
            for item in sorted(p for p in path.rglob("*") if p.is_file()):
                relative = item.relative_to(path)
                if any(part.startswith(".") or part == "__MACOSX" for part in relative.parts):
                    continue
                if item.name in IGNORED_NAMES:
                    continue
                found.append(Submission(item, str(relative)))
        elif path.is_file():
            found.append(Submission(path, path.name))
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    names = [s.name for s in found]
    if len(set(names)) != len(names):
        # Two folders with the same file name: fall back to the paths as given.
        found = [Submission(s.path, str(s.path)) for s in found]
    return found


def parse_shard(text: str) -> tuple[int, int]:
    """`I/N` (1 <= I <= N) as (I, N); ValueError with what to write otherwise."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: write I/N, e.g. 3/10 for the third of ten shards") from None
    if not 1 <= index <= count:
        raise ValueError(f"--shard {text!r}: I must be between 1 and N (here N = {count})")
    return index, count


def in_shard(name: str, index: int, count: int) -> bool:
    """Whether the submission named `name` belongs to shard `index` of `count` (numbered from 1).

    Decided by a hash of the name alone, so every shard agrees without talking to the others and a
    submission stays in its shard when others are added (a late one, a second download).
    """
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count == index - 1


def read_notebook(path: Path, max_bytes: int) -> tuple[dict, str]:
    """Return (notebook, sha256 of the notebook bytes). Raise InvalidSubmission with a clear reason."""
    suffix = path.suffix.lower()
    if suffix == ".ipynb":
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidSubmission(
                f"{path.name} is {size / 2**20:.1f} MiB, over the {max_bytes / 2**20:.0f} MiB cap: "
                "clear the outputs (Kernel > Restart & Clear Output), save and resubmit")
        raw = path.read_bytes()
    elif suffix == ".zip":
        raw = _notebook_from_zip(path, max_bytes)
    else:
        raise InvalidSubmission(
            f"{path.name} is not a notebook: submit the .ipynb file (or the .zip that grader.export() makes)")
    return parse_notebook(raw, path.name), hashlib.sha256(raw).hexdigest()


def _notebook_from_zip(path: Path, max_bytes: int) -> bytes:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise InvalidSubmission(f"{path.name} is not a readable zip file: re-export it with grader.export()") from None
    with archive:
        entries = archive.infolist()
        if len(entries) > MAX_ZIP_ENTRIES:
            raise InvalidSubmission(f"{path.name} holds {len(entries)} files; an export holds a handful")
        notebooks = [e for e in entries if e.filename.endswith(".ipynb") and not e.is_dir()
                     and "__MACOSX" not in e.filename and not Path(e.filename).name.startswith(".")]
        if len(notebooks) != 1:
            listed = ", ".join(e.filename for e in notebooks) or "none"
            raise InvalidSubmission(
                f"{path.name} must hold exactly one notebook, found {len(notebooks)} ({listed}): "
                "submit the zip made by grader.export(), or the .ipynb itself")
        entry = notebooks[0]
        if entry.file_size > max_bytes:
            raise InvalidSubmission(f"{path.name}: {entry.filename} unpacks to {entry.file_size / 2**20:.0f} MiB, "
                                    f"over the {max_bytes / 2**20:.0f} MiB cap")
        # Read at most max_bytes + 1, whatever the header claims: a zip bomb lies about its size.
        with archive.open(entry) as handle:
            try:
                data = handle.read(max_bytes + 1)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise InvalidSubmission(f"{path.name}: cannot unpack {entry.filename} ({exc})") from None
        if len(data) > max_bytes:
            raise InvalidSubmission(f"{path.name}: {entry.filename} unpacks to more than "
                                    f"{max_bytes / 2**20:.0f} MiB (the cap)")
        return data


def parse_notebook(raw: bytes, label: str) -> dict:
    """Parse notebook JSON and check the structure the grader relies on."""
    try:
        notebook = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidSubmission(f"{label} is not valid notebook JSON ({exc}); "
                                "open it in Jupyter, save it again and resubmit") from None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        raise InvalidSubmission(f"{label} has no list of cells; it is not a Jupyter notebook")
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") not in ("code", "markdown", "raw"):
            raise InvalidSubmission(f"{label}: cell {index} is malformed; re-save the notebook in Jupyter")
        source = cell.get("source", "")
        if isinstance(source, list):
            if not all(isinstance(line, str) for line in source):
                raise InvalidSubmission(f"{label}: cell {index} has a malformed source")
            cell["source"] = "".join(source)
        elif not isinstance(source, str):
            raise InvalidSubmission(f"{label}: cell {index} has a malformed source")
    return notebook


def assignment_name(notebook: dict) -> str | None:
    """The assignment the notebook was built for, as otter records it in the metadata."""
    otter = notebook.get("metadata", {}).get("otter", {})
    name = otter.get("assignment_name") if isinstance(otter, dict) else None
    return name if isinstance(name, str) else None
