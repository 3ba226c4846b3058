"""The sandbox on its own: isolation from the repository and the network, limits, and cleanup.

These run under whichever layers this machine offers; CI runs them again with each layer alone."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from autograder import shipping
from autograder.config import REPO_ROOT, load_config
from autograder.isolation import detect_layers, interpreter_prefixes, prepared_host
from autograder.sandbox import Sandbox, SandboxDied, SandboxTimeout
from conftest import decoy_intact, decoy_repository

LAYERS = detect_layers()
pytestmark = pytest.mark.skipif(not LAYERS.isolated, reason="no sandbox layer is available on this machine")
blocks_network = pytest.mark.skipif(
    not (LAYERS.bubblewrap or LAYERS.landlock >= 4 or LAYERS.private_network),
    reason="no layer blocks TCP here (bubblewrap, Landlock ABI 4+, or root's network namespace)")


def limits(**changes):
    return load_config().defaults.limits.model_copy(update=changes)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The data as grading sees it (a public copy when the uid layer is the only wall)."""
    with prepared_host(LAYERS, REPO_ROOT, REPO_ROOT / "datasets", [tmp_path_factory.mktemp("private")]) as data:
        yield data


@pytest.fixture()
def box(data_dir):
    sandbox = Sandbox("spiral", limits(cell_timeout_s=5), LAYERS, data_dir)
    sandbox.start()
    sandbox.initialise(seed=0, torch=False, timeout=60)
    yield sandbox
    sandbox.close()


def run(box, source: str, timeout: float = 20) -> dict:
    return box.request({"op": "run", "index": 0, "source": source}, timeout)


def variables(read=None, listed=None, data=None, rows=None, reached=None, mine=None, started=None) -> dict:
    """A probe, shipped as the grader ships one: the student's variables of these names."""
    return {name: value for name, value in locals().items() if value is not None}


def probe(box) -> dict:
    reply = box.request({"op": "probe", "id": "t", "code": shipping.ship(variables), "inputs": {}}, 20)
    assert reply["ok"], reply
    return dict(reply["data"]["__dict__"])


def test_repository_and_other_files_are_unreadable(box):
    """Check that student code can read neither solutions, grading.yml nor the repository, but can read the data"""
    targets = [str(REPO_ROOT / n) for n in ("solutions/spiral/verdicts.py", "grading.yml", "tests/conftest.py",
                                           "autograder/grade.py", "README.md")] + [str(REPO_ROOT)]
    run(box, "import os\nread = []\n"
             f"for p in {targets!r}:\n"
             "    try:\n        os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(1)\n        read.append(p)\n"
             "    except OSError:\n        pass")
    read = probe(box)["read"]
    if str(REPO_ROOT) in read:  # bubblewrap shows the folders on the way to a venv inside the checkout
        run(box, f"import os\nlisted = os.listdir({str(REPO_ROOT)!r})")
        on_the_way = {p.relative_to(REPO_ROOT).parts[0] for p in interpreter_prefixes() if p.is_relative_to(REPO_ROOT)}
        assert set(probe(box)["listed"]) <= on_the_way
        read.remove(str(REPO_ROOT))
    assert read == []
    run(box, "import os\ndata = sorted(os.listdir('../../datasets'))\nrows = open('../../datasets/spiral.csv').readline()")
    data = probe(box)
    assert "spiral.csv" in data["data"] and data["rows"]


@blocks_network
def test_no_network_even_loopback(box):
    """Check that a listening socket on the host's loopback is unreachable"""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        run(box, f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    reached = True\n"
                 "except OSError:\n    reached = False")
        assert probe(box)["reached"] is False
    finally:
        server.close()


def test_writes_stay_in_the_throwaway_folder(box, tmp_path):
    """Check that student files land in the sandbox folder, which is removed afterwards, and nowhere else"""
    decoy = decoy_repository(tmp_path / "decoy")
    for target in (decoy / "planted-by-student.txt", decoy / "grading.yml"):
        reply = run(box, f"open('mine.txt', 'w').write('x')\nopen({str(target)!r}, 'w').write('x')")
        assert not reply["ok"]
    assert not run(box, f"import os\nos.remove({str(decoy / 'datasets' / 'spiral.csv')!r})")["ok"]
    assert decoy_intact(decoy) and not (decoy / "planted-by-student.txt").exists()
    run(box, "import os\nmine = os.path.exists('mine.txt')")
    assert probe(box)["mine"] is True
    run(box, "import tempfile\nwith tempfile.NamedTemporaryFile(delete=False) as f:\n    f.write(b'x')")
    folder = box.tmp
    box.close()
    assert not folder.exists()


def test_exit_and_crash_are_reported(box):
    """Check that os._exit kills only the sandbox and is reported as a death"""
    with pytest.raises(SandboxDied, match="exited with code 3"):
        run(box, "import os\nos._exit(3)")


def test_a_signal_death_is_named_under_every_layer(box):
    """Check that a runner killed by a signal is reported by the signal's name, also inside
    bubblewrap (which exits with 128 + the signal's number), as a forked runner's death is"""
    with pytest.raises(SandboxDied, match="died with SIGKILL"):
        run(box, "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")


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
             "for _ in range(100):  # the grandchild may take a moment under load\n"
             "    if os.path.exists('daemon.pid'):\n        break\n    time.sleep(0.1)\n"
             "started = os.path.exists('daemon.pid')")
    assert probe(box)["started"] is True
    uid = box.uid
    box.close()
    time.sleep(0.5)
    if uid is not None:
        alive = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == uid]
        assert alive == []


def test_closing_spares_the_graders_own_older_children(data_dir):
    """Check that closing a sandbox kills its daemons but no child the grader started before it
    (a Dask worker's or multiprocessing's helpers live beside the sandboxes)"""
    mine = subprocess.Popen(["sleep", "60"])
    time.sleep(0.1)  # older by whole clock ticks: the sandbox counts a child of its own start tick as its own
    try:
        before = set(_children_of(os.getpid()))
        box = Sandbox("spiral", limits(cell_timeout_s=5), LAYERS, data_dir)
        box.start()
        try:
            box.initialise(seed=0, torch=False, timeout=60)
            run(box, "import os, subprocess\n"
                     "daemon = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                     "started = daemon.poll() is None")
            assert probe(box)["started"] is True
        finally:
            box.close()
        time.sleep(0.5)
        assert mine.poll() is None, "the grader's own child was killed with the sandbox"
        daemons = [pid for pid in set(_children_of(os.getpid())) - before if _cmdline(pid) == "sleep 300"]
        assert daemons == [], "a daemon of the sandbox outlived it"
    finally:
        mine.kill()
        mine.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return children


def _owner(path: Path):
    try:
        return path.stat().st_uid
    except OSError:
        return None


def test_layers_are_reported():
    """Check that the active layers always include the process layer, and root always gets the uid layer with bubblewrap"""
    assert LAYERS.names[0] == "process"
    if os.geteuid() == 0 and LAYERS.bubblewrap and not os.environ.get("NN4E_SANDBOX_NO_USER"):
        assert "user" in LAYERS.names
    if LAYERS.landlock:
        assert f"landlock-abi{LAYERS.landlock}" in LAYERS.names
    if os.geteuid() != 0:  # what a TA on a laptop gets: no uid layer, but isolation all the same
        assert "user" not in LAYERS.names and "netns" not in LAYERS.names and LAYERS.isolated


def test_runner_confirms_landlock(box):
    """Check that the runner reports the Landlock ABI it applied, which the grader requires to match"""
    assert box.layers.landlock == LAYERS.landlock


def test_disk_fill_stops_at_the_budget(data_dir):
    """Check that writing past the disk budget fails or kills the notebook, and the host loses at most the budget"""
    budget_mb = load_config().defaults.limits.disk_mb
    box = Sandbox("spiral", limits(cell_timeout_s=60), LAYERS, data_dir)
    free_before = shutil.disk_usage("/tmp").free
    lowest = [free_before]
    box.start()
    try:
        box.initialise(seed=0, torch=False, timeout=60)
        watcher = threading.Thread(target=_track_free, args=(lowest, box), daemon=True)
        watcher.start()
        try:
            reply = run(box, "import os, tempfile\nblock = b'x' * 2**20\n"
                             "for root in ['.', tempfile.gettempdir()]:\n"
                             "    for i in range(100):\n"
                             "        with open(os.path.join(root, f'fill{i}'), 'wb') as f:\n"
                             "            for _ in range(32):\n                f.write(block)", timeout=60)
            assert not reply["ok"] and "No space left" in reply["error"]
        except SandboxDied as exc:
            assert "disk limit reached" in str(exc)
    finally:
        box.close()
    assert free_before - lowest[0] <= budget_mb * 2**20


def test_inode_storm_is_stopped(data_dir):
    """Check that creating more files than max_files kills the notebook with a clear reason"""
    box = Sandbox("spiral", limits(cell_timeout_s=60, max_files=500), LAYERS, data_dir)
    box.start()
    try:
        box.initialise(seed=0, torch=False, timeout=60)
        with pytest.raises(SandboxDied, match="disk limit reached .* 500 files"):
            run(box, "import os, time\nos.makedirs('many', exist_ok=True)\n"
                     "for i in range(100000):\n    open(f'many/{i}', 'w').close()\ntime.sleep(5)", timeout=60)
    finally:
        box.close()


def _track_free(lowest: list[int], box) -> None:
    while box.proc is not None:
        lowest[0] = min(lowest[0], shutil.disk_usage("/tmp").free)
        time.sleep(0.05)
