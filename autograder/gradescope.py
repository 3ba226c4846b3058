"""Gradescope: an autograder zip per assignment that runs this project's grader.

Gradescope's contract: the zip holds `setup.sh` (run once when the image is built) and
`run_autograder` (run per submission, with the files in /autograder/submission), which writes
/autograder/results/results.json. Our setup.sh finds or installs (with uv) a Python the project
supports and installs the pinned environment (which bundles bubblewrap; torch's CPU build when the
image has no NVIDIA GPU). run_autograder makes the source, the submission and the results private
to root (Gradescope unpacks them world-readable, and the sandbox uid must not read the hidden
checks), then runs `python -m autograder gradescope-run`, which grades the submission in the
sandbox and writes one test per question, with each question's visibility taken from grading.yml.
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
from .results import Status, SubmissionResult
from .submissions import InvalidSubmission, Submission, discover, read_notebook

SETUP_SH = r"""#!/usr/bin/env bash
# Runs once when Gradescope builds the autograder image. It makes /autograder/venv with a Python the
# grader supports (the image's python3 when it is 3.11.2 to 3.13, else a 3.11 that uv installs),
# installs requirements.lock there (torch's CPU build when the image has no NVIDIA GPU), then
# checks the data. Any failure stops it and says which step failed.
set -Eeuo pipefail
ROOT="${NN4E_ROOT:-/autograder}"  # override only to test this script outside Gradescope
VENV="$ROOT/venv"
LOCK="$ROOT/source/requirements.lock"
NEED="3.11.2 to 3.13"
TORCH_CPU_INDEX="https://download.pytorch.org/whl/cpu"
STEP="starting"
trap 'echo "setup.sh: FAILED (exit status $?) while $STEP; the lines above say why." >&2' ERR

step() { STEP="$1"; echo "setup.sh: $1"; }
fail() { echo "setup.sh: FAILED while $STEP: $1" >&2; exit 1; }

# "3.10.12 no": the interpreter's version and whether the grader supports it (runs on any python).
probe() {
    "$1" -c 'import sys; v = tuple(sys.version_info[:3])
print("%d.%d.%d %s" % (v + ("yes" if (3, 11, 2) <= v < (3, 14) else "no",)))'
}

# Only called when the image lacks something: apt-get is skipped when python3, venv and pip are there.
apt_install() {
    command -v apt-get >/dev/null \
        || fail "this image lacks $* and has no apt-get to install them; use an Ubuntu base image"
    step "installing $* with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "$@" >/dev/null
}

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 || [ -e /dev/nvidia0 ]; }

uv_failed() { fail "the image's python3 is $FOUND; the grader needs $NEED, and installing one with uv failed: $1"; }

# A Python 3.11 from uv, for images whose python3 is too old (Ubuntu 22.04: 3.10) or too new.
venv_with_uv() {
    step "the image's python3 is $FOUND, not $NEED: installing Python 3.11 with uv"
    if command -v uv >/dev/null; then
        UV=(uv)
    else
        if ! python3 -m pip --version >/dev/null 2>&1; then apt_install python3-pip; fi
        step "installing uv from PyPI with the image's python3 -m pip"
        # An image whose python3 is too new marks it externally managed (PEP 668); older pips ignore this.
        PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet uv \
            || uv_failed "\`python3 -m pip install uv\` exited with status $? (its output is above)"
        UV=(python3 -m uv)
    fi
    # Under $ROOT, not root's home: the sandbox uid must be able to reach the interpreter.
    export UV_PYTHON_INSTALL_DIR="$ROOT/python"
    step "installing Python 3.11 with uv into $UV_PYTHON_INSTALL_DIR"
    "${UV[@]}" python install 3.11 \
        || uv_failed "\`uv python install 3.11\` exited with status $? (its output is above)"
    step "making $VENV with uv's Python 3.11"
    "${UV[@]}" venv --seed --python 3.11 --python-preference only-managed "$VENV" \
        || uv_failed "\`uv venv --python 3.11\` exited with status $? (its output is above)"
}

step "looking for python3"
if ! command -v python3 >/dev/null; then apt_install python3 python3-venv; fi
PROBE=$(probe python3) || fail "the image's python3 does not run"
FOUND="${PROBE% *}"
if [ "${PROBE#* }" = yes ]; then
    step "making $VENV with the image's python3 $FOUND"
    if ! python3 -c 'import ensurepip, venv' 2>/dev/null; then apt_install python3-venv; fi
    python3 -m venv "$VENV"
else
    venv_with_uv
fi
PYTHON="$VENV/bin/python"
PROBE=$(probe "$PYTHON") || fail "$PYTHON does not run"
[ "${PROBE#* }" = yes ] || fail "$PYTHON is Python ${PROBE% *}; the grader needs $NEED"

if has_gpu; then
    step "installing requirements.lock as is (an NVIDIA GPU is present: torch's CUDA build)"
    "$PYTHON" -m pip install --quiet -r "$LOCK"
else
    # As the students' README says: the CPU build is under 1 GB, the CUDA one about 6 GB.
    step "installing torch's CPU build from $TORCH_CPU_INDEX (no NVIDIA GPU on this image)"
    TORCH=$(grep -E '^(torch|torchvision)==' "$LOCK" | cut -d' ' -f1 | tr '\n' ' ') || true
    case "$TORCH" in
        "torch=="*" torchvision=="*) ;;
        *) fail "$LOCK must pin torch and torchvision (found: ${TORCH:-neither})" ;;
    esac
    # Its wheels are versioned like 2.14.1+cpu, which satisfy the lock's torch==2.14.1; the lock
    # brings their dependencies, at its own versions.
    # shellcheck disable=SC2086  # one argument per pin
    "$PYTHON" -m pip install --quiet --no-deps --index-url "$TORCH_CPU_INDEX" $TORCH
    step "installing requirements.lock without the CUDA libraries (nvidia-*, cuda-*, triton)"
    grep -v -E '^(nvidia-|cuda-|triton==)' "$LOCK" >"$VENV/requirements-cpu.lock"
    "$PYTHON" -m pip install --quiet -r "$VENV/requirements-cpu.lock"
fi

step "checking the data (prepare-data)"
cd "$ROOT/source"
"$PYTHON" -m autograder prepare-data
echo "setup.sh: done: $PYTHON is Python ${PROBE% *}"
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
    """Grade the notebook (or export zip) in `submission_dir` and write results.json.

    When the student uploaded both a notebook and its export zip, `choose_submission` picks one and
    results.json's "output" says which and why.
    """
    from .grade import GraderBroken, grade_batch, make_job

    results_path.parent.mkdir(parents=True, exist_ok=True)
    max_bytes = int(config.limits_for(aid).max_notebook_mb * 2**20)
    try:
        chosen, why = choose_submission(discover([submission_dir]), max_bytes)
    except InvalidSubmission as exc:
        payload = {"score": 0.0, "output": str(exc), "visibility": "visible", "tests": []}
    else:
        with tempfile.TemporaryDirectory(prefix="nn4e-gradescope-") as tmp:
            result = grade_batch(make_job(aid, config, jobs=1), [chosen], Path(tmp), progress=False)[0]
        if result.status == Status.GRADER_ERROR:  # no score at all: Gradescope shows a failed run to rerun
            raise GraderBroken(f"{result.submission}: {result.message}")
        payload = results_json(result, config, aid)
        if why:
            payload["output"] = f"{why}\n{payload['output']}"
    results_path.write_text(json.dumps(payload, indent=1))
    return payload


def choose_submission(uploaded: list[Submission], max_bytes: int) -> tuple[Submission, str]:
    """The one upload to grade, and a sentence saying why ("" when there was only one).

    Among the uploaded `.ipynb` and `.zip` files: one is graded as is. Two that hold the same
    notebook (the same bytes, or the same cells) are a notebook and its grader.export() zip: the zip
    is graded, the file the course asks for. Two different ones: the newer (modification time; on a
    tie, the zip). None, or three or more, raise `InvalidSubmission` with what to upload instead.
    """
    candidates = [s for s in uploaded if s.path.suffix.lower() in (".ipynb", ".zip")]
    if not candidates:
        others = ", ".join(s.name for s in uploaded) or "no files"
        raise InvalidSubmission(f"No notebook to grade (uploaded: {others}): upload your .ipynb file or the zip "
                                "that grader.export() makes.")
    if len(candidates) > 2:
        listed = ", ".join(s.name for s in candidates)
        raise InvalidSubmission(f"{len(candidates)} notebooks or zips uploaded ({listed}): "
                                "upload only the one to grade (the .ipynb, or the zip that grader.export() makes).")
    if len(candidates) == 1:
        return candidates[0], ""
    # Zips first, so that both "same notebook" and a tie in time pick the export.
    first, second = sorted(candidates, key=lambda s: s.path.suffix.lower() != ".zip")
    if _same_notebook(first.path, second.path, max_bytes):
        return first, f"Graded {first.name}: {second.name} holds the same notebook."
    newer, older = sorted((first, second), key=lambda s: -s.path.stat().st_mtime)
    if newer.path.stat().st_mtime == older.path.stat().st_mtime:
        return first, f"Graded {first.name}: {second.name} holds a different notebook, modified at the same time."
    return newer, f"Graded {newer.name}, the newer upload: {older.name} holds a different, older notebook."


def _same_notebook(a: Path, b: Path, max_bytes: int) -> bool:
    """Whether two uploads hold the same notebook: the same bytes, or the same cells (type and source).
    An unreadable one is never the same (the newer upload is graded, and its errors reported)."""
    try:
        (book_a, sha_a), (book_b, sha_b) = read_notebook(a, max_bytes), read_notebook(b, max_bytes)
    except InvalidSubmission:
        return False
    cells = [[(c["cell_type"], c["source"]) for c in book["cells"]] for book in (book_a, book_b)]
    return sha_a == sha_b or cells[0] == cells[1]


def unpack_like_gradescope(zip_path: Path, root: Path) -> Path:
    """Lay out `root` as Gradescope lays out /autograder: source/, submission/, results/, run_autograder."""
    with zipfile.ZipFile(zip_path) as zf:
        zf.extractall(root / "source")
    for folder in ("submission", "results"):
        (root / folder).mkdir(exist_ok=True)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "run_autograder").chmod(0o755)
    return root
