"""Installing: the interpreter check that runs before anything is installed, and the universal lock."""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

import pytest

from autograder.config import REPO_ROOT
from conftest import installed_python

spec = importlib.util.spec_from_file_location("check_python", REPO_ROOT / "tools" / "check_python.py")
check_python = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check_python)


@pytest.mark.parametrize("version, supported", [((3, 10, 13), False), ((3, 11, 0), False), ((3, 11, 1), False),
                                                ((3, 11, 2), True), ((3, 12, 1), True), ((3, 13, 9), True),
                                                ((3, 14, 0), False)])
def test_interpreter_check(monkeypatch, capsys, version, supported):
    """Check that only Python 3.11.2 to 3.13 passes, and a refusal names the versions and how to choose one"""
    monkeypatch.setattr(sys, "version_info", (*version, "final", 0))
    assert check_python.main() == (0 if supported else 2)
    err = capsys.readouterr().err
    assert (err == "") if supported else ("3.11.2" in err and "make demo PYTHON=python3.12" in err)


def test_make_stops_an_unsupported_python_before_installing(tmp_path):
    """Check that making the venv with a too-old or missing interpreter stops before creating anything"""
    old = installed_python("3.10")
    if old is None:
        pytest.skip("no Python 3.10 is installed here")
    venv = tmp_path / "venv"
    done = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), f"VENV={venv}", f"PYTHON={old}",
                           f"{venv}/.installed"], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "supports Python" in done.stderr and "PYTHON=python3.12" in done.stderr
    assert not venv.exists()
    missing = subprocess.run(["make", "--no-print-directory", "-C", str(REPO_ROOT), f"VENV={tmp_path / 'venv'}",
                              "PYTHON=no-such-python", f"{tmp_path / 'venv'}/.installed"],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "no interpreter named" in missing.stderr
    assert not (tmp_path / "venv").exists()


def test_lock_pins_torch_for_every_supported_python():
    """Check that the lock is universal: torch and torchvision pinned without markers, Python-specific splits marked"""
    lines = [line.split(";")[0].strip() for line in (REPO_ROOT / "requirements.lock").read_text().splitlines()
             if line and not line.startswith((" ", "#"))]
    assert "torch==2.14.1" in lines and "torchvision==0.29.1" in lines
    text = (REPO_ROOT / "requirements.lock").read_text()
    assert re.search(r"^soupsieve==[\d.]+ ; python_full_version < '3.11.5'", text, re.M)
    requires = re.search(r'requires-python = "([^"]+)"', (REPO_ROOT / "pyproject.toml").read_text()).group(1)
    assert requires == ">=3.11.2,<3.14"
