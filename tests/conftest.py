"""Shared fixtures: the repository's config, and helpers to build configs and notebooks for tests."""
from __future__ import annotations

import copy
import json
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
