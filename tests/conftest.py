"""Shared fixtures: the repository's config, helpers to build configs and notebooks, a decoy
repository for hostile cases, and a session guard: the suite fails if it changed the checkout, the
home folder or the shared temporary folders in a way it did not itself undo."""
from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
import yaml

from autograder.config import DEFAULT_CONFIG, REPO_ROOT, GradingConfig, load_config

SUBMISSIONS = REPO_ROOT / "tests" / "submissions"


@pytest.fixture(scope="session")
def config() -> GradingConfig:
    return load_config()


@pytest.fixture(scope="session")
def raw_config() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG.read_text())


def config_with(raw: dict, **changes) -> GradingConfig:
    """The repository config with nested changes, e.g. config_with(raw, **{"assignments.spiral.limits": {...}})."""
    data = copy.deepcopy(raw)
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = data
        for key in path:
            node = node.setdefault(key, {})
        node[last] = value
    return GradingConfig.model_validate(data)


def canned_ids() -> list[str]:
    return sorted(p.name for p in SUBMISSIONS.iterdir() if p.is_dir() and (SUBMISSIONS / f"{p.name}.yml").exists())


def load_notebook(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def write_notebook(notebook: dict, path: Path) -> Path:
    path.write_text(json.dumps(notebook), encoding="utf-8")
    return path


def decoy_repository(root: Path) -> Path:
    """A throwaway tree laid out like the repository, for hostile cases to aim at instead of the checkout."""
    for relative in ("grading.yml", "solutions/spiral/verdicts.py", "datasets/spiral.csv",
                     "tests/submissions/spiral/solution.ipynb"):
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"decoy {relative}\n")
    return root


def decoy_intact(root: Path) -> bool:
    return all((root / r).read_text() == f"decoy {r}\n" for r in
               ("grading.yml", "solutions/spiral/verdicts.py", "datasets/spiral.csv",
                "tests/submissions/spiral/solution.ipynb"))


@pytest.fixture()
def public_tmp():
    """A temporary folder other users can reach (the suite's own temporary root is private)."""
    folder = Path(tempfile.mkdtemp(prefix="nn4e-public-"))
    os.chmod(folder, 0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def real_home() -> Path:
    """The home folder the suite was started with (the suite itself runs with a private one)."""
    return Path(_GUARD.get("home") or Path.home())


def suite_folder(name: str) -> Path:
    """A folder in the suite's private temporary root, removed when the session ends."""
    folder = Path(_GUARD.get("root") or tempfile.gettempdir()) / name
    folder.mkdir(exist_ok=True)
    return folder


def installed_python(version: str) -> str | None:
    """A working Python `version` (e.g. "3.10") on this machine: under pyenv, or on PATH."""
    pyenv = Path(os.environ.get("PYENV_ROOT", real_home() / ".pyenv"))
    try:
        candidates = [str(p) for p in sorted(pyenv.glob(f"versions/{version}.*/bin/python{version}"))]
    except OSError:  # another user's pyenv
        candidates = []
    candidates += [found] if (found := shutil.which(f"python{version}")) else []
    for candidate in candidates:  # a pyenv shim on PATH fails when that version is not selected
        if subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return None


# -- the session guard ----------------------------------------------------------------------------
SHARED_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm")
_GUARD: dict = {}


def _snapshot() -> dict:
    def names(folder: Path, depth: int) -> set[str]:
        found = set()
        try:
            for entry in folder.iterdir():
                found.add(str(entry))
                if depth > 1 and entry.is_dir() and not entry.is_symlink():
                    found |= names(entry, depth - 1)
        except OSError:
            pass
        return found

    status = subprocess.run(["git", "status", "--porcelain", "--ignored=no"], cwd=REPO_ROOT,
                            capture_output=True, text=True).stdout
    shared = set().union(*(names(Path(f), 1) for f in SHARED_FOLDERS))
    # A checkout inside the home folder is watched by git status (its ignored caches may change).
    home = {name for name in names(Path(_GUARD["home"]), 2) if not Path(name).is_relative_to(REPO_ROOT)}
    return {"git": status, "home": home, "shared": shared}


def pytest_addoption(parser):
    parser.addoption(
        "--start-modes", default="forked,warm",
        help="how the adversarial corpus starts its sandboxes: forked, warm or both (comma-separated; "
             "default both). The corpus is graded with the first, the cases that follow another with "
             "each. CI's runs with fewer sandbox layers take one each.")


def pytest_configure(config):
    """Give the suite its own temporary root and home, then record what the host looks like."""
    if hasattr(config, "workerinput") or _GUARD:
        return
    _GUARD["home"] = os.environ.get("HOME", str(Path.home()))
    _GUARD["root"] = Path(tempfile.mkdtemp(prefix="nn4e-tests-"))
    os.chmod(_GUARD["root"], 0o700)  # results and submissions written here stay private to us
    config.option.basetemp = str(_GUARD["root"] / "pytest")
    os.environ["HOME"] = str(_GUARD["root"] / "home")  # matplotlib's cache and the like land here
    Path(os.environ["HOME"]).mkdir()
    # Verdicts create torch optimizers in this process, which make torch's compiler cache folder.
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(_GUARD["root"] / "torch-cache"))
    _GUARD["before"] = _snapshot()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run loudly if the suite left anything behind in the checkout, the home folder or /tmp."""
    if "before" not in _GUARD:
        return
    os.environ["HOME"] = _GUARD["home"]
    shutil.rmtree(_GUARD["root"], ignore_errors=True)
    before, after = _GUARD["before"], _snapshot()
    problems = []
    if after["git"] != before["git"]:
        problems.append("the checkout changed (git status --porcelain):\n" + after["git"])
    for key in ("home", "shared"):
        new = sorted(after[key] - before[key])
        if new:
            problems.append(f"new in the {'home folder' if key == 'home' else 'shared temporary folders'}: "
                            + ", ".join(new[:20]))
    if problems:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = "SESSION GUARD: the test suite changed its host\n  " + "\n  ".join(problems)
        if reporter:
            reporter.write_line(text, red=True, bold=True)
        else:
            print(text)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A Dask LocalCluster of two single-thread worker processes (restarted by their nannies when
    killed), for one test module: its threads and processes do not outlive the module. The scheduler reports a lost worker's task at once (allowed-failures 0), so the
    grader's own retry is what the tests see. The workers' temporary folders are the fixture's: a
    killed worker cannot clean its own up."""
    dask = pytest.importorskip("dask")
    distributed = pytest.importorskip("distributed")
    scratch = tmp_path_factory.mktemp("dask")
    with dask.config.set({"distributed.scheduler.allowed-failures": 0, "temporary-directory": str(scratch)}):
        with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                      local_directory=str(scratch), env={"TMPDIR": str(scratch), "NN4E_CORES": "1"}) as cluster:
            yield cluster
