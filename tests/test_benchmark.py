"""The benchmark's own measurements: which notebooks otter times, and what the floor counts.

A ratio against otter is only as fair as the notebooks it compares, and the zero-overhead bound is
only as true as the floor under it, so these parts of benchmarks/run.py are tested like the grader.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from autograder.config import REPO_ROOT


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("benchmark_run", REPO_ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_otter_times_copies_spread_over_the_whole_mix(bench):
    paths = [Path(f"{i:03d}.ipynb") for i in range(28)]
    sample = bench.otter_sample(paths, 7)
    assert [p.name for p in sample] == ["000.ipynb", "004.ipynb", "008.ipynb", "012.ipynb", "016.ipynb",
                                        "020.ipynb", "024.ipynb"]
    # Not the first seven: the canned notebooks are sorted by name, so those would be a biased sample.
    assert sample != paths[:7]
    assert bench.otter_sample(paths, 40) == paths
    assert bench.otter_sample(paths, 0) == []
    assert len(set(bench.otter_sample(paths[:5], 3))) == 3


def _notebook(folder: Path, *sources: str) -> Path:
    folder.mkdir(parents=True)
    path = folder / "n.ipynb"
    path.write_text(json.dumps({"cells": [{"cell_type": "code", "metadata": {}, "outputs": [],
                                           "execution_count": None, "source": s} for s in sources],
                                "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    return path


@pytest.mark.slow
def test_the_floor_runs_every_cell_past_one_that_raises(bench, tmp_path):
    # As the grader does: a mistake that raises in one cell still costs the cells after it.
    path = _notebook(tmp_path / "nb" / "demo", "raise ValueError('a student mistake')",
                     "import time\ntime.sleep(0.6)", "%matplotlib inline\nx = 1", "grader.check('q1')")
    work = tmp_path / "work"
    work.mkdir()
    seconds = bench.floor_seconds(path, work, repeat=2)
    assert 0.6 <= seconds < 5
    # Each run had its own folder, and none is left behind.
    assert not list(work.glob("floor-*"))


@pytest.mark.slow
def test_a_floor_that_cannot_run_says_which_notebook(bench, tmp_path):
    path = _notebook(tmp_path / "nb" / "demo", "import sys\nsys.exit(3)")
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(RuntimeError, match="n.ipynb"):
        bench.floor_seconds(path, work)


@pytest.mark.slow
def test_interleaved_overhead_takes_turns_and_leaves_out_the_slot_start(bench, tmp_path, config):
    # Two rounds after a first copy: two floors and two graded copies, the first copy apart.
    full = ("ok", config.assignments["autograd"].max_points)
    row = bench.interleaved("autograd", config, tmp_path, 2, full)
    assert len(row["interleaved_floors_s"]) == len(row["interleaved_graded_s"]) == 2
    assert row["interleaved_first_s"] > 0 and all(s > 0 for s in row["interleaved_floors_s"])
    assert row["interleaved_ratio"] == pytest.approx(
        (sum(row["interleaved_graded_s"]) / 2) / (sum(row["interleaved_floors_s"]) / 2))
    # Every copy got the batch's score, and a score that differs from it would have shown.
    assert row["interleaved_same_score"]
    assert not bench.interleaved("autograd", config, tmp_path, 2, ("ok", full[1] + 1))["interleaved_same_score"]
    # Its copies and floor folders are gone (the floor's cell list stays in the benchmark's own folder).
    assert not [path for path in tmp_path.iterdir() if path.is_dir()]
