"""The sandbox on its own: isolation from the repository and the network, limits, and cleanup."""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest

from autograder.config import REPO_ROOT, load_config
from autograder.sandbox import Sandbox, SandboxDied, SandboxTimeout, detect_layers

LAYERS = detect_layers()
needs_bwrap = pytest.mark.skipif(not LAYERS.bubblewrap, reason="bubblewrap is not installed")


def limits(**changes):
    return load_config().defaults.limits.model_copy(update=changes)


@pytest.fixture()
def box():
    sandbox = Sandbox("spiral", limits(cell_timeout_s=5), LAYERS, REPO_ROOT / "datasets")
    sandbox.start()
    sandbox.request({"op": "init", "seed": 0, "torch": False}, 60)
    yield sandbox
    sandbox.close()


def run(box, source: str, timeout: float = 20) -> dict:
    return box.request({"op": "run", "index": 0, "source": source}, timeout)


def probe(box, code: str) -> dict:
    reply = box.request({"op": "probe", "id": "t", "code": code, "inputs": {}}, 20)
    assert reply["ok"], reply
    return reply["data"]["__dict__"]


@needs_bwrap
def test_repository_and_other_files_are_invisible(box):
    """Check that student code cannot see solutions, grading.yml or the repository's tests"""
    run(box, f"import os\nseen = [p for p in {[str(REPO_ROOT / n) for n in ('solutions', 'grading.yml', 'tests', 'autograder')]!r} if os.path.exists(p)]")
    assert probe(box, "export(seen=get('seen'))") == [["seen", []]]
    run(box, "import os\ndata = sorted(os.listdir('../../datasets'))\ncwd = os.getcwd()")
    data = dict(probe(box, "export(data=get('data'), cwd=get('cwd'))"))
    assert "spiral.csv" in data["data"] and data["cwd"] == "/sandbox/assignments/spiral"


@needs_bwrap
def test_no_network_even_loopback(box):
    """Check that a listening socket on the host's loopback is unreachable"""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        run(box, f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    reached = True\n"
                 "except OSError:\n    reached = False")
        assert probe(box, "export(reached=get('reached'))") == [["reached", False]]
    finally:
        server.close()


def test_writes_stay_in_the_throwaway_folder(box):
    """Check that student files land in the sandbox folder, which is removed afterwards"""
    target = REPO_ROOT / "planted-by-student.txt"
    reply = run(box, f"open('mine.txt', 'w').write('x')\nopen({str(target)!r}, 'w').write('x')")
    assert not target.exists()
    assert (box.work / "mine.txt").exists()
    if LAYERS.bubblewrap or LAYERS.unprivileged_user:
        assert not reply["ok"]
    folder = box.tmp
    box.close()
    assert not folder.exists()


def test_exit_and_crash_are_reported(box):
    """Check that os._exit kills only the sandbox and is reported as a death"""
    with pytest.raises(SandboxDied, match="exited with code 3"):
        run(box, "import os\nos._exit(3)")


def test_sys_exit_is_just_an_error(box):
    """Check that sys.exit in a cell does not end the notebook"""
    assert not run(box, "import sys\nsys.exit(0)")["ok"]
    assert run(box, "x = 1")["ok"]


def test_infinite_loop_times_out(box):
    """Check that a cell past its time limit raises SandboxTimeout promptly"""
    start = time.monotonic()
    with pytest.raises(SandboxTimeout):
        run(box, "while True:\n    pass", timeout=3)
    assert time.monotonic() - start < 10


def test_output_flood_is_bounded(box):
    """Check that printing hundreds of MB neither blocks nor fills memory or disk"""
    start = time.monotonic()
    reply = run(box, "for _ in range(300):\n    print('x' * 1_000_000)", timeout=60)
    assert reply["ok"] and len(reply["output_tail"]) <= 500
    assert time.monotonic() - start < 60


def test_memory_bomb_fails_in_the_cell(box):
    """Check that allocating past the memory cap raises MemoryError instead of hurting the host"""
    reply = run(box, "blob = bytearray(8 * 2**30)", timeout=30)
    assert not reply["ok"] and "MemoryError" in reply["error"]
    assert run(box, "y = 2")["ok"]


def test_detached_daemon_is_killed(box):
    """Check that a double-forked, new-session daemon does not outlive the sandbox"""
    run(box, "import os, time\n"
             "if os.fork() == 0:\n"
             "    os.setsid()\n"
             "    if os.fork() == 0:\n"
             "        open('daemon.pid', 'w').write(str(os.getpid()))\n"
             "        time.sleep(300)\n"
             "    os._exit(0)\n"
             "time.sleep(1)")
    assert (box.work / "daemon.pid").exists()
    uid = box.uid
    box.close()
    time.sleep(0.5)
    if uid is not None:
        alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid]
        assert alive == []


def _owner(path: Path):
    try:
        return path.stat().st_uid
    except OSError:
        return None


def test_layers_are_reported():
    """Check that the active layers always include the process layer"""
    assert LAYERS.names[0] == "process"
    if os.geteuid() == 0 and LAYERS.bubblewrap:
        assert "user" in LAYERS.names
