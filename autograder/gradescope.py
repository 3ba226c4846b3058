"""Gradescope: an autograder zip per assignment that runs this project's grader.

Gradescope's contract: the zip holds `setup.sh` (run once when the image is built) and
`run_autograder` (run per submission, with the files in /autograder/submission), which writes
/autograder/results/results.json. Ours installs the pinned environment (which bundles bubblewrap),
makes the source, the submission and the results private to root (Gradescope unpacks them
world-readable, and the sandbox uid must not read the hidden checks), then runs
`python -m autograder gradescope-run`, which grades the submission in the sandbox and writes one
test per question, with each question's visibility taken from grading.yml.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import zipfile
from pathlib import Path

from .build import ZIP_EPOCH
from .config import REPO_ROOT, GradingConfig
from .data import declared_sums
from .results import SubmissionResult

SETUP_SH = """#!/usr/bin/env bash
# Runs once when Gradescope builds the autograder image.
set -euo pipefail
apt-get update -qq
apt-get install -y -qq python3-venv >/dev/null
python3 -m venv /autograder/venv
/autograder/venv/bin/pip install --quiet -r /autograder/source/requirements.lock
cd /autograder/source && /autograder/venv/bin/python -m autograder prepare-data
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Runs once per submission: grade /autograder/submission, write /autograder/results/results.json.
set -uo pipefail
PYTHON="${{NN4E_PYTHON:-/autograder/venv/bin/python}}"  # override only to test outside Gradescope
# Student code may run as another uid: nothing it must not see stays readable by other users.
umask 077
chmod -R go-rwx /autograder/source /autograder/submission /autograder/results
cd /autograder/source
"$PYTHON" -m autograder gradescope-run {aid} \\
    --submission /autograder/submission --results /autograder/results/results.json
"""

SOURCE_FILES = ("grading.yml", "requirements.lock")


def build_gradescope_zip(aid: str, config: GradingConfig, out: Path) -> Path:
    """Write `<out>/<aid>-gradescope.zip`: grader, hidden checks, release notebook, data, scripts.

    Gradescope unpacks it into /autograder/source and copies run_autograder to /autograder.
    """
    assignment = config.assignment(aid)
    files: dict[str, bytes] = {"setup.sh": SETUP_SH.encode(), "run_autograder": RUN_AUTOGRADER.format(aid=aid).encode()}
    package = REPO_ROOT / "autograder"
    for path in sorted(package.glob("*.py")):
        files[f"autograder/{path.name}"] = path.read_bytes()
    checks = REPO_ROOT / Path(assignment.notebook).parent
    for path in sorted(checks.glob("*.py")):  # the assignment's check package
        files[f"{checks.relative_to(REPO_ROOT).as_posix()}/{path.name}"] = path.read_bytes()
    files[f"assignments/{aid}/{aid}.ipynb"] = (REPO_ROOT / "assignments" / aid / f"{aid}.ipynb").read_bytes()
    for name in SOURCE_FILES:
        files[name] = (REPO_ROOT / name).read_bytes()
    data = REPO_ROOT / "datasets"
    for name in assignment.data:  # what grading.yml declares this assignment reads, and their checksums
        files[f"datasets/{name}"] = (data / name).read_bytes()
    files["datasets/SHA256SUMS"] = (declared_sums(assignment.data, data) + "\n").encode()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{aid}-gradescope.zip"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (0o755 if name in ("setup.sh", "run_autograder") else 0o644) << 16
            zf.writestr(info, files[name])
    return target


def results_json(result: SubmissionResult, config: GradingConfig, aid: str) -> dict:
    """Gradescope's results.json for one graded submission: one test per question."""
    assignment = config.assignment(aid)
    tests = []
    for number, (qid, row) in enumerate(result.questions.items(), start=1):
        if row.manual:
            continue  # graded by hand in Gradescope's own rubric
        lines = [f"{c.description}: {'passed' if c.passed else 'failed. ' + c.message}"
                 + (f" (what to try: {c.hint})" if not c.passed and c.hint else "") for c in row.checks]
        tests.append({"name": qid, "number": str(number), "score": row.points or 0.0,
                      "max_score": row.max_points, "visibility": assignment.questions[qid].visibility,
                      "status": "passed" if row.full else "failed", "output": "\n".join(lines) or row.feedback})
    output = f"Status: {result.status}." + (f" {result.message}" if result.message else "")
    return {"score": result.total, "output": output, "visibility": "visible", "stdout_visibility": "hidden",
            "tests": tests}


def run(aid: str, config: GradingConfig, submission_dir: Path, results_path: Path) -> dict:
    """Grade the one notebook (or export zip) in `submission_dir` and write results.json."""
    from .grade import grade_batch, make_job
    from .submissions import discover

    candidates = [s for s in discover([submission_dir]) if s.path.suffix in (".ipynb", ".zip")]
    results_path.parent.mkdir(parents=True, exist_ok=True)
    if len(candidates) != 1:
        found = ", ".join(s.name for s in candidates) or "none"
        payload = {"score": 0.0, "output": f"Submit exactly one notebook (.ipynb) or grader.export() zip; found: {found}.",
                   "visibility": "visible", "tests": []}
    else:
        with tempfile.TemporaryDirectory(prefix="nn4e-gradescope-") as tmp:
            result = grade_batch(make_job(aid, config, jobs=1), candidates, Path(tmp), progress=False)[0]
        payload = results_json(result, config, aid)
    results_path.write_text(json.dumps(payload, indent=1))
    return payload


def unpack_like_gradescope(zip_path: Path, root: Path) -> Path:
    """Lay out `root` as Gradescope lays out /autograder: source/, submission/, results/, run_autograder."""
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    for folder in ("submission", "results"):
        (root / folder).mkdir(exist_ok=True)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "run_autograder").chmod(0o755)
    return root
