"""The student release: the folder (and zip) an instructor hands to students.

It holds the student notebooks, the data they read, a students' requirements file and README,
and nothing else: no solutions, no hidden checks, no grader, no grading.yml.
"""
from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

from .build import ZIP_EPOCH
from .config import REPO_ROOT, GradingConfig
from .data import release_files

STUDENT_REQUIREMENTS = """\
# Packages for the course notebooks (the versions the course was tested with), for Python 3.10 to
# 3.13. numpy and matplotlib dropped Python 3.10 in the versions the course uses on 3.11+, so 3.10
# gets the last release that supports it.
torch==2.14.1
torchvision==0.29.1
numpy==2.4.6; python_version >= "3.11"
numpy==2.2.6; python_version < "3.11"
matplotlib==3.11.2; python_version >= "3.11"
matplotlib==3.10.9; python_version < "3.11"
otter-grader==7.0.0
jupyterlab
"""

STUDENT_README = """\
# {course}: assignments

## Install (once)

Python 3.10, 3.11, 3.12 or 3.13 (`python3 --version`). On a JupyterHub your course set up, the
packages may be installed already; ask your instructor.

    python3 -m venv .venv
    source .venv/bin/activate          # Windows: .venv\\Scripts\\activate
    pip install -r requirements.txt

On Linux, plain `pip install` fetches PyTorch built for NVIDIA GPUs, about 6 GB with its CUDA
libraries. The course runs on a CPU; the CPU-only build is under 1 GB. To get it, install torch
and torchvision from PyTorch's CPU index first, then the rest:

    pip install torch==2.14.1 torchvision==0.29.1 --index-url https://download.pytorch.org/whl/cpu
    pip install -r requirements.txt

(macOS and Windows get a CPU build from plain `pip install` anyway.)

## Work on an assignment

    jupyter lab assignments/<assignment>/<assignment>.ipynb

1. Run the first cell: it sets up the checker.
2. Fill in every `...`. Each question states its points.
3. After each question run its `grader.check("q1")` cell. These public checks test properties
   (shapes, types, thresholds) and never show the answer; the course grader also runs hidden checks.
4. Keep the names the notebook gives you, and do not edit the locked cells.

## Submit

Run *Kernel > Restart & Run All*, then the last cell (`grader.export()`), and upload the zip file it
creates (or the .ipynb) to the course's submission page.

Assignments in this release: {assignments}.
The data the notebooks read is in `datasets/`; they find it on their own.
"""


def release(config: GradingConfig, out: Path, assignments: list[str] | None = None) -> tuple[Path, Path]:
    """Write the release folder and `<out>.zip`; return both paths."""
    ids = assignments or list(config.assignments)
    if out.exists():
        shutil.rmtree(out)
    (out / "assignments").mkdir(parents=True)
    for aid in ids:
        config.assignment(aid)
        source = REPO_ROOT / "assignments" / aid / f"{aid}.ipynb"
        if not source.exists():
            raise FileNotFoundError(f"{source} is missing: run `python -m autograder build {aid}` first")
        (out / "assignments" / aid).mkdir()
        shutil.copy2(source, out / "assignments" / aid / source.name)
    _copy_data(out / "datasets", [name for aid in ids for name in config.assignment(aid).data])
    (out / "requirements.txt").write_text(STUDENT_REQUIREMENTS)
    (out / "README.md").write_text(STUDENT_README.format(course=config.course.name,
                                                         assignments=", ".join(ids)))
    archive = out.with_suffix(".zip")
    _zip_folder(out, archive)
    return out, archive


def _copy_data(target: Path, declared: list[str]) -> None:
    """The data the released assignments declare, laid out where their notebooks look (MNIST
    unpacked for torchvision), so students need no download."""
    target.mkdir(parents=True)
    for relative, source in release_files(declared).items():
        (target / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target / relative)


def _zip_folder(folder: Path, archive: Path) -> None:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(p for p in folder.rglob("*") if p.is_file()):
            info = zipfile.ZipInfo(str(Path(folder.name) / path.relative_to(folder)), date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, path.read_bytes())
