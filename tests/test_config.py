"""grading.yml validation: the real file passes, and bad files fail with the key path named."""
from __future__ import annotations

import pytest
import yaml

from autograder.config import ConfigError, load_config


def write(tmp_path, data) -> str:
    path = tmp_path / "grading.yml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return path


def test_repository_config_is_valid(config):
    """Check that the committed grading.yml validates and every assignment has points"""
    assert config.assignments
    for assignment in config.assignments.values():
        assert assignment.max_points > 0


@pytest.mark.parametrize("mutate, where, what", [
    (lambda d: d["defaults"]["limits"].update(cell_timeout=5), "defaults.limits.cell_timeout", "unknown key"),
    (lambda d: d["assignments"]["spiral"]["questions"]["q1"].update(points="two"), "assignments.spiral.questions.q1.points", "number"),
    (lambda d: d["defaults"].pop("seed"), "defaults.seed", "missing"),
    (lambda d: d["assignments"]["spiral"].update(notebook="/abs/spiral.ipynb"), "assignments.spiral.notebook", "relative"),
    (lambda d: d["assignments"]["spiral"]["questions"].update({"Question 7": {"points": 1}}), "assignments.spiral.questions", "q1"),
    (lambda d: d["assignments"].update(cnn=d["assignments"]["spiral"]), "assignments.cnn.notebook", "cnn.ipynb"),
    (lambda d: d["assignments"].update(CNN_1=d["assignments"]["spiral"]), "'CNN_1'", "lower-case words"),
    (lambda d: d["assignments"]["spiral"].update(data=["../grading.yml"]), "assignments.spiral.data", "inside datasets/"),
    (lambda d: d["defaults"].update(device="gpu"), "defaults.device", "'cuda', 'cpu' or 'auto'"),
    (lambda d: d["defaults"]["limits"].update(memory_mb=-1), "defaults.limits.memory_mb", "greater than or equal"),
    (lambda d: d["defaults"]["limits"].update(disk_mb=4), "defaults.limits.disk_mb", "greater than or equal"),
    (lambda d: d["assignments"]["spiral"].setdefault("limits", {}).update(max_files=10),
     "assignments.spiral.limits.max_files", "greater than or equal"),
    (lambda d: d["defaults"].update(min_free_disk_mb=-5), "defaults.min_free_disk_mb", "greater than or equal"),
    (lambda d: d["assignments"]["spiral"]["thresholds"].update({"Min-Acc": 0.5}), "assignments.spiral.thresholds", "lower_snake_case"),
])
def test_bad_config_names_key_path(tmp_path, raw_config, mutate, where, what):
    """Check that each kind of bad config is rejected with its key path and what was expected"""
    import copy

    data = copy.deepcopy(raw_config)
    mutate(data)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, data))
    message = str(info.value)
    assert where in message and what in message, message


def test_unreadable_yaml_and_missing_file(tmp_path):
    """Check that YAML syntax errors and a missing file get clear messages"""
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "course: [unclosed"))
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yml")


def test_limits_override_per_assignment(raw_config):
    """Check that an assignment's limits override only the keys it sets"""
    from conftest import config_with

    config = config_with(raw_config, **{"assignments.spiral.limits": {"cell_timeout_s": 7}})
    limits = config.limits_for("spiral")
    assert limits.cell_timeout_s == 7
    assert limits.memory_mb == config.defaults.limits.memory_mb


def test_validate_command(capsys):
    """Check that `validate` accepts the repository config"""
    from autograder.cli import main

    assert main(["validate"]) == 0
    assert "OK" in capsys.readouterr().out
