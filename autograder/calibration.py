"""Measure an assignment's thresholds and tolerances over seeds: `python -m autograder calibrate ID`.

Each assignment's `solutions/<id>/calibrate.py` defines `calibrate(seed) -> {measurement: value}`:
one seed's measurements, computed with the assignment's own reference (reference.py) and verdict
distances (verdicts.py), so what is calibrated is what is graded. This module runs it over seeds
and prints the table that `docs/calibration.md` quotes: each measurement's min, mean and max.
"""
from __future__ import annotations

import importlib
import math
import sys
import time

from .checks import assignment_package
from .config import GradingConfig

DEFAULT_SEEDS = 10


class CalibrationError(ValueError):
    """An assignment has no usable calibration hook; the message says what to add."""


def hook(aid: str, config: GradingConfig):
    """The assignment's `calibrate.py` module."""
    package = assignment_package(aid, config.assignment(aid))
    try:
        module = importlib.import_module(f"{package}.calibrate")
    except ModuleNotFoundError as exc:
        if exc.name != f"{package}.calibrate":
            raise
        raise CalibrationError(f"{aid} has no calibrate.py next to its master notebook: add one with "
                               "`def calibrate(seed) -> dict[str, float]` (see docs/authoring.md)") from None
    if not callable(getattr(module, "calibrate", None)):
        raise CalibrationError(f"{module.__file__} must define `def calibrate(seed) -> dict[str, float]`")
    return module


def run(aid: str, config: GradingConfig, seeds: int | None = None, first_seed: int = 0,
        progress=sys.stderr) -> dict[str, list[float]]:
    """{measurement: [value per seed]}; one progress line per seed on `progress`."""
    module = hook(aid, config)
    count = seeds or getattr(module, "DEFAULT_SEEDS", DEFAULT_SEEDS)
    values: dict[str, list[float]] = {}
    started = time.monotonic()
    for number, seed in enumerate(range(first_seed, first_seed + count), 1):
        measured = module.calibrate(seed)
        for name, value in measured.items():
            values.setdefault(name, []).append(float(value))
        if progress:
            elapsed = time.monotonic() - started
            print(f"{aid}: seed {seed} done ({number}/{count}, {elapsed:.0f} s, "
                  f"ETA {elapsed / number * (count - number):.0f} s)", file=progress, flush=True)
    return values


def table(values: dict[str, list[float]]) -> str:
    """A markdown table of each measurement's min, mean and max over the seeds."""
    lines = ["| measurement | min | mean | max | seeds |", "| --- | ---: | ---: | ---: | ---: |"]
    for name, series in values.items():
        finite = [v for v in series if math.isfinite(v)]
        low, mean, high = (min(finite), sum(finite) / len(finite), max(finite)) if finite else (math.nan,) * 3
        lines.append(f"| {name} | {low:.4g} | {mean:.4g} | {high:.4g} | {len(series)} |")
    return "\n".join(lines)
