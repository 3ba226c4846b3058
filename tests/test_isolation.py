"""Choosing the isolation layers: which bwrap runs, how the uid layer walls off the host, and that
the grader works through a venv reached by a symlink."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from autograder import isolation
from autograder.config import REPO_ROOT
from autograder.isolation import (BASE_UID, Layers, find_bwrap, readable_by, require_isolation,
                                  traversal_blockers, wall_off)
from conftest import SUBMISSIONS

BWRAP, WHY = find_bwrap()


def fake_bwrap(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "bwrap"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return folder


@pytest.mark.skipif(BWRAP is None, reason=WHY)
def test_a_broken_system_bwrap_falls_back_to_the_bundled_one(tmp_path, monkeypatch):
    """Check that a bwrap on PATH that cannot start is passed over for the bundled binary, by absolute path"""
    monkeypatch.setenv("PATH", f"{fake_bwrap(tmp_path / 'bin', 'exit 1')}:{os.environ['PATH']}")
    path, why = find_bwrap()
    assert path is not None and why == ""
    assert Path(path).is_absolute() and path != str(tmp_path / "bin" / "bwrap")


@pytest.mark.skipif(BWRAP is None, reason=WHY)
def test_a_bwrap_outside_the_system_folders_is_run_by_absolute_path(tmp_path, monkeypatch):
    """Check that a working bwrap found on an unusual PATH is used by its absolute path, so the scrubbed PATH cannot lose it"""
    tools = fake_bwrap(tmp_path / "tools", f'exec {BWRAP} "$@"')
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    path, _ = find_bwrap()
    assert path == str(tmp_path / "tools" / "bwrap")
    from autograder.config import load_config
    from autograder.sandbox import Sandbox

    layers = Layers(bwrap=path)
    with Sandbox("spiral", load_config().defaults.limits, layers, None) as box:
        assert box.initialise(seed=0, torch=False, timeout=60)["op"] == "ready"


def test_no_layer_means_refusal_naming_the_fixes():
    """Check that require_isolation refuses a machine with no layer and names each way to get one"""
    with pytest.raises(isolation.Unisolated, match="--allow-unisolated") as caught:
        require_isolation(Layers(off=("bubblewrap: turned off",)))
    assert "bubblewrap: turned off" in str(caught.value) and "Landlock" in str(caught.value)
    require_isolation(Layers(landlock=1))


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid layer needs root")
@pytest.mark.skipif(bool(traversal_blockers()), reason="other users cannot reach this interpreter")
def test_wall_off_hides_a_repository_from_sandbox_uids(public_tmp):
    """Check that wall_off makes a world-readable repository and results unreadable to a sandbox uid"""
    repo, results = public_tmp / "repo", public_tmp / "results"
    (repo / "solutions" / "spiral").mkdir(parents=True)
    (repo / "solutions" / "spiral" / "verdicts.py").write_text("hidden")
    (repo / "grading.yml").write_text("hidden")
    results.mkdir()
    (results / "grades.csv").write_text("hidden")
    for path in (repo, repo / "solutions", repo / "solutions" / "spiral", results):
        path.chmod(0o755)
    targets = [repo, repo / "grading.yml", repo / "solutions" / "spiral" / "verdicts.py", results / "grades.csv"]
    assert readable_by(BASE_UID, targets) == targets
    changed = wall_off(repo, [results])
    assert repo in changed and readable_by(BASE_UID, targets) == []


@pytest.mark.slow
@pytest.mark.skipif(BWRAP is None, reason=WHY)
def test_grading_through_a_symlinked_venv(tmp_path, config):
    """Check that a venv reached through a symlink grades normally (the sandbox binds its resolved path)"""
    link = tmp_path / "venv-link"
    link.symlink_to(Path(sys.prefix).resolve())
    python = link / Path(sys.executable).relative_to(sys.prefix)
    done = subprocess.run([str(python), "-m", "autograder", "grade", "spiral",
                           str(SUBMISSIONS / "spiral" / "solution.ipynb"), "--out", str(tmp_path / "out")],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    spiral = config.assignment("spiral")
    by_hand = spiral.points_possible - spiral.max_points
    assert f"ok {spiral.max_points:g}/{spiral.points_possible:g} ({by_hand:g} to grade by hand)" in done.stderr, \
        done.stderr[-2000:]
