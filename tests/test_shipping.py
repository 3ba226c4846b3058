"""Probes are shipped into the sandbox as source: what is sent, what is refused, and the
signature `grade --reuse` trusts."""
from __future__ import annotations

import importlib
import json
import sys
import textwrap

import pytest

from autograder import shipping
from harness import runner

REFERENCE = '''
import torch.nn as nn

WIDTH = 4


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.Linear(2, WIDTH)

    def forward(self, x):
        return self.layer(x)
'''
PROBES = '''
import torch

from autograder.probe_tools import faked_cuda

from .reference import Net, WIDTH

SCALE = 2.0
TABLE = torch.zeros(3)


def helper(x):
    return x * SCALE


def widths(model, inputs, extra=None) -> dict:
    return dict(width=WIDTH, scaled=helper(inputs["x"]), net=sum(p.numel() for p in Net().parameters()),
                extra=extra)


def students_net(Net) -> dict:
    return dict(n=sum(p.numel() for p in Net().parameters()))


def uses_a_tensor() -> dict:
    return dict(t=TABLE)


def uses_the_grader() -> dict:
    from autograder import checks
    return {}
'''
GRADER_IMPORT = '''
from autograder.checks import expect


def uses_expect() -> dict:
    expect(True, "")
    return {}
'''


@pytest.fixture()
def package(tmp_path, monkeypatch):
    """A throwaway check package, `pkg_ship`, with reference.py and probes.py."""
    folder = tmp_path / "pkg_ship"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "reference.py").write_text(REFERENCE)
    (folder / "probes.py").write_text(PROBES)
    (folder / "bad.py").write_text(GRADER_IMPORT)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield lambda name: importlib.import_module(f"pkg_ship.{name}")
    for name in [m for m in sys.modules if m.startswith("pkg_ship")]:
        del sys.modules[name]


def test_a_probe_carries_its_helpers_constants_and_imports(package):
    """Check that a probe is sent with the package's helper and class it uses, its plain constants
    and its imports, and runs in a fresh namespace with the student's names as arguments"""
    probes = package("probes")
    shipment = json.loads(json.dumps(shipping.ship(probes.widths)))
    sources = "\n".join(shipment["sources"])
    assert "def helper" in sources and "class Net" in sources and "def students_net" not in sources
    assert shipment["imports"] == [["nn", "torch.nn", None]]  # Net's; the probe itself imports nothing
    run = runner()
    function = run.rebuild(shipment, run.fresh_namespace())
    import torch.nn as nn

    result = function(**run.arguments(function, {"inputs": {"x": 3.0}}, {"model": nn.Linear(1, 1)}))
    assert result == {"width": 4, "scaled": 6.0, "net": 12, "extra": None}


def test_a_parameter_is_never_sent_as_reference_code(package):
    """Check that a probe whose parameter is the student's `Net` is not sent the reference `Net`"""
    shipment = shipping.ship(package("probes").students_net)
    assert not any("class Net" in source for source in shipment["sources"])


def test_a_missing_student_name_is_the_students_to_fix(package):
    """Check that a required parameter the notebook lacks names the variable; a default one is optional"""
    run = runner()
    function = run.rebuild(shipping.ship(package("probes").widths), run.fresh_namespace())
    with pytest.raises(run.ProbeError, match="`model` is not defined: run the cell"):
        run.arguments(function, {"inputs": {}}, {})


@pytest.mark.parametrize("name, says", [("uses_a_tensor", "`TABLE`, a Tensor"),
                                        ("uses_the_grader", None)])
def test_what_cannot_be_sent_is_refused_with_a_reason(package, name, says):
    """Check that an unshippable global is refused with its name; imports inside the body are the
    sandbox's own (and fail there, as the grader is absent)"""
    probe = getattr(package("probes"), name)
    if says is None:
        shipping.ship(probe)  # a local import is not a global: the sandbox will raise ImportError
        return
    with pytest.raises(shipping.ShippingError, match=says):
        shipping.ship(probe)


def test_a_grader_module_is_refused(package):
    """Check that a probe using a grader function other than probe_tools' is refused"""
    with pytest.raises(shipping.ShippingError, match="autograder.checks, which the sandbox does not have"):
        shipping.ship(package("bad").uses_expect)


def test_the_reuse_signature_follows_every_source_it_depends_on(package, tmp_path):
    """Check that the signature changes when a helper's body, a constant or the inputs function's
    body changes, and not otherwise"""
    probes = package("probes")
    before = shipping.signature(probes.widths, probes.helper)
    assert shipping.signature(probes.widths, probes.helper) == before
    folder = tmp_path / "pkg_ship"
    for old, new in [("return x * SCALE", "return x * SCALE + 0"), ("SCALE = 2.0", "SCALE = 3.0"),
                     ("WIDTH = 4", "WIDTH = 5")]:
        for name in ("probes.py", "reference.py"):
            path = folder / name
            path.write_text(path.read_text().replace(old, new))
        for module in [m for m in sys.modules if m.startswith("pkg_ship")]:
            del sys.modules[module]
        importlib.invalidate_caches()
        changed = package("probes")
        after = shipping.signature(changed.widths, changed.helper)
        assert after != before, old
        before = after


def test_the_repository_checks_all_ship():
    """Check that every probe, installed object and hand-off step of every assignment can be sent"""
    from autograder import checks
    from autograder.config import load_config

    config = load_config()
    for aid, assignment in config.assignments.items():
        suite = checks.load_checks(aid, assignment)
        for check in suite.checks:
            shipping.ship(check.probe)
        for handoff in suite.handoffs.values():
            for obj in handoff.install:
                shipping.ship(obj, closure=False)
            if handoff.run:
                shipping.ship(handoff.run)
