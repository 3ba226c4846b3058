"""The fork server (autograder/forkserver.py): each submission of a slot is a fresh child of one
server that imported torch, with nothing of the submission before it.

These tests drive one slot's server directly, under whatever layers this machine has;
test_adversarial.py, which CI runs under each layer alone too, grades the lingering daemon's next
submission forked from the daemon's own server.
"""
from __future__ import annotations

import ast
import os
import signal
import time
from pathlib import Path

import pytest

from autograder import forkserver
from autograder.grade import make_job, starter, usable_cores

TOKEN = "forkserver-test-8c41"


@pytest.fixture()
def job(config):
    return make_job("spiral", config, jobs=1, fork_server=True)


@pytest.fixture()
def servers(job):
    servers = starter(job, 10)
    assert isinstance(servers, forkserver.ForkServers)
    yield servers
    servers.close()


def run(box, source: str) -> str:
    """Run one cell in `box`; its printed output (the cell must succeed)."""
    reply = box.request({"op": "run", "index": 0, "source": source}, 60)
    assert reply["ok"], reply
    return reply["output_tail"].strip()


def host_processes_with(text: str) -> list[int]:
    """Host pids whose command line contains `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def parent_of(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:
        return 0


def descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        pid = parent_of(pid)
    return False


def server_pid(box) -> int:
    """The pid of the server that forked `box`'s runner, as the runner sees it."""
    return int(run(box, "import os; print(os.getppid())"))


def test_grading_forks_from_a_server_unless_told_otherwise(config):
    """Check that grading forks each slot's sandboxes from a server by default, and that
    `--no-fork-server` (warm when a core is left) and `--no-warm-start` (all cold) turn it off"""
    default = make_job("spiral", config, jobs=1)
    assert default.fork_server and not default.warm
    assert isinstance(starter(default, 1), forkserver.ForkServers)
    unforked = make_job("spiral", config, jobs=1, fork_server=False)
    assert not unforked.fork_server and unforked.warm == (1 < usable_cores())
    cold = make_job("spiral", config, jobs=1, warm=False)
    assert not cold.fork_server and not cold.warm and starter(cold, 1) is None
    warm = make_job("spiral", config, jobs=1, warm=True)
    assert not warm.fork_server and warm.warm


def test_fork_server_and_no_warm_start_are_refused_together(tmp_path, capsys):
    """Check that the two contradicting flags stop `grade` before anything is graded"""
    from autograder.cli import main

    code = main(["grade", "spiral", str(tmp_path), "--out", str(tmp_path / "out"), "--fork-server",
                 "--no-warm-start"])
    assert code == 2 and "contradict" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_slot_whose_server_cannot_start_stays_cold(job, monkeypatch):
    """Check that a server that fails to start is not tried again for every submission: the slot
    starts its sandboxes cold (take gives None) for the rest of the batch, and other slots still try"""
    attempts = []

    def fails(self):
        attempts.append(self)
        raise forkserver.SandboxBroken("no server here")

    monkeypatch.setattr(forkserver.SlotServer, "start", fails)
    servers = starter(job, 10)
    try:
        assert servers.take(0, True) is None and servers.take(0, True) is None
        assert len(attempts) == 1
        assert servers.take(1, True) is None and len(attempts) == 2
    finally:
        servers.close()


def test_each_submission_is_a_fresh_child_with_nothing_of_the_last(servers, job):
    """Check that the next child of the same server has a new pid, sees none of the files the last
    one wrote, and that the daemon the last one left is dead on the host"""
    first = servers.take(0, True)
    try:
        parent = server_pid(first)
        pid = int(run(first, f"""
import os, subprocess
for folder in ('.', os.environ['TMPDIR'], os.path.expanduser('~'), '/dev/shm'):
    try:
        open(os.path.join(folder, '{TOKEN}'), 'w').write('left')
    except OSError:
        pass
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv('/bin/sleep', ['sleep', '765.4321'])
    os._exit(0)
os.wait()
print(os.getpid())"""))
        deadline = time.monotonic() + 10
        while not host_processes_with("765.4321") and time.monotonic() < deadline:
            time.sleep(0.05)  # the daemon's exec may come a moment after the cell returns
        assert host_processes_with("765.4321"), "the daemon did not start: the test proves nothing"
    finally:
        first.close()
    assert host_processes_with("765.4321") == []
    second = servers.take(0, True)
    try:
        assert server_pid(second) == parent  # the same server forked it: it was reused, not restarted
        seen = run(second, f"""
import os, glob
print([p for f in ('.', os.environ['TMPDIR'], os.path.expanduser('~'), '/dev/shm')
       for p in glob.glob(os.path.join(f, '{TOKEN}'))], os.getpid())""")
        traces, new_pid = seen.rsplit(" ", 1)
        assert traces == "[]" and int(new_pid) != pid
    finally:
        second.close()


def test_a_child_holds_no_channel_of_its_server(servers):
    """Check that the child keeps no socket (the server's fd channel) and that its stdio are pipes
    from the grader, not the server's"""
    box = servers.take(0, True)
    try:
        kinds = run(box, """
import os, stat
kinds = set()
for fd in range(1024):
    try:
        mode = os.fstat(fd).st_mode
    except OSError:
        continue
    kinds.add('socket' if stat.S_ISSOCK(mode) else 'fifo' if stat.S_ISFIFO(mode) else 'other')
print(sorted(kinds))""")
        assert "socket" not in kinds and "fifo" in kinds
    finally:
        box.close()


def test_a_forked_child_has_its_limits_and_torch_ready(servers, job):
    """Check that the child runs under the slot's address-space cap, with torch imported and seeded
    as a cold start's (the same first random number)"""
    limits = job.config.limits_for(job.aid)
    box = servers.take(0, True)
    try:
        cap, number = run(box, "import resource, sys, torch; "
                               "print(resource.getrlimit(resource.RLIMIT_AS)[0], torch.rand(1).item())").split()
    finally:
        box.close()
    assert int(cap) == limits.memory_mb * 2**20
    import torch
    torch.manual_seed(job.config.defaults.seed)
    assert float(number) == pytest.approx(torch.rand(1).item(), abs=0)


def test_a_forked_child_has_torch_s_compiler_imported_and_its_own_cache_folder(servers):
    """Check that torch.optim's first optimizer finds torch._dynamo imported (the server's, so no
    submission pays the import), that the server's import left nothing in the child's $TMPDIR, and
    that the compiler's cache folder comes from the child's own environment, as in a cold start."""
    box = servers.take(0, True)
    try:
        already, listing, environ = run(box, (
            "import os, sys\n"
            "already = 'torch._dynamo' in sys.modules\n"
            "listing = sorted(os.listdir(os.environ['TMPDIR']))\n"
            "environ = os.environ.get('TORCHINDUCTOR_CACHE_DIR', '-')\n"
            "print(already, listing, environ, sep='|')")).split("|")
        cache = run(box, "import torch, torch._dynamo.package as p\n"
                         "torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)\n"
                         "print(p.DynamoCache.path_prefix())")
        tmpdir = run(box, "import os; print(os.environ['TMPDIR'])")
    finally:
        box.close()
    assert already == "True"
    # The child's own shell start may put things there (as a cold start's does); the server's
    # compiler import must not have.
    left = [name for name in ast.literal_eval(listing) if name.startswith(("torchinductor", "torch-import-"))]
    assert left == []
    assert environ == "-"
    assert cache.startswith(tmpdir + os.sep)


def test_a_forked_child_has_pyplot_imported_and_its_own_matplotlib_folders(servers):
    """Check that a child finds matplotlib.pyplot imported with its font list (the server's, so no
    submission pays for them), that the server's config folder left nothing in the child's $TMPDIR,
    and that matplotlib's config and cache folders are the child's own MPLCONFIGDIR, as in a cold
    start: the server's answers, which matplotlib memoizes, name a folder that no longer exists."""
    box = servers.take(0, True)
    try:
        already, listing = run(box, (
            "import os, sys\n"
            "already = 'matplotlib.pyplot' in sys.modules and 'matplotlib.font_manager' in sys.modules\n"
            "print(already, sorted(os.listdir(os.environ['TMPDIR'])), sep='|')")).split("|")
        folders = run(box, "import os, matplotlib\n"
                           "print(os.environ['MPLCONFIGDIR'], matplotlib.get_configdir(), matplotlib.get_cachedir())")
        saved = run(box, "import os, matplotlib.pyplot as plt, matplotlib.font_manager as fm\n"
                         "fig, ax = plt.subplots(); ax.set_title('t'); fig.savefig('f.png')\n"
                         "print(os.path.getsize('f.png') > 0, len(fm.fontManager.ttflist) > 0)")
    finally:
        box.close()
    assert already == "True"
    assert [name for name in ast.literal_eval(listing) if name.startswith("mpl-import-")] == []
    own, configdir, cachedir = folders.split()
    assert configdir == cachedir == own
    assert saved == "True True"


def test_a_server_that_stops_answering_is_replaced(servers, monkeypatch):
    """Check that a server that does not answer its clean-up request closes the whole slot (the
    child dies with it) and the next submission gets a new server"""
    monkeypatch.setattr(forkserver, "CONTROL_TIMEOUT_S", 2.0)
    box = servers.take(0, True)
    parent = server_pid(box)
    run(box, "import os; print(os.getpid())")
    server = box.server
    # The server is the runner whose parent is no runner (its children inherit its command line).
    runners = [pid for pid in host_processes_with("runner.py") if descends_from(pid, server.box.proc.pid)
               and Path(f"/proc/{pid}/comm").read_text().strip() != "bwrap"]
    stopped = [pid for pid in runners if parent_of(pid) not in runners]
    assert len(stopped) == 1, runners
    os.kill(stopped[0], signal.SIGSTOP)  # the server itself stops answering
    started = time.monotonic()
    box.close()
    assert time.monotonic() - started < 30
    assert not server.alive()
    box = servers.take(0, True)
    try:
        assert box.server is not server
        if not job_has_pid_namespace(box):
            assert server_pid(box) != parent
        assert run(box, "print(1 + 1)") == "2"
    finally:
        box.close()


def test_system_v_ipc_of_one_submission_is_gone_for_the_next(servers):
    """Check that a shared-memory segment made by one submission does not exist for the next one
    (inside bubblewrap, where the slot has its own IPC namespace)"""
    box = servers.take(0, True)
    if not box.layers.bubblewrap:
        box.close()
        pytest.skip("without bubblewrap the sandbox shares the host's IPC namespace, as a cold start does")
    script = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
print(libc.shmget(0x4e4e34, 4096, {flags}), ctypes.get_errno())"""
    try:
        made, _ = run(box, script.format(flags="0o1600")).split()  # IPC_CREAT | 0600
        assert int(made) >= 0
    finally:
        box.close()
    box = servers.take(0, True)
    try:
        found, errno = run(box, script.format(flags="0")).split()
    finally:
        box.close()
    assert int(found) == -1 and int(errno) == 2  # ENOENT


def job_has_pid_namespace(box) -> bool:
    return bool(box.layers.bubblewrap)


def test_once_closed_no_slot_starts_a_server(job):
    """Check that after close (Ctrl-C) a grading thread that still asks gets no sandbox and starts no
    server: the caller's cold start is then the interrupted batch's to stop"""
    servers = starter(job, 1)
    servers.close()
    assert servers.take(0, True) is None and servers._servers == {}


def test_a_forked_runner_s_death_is_reported_as_a_cold_one_s(servers):
    """Check that a forked runner that exits or is killed is reported in the words a runner started
    from scratch gets (test_sandbox.py)"""
    from autograder.sandbox import SandboxDied

    for source, words in (("import os\nos._exit(3)", "exited with code 3"),
                          ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "died with SIGKILL")):
        box = servers.take(0, True)
        try:
            with pytest.raises(SandboxDied, match=words):
                box.request({"op": "run", "index": 0, "source": source}, 60)
        finally:
            box.close()
