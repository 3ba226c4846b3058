"""The Landlock module on its own: each restriction holds in a child process, and failures are loud."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from autograder import landlock
from autograder.isolation import interpreter_prefixes

ABI = landlock.abi_version()
pytestmark = pytest.mark.skipif(ABI == 0, reason="this kernel has no Landlock")
SYSTEM = ["/usr", "/lib", "/lib64", "/bin", "/etc"]


def restricted(tmp_path, body: str, write: list[str] | None = None) -> dict:
    """Run `body` in a fresh interpreter after restricting it; return what it printed as key=value lines."""
    readable = SYSTEM + [str(p) for p in interpreter_prefixes()] + [str(tmp_path / "ro")]
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {os.path.dirname(landlock.__file__)!r})
        import landlock
        print("abi=" + str(landlock.restrict({readable!r}, {write or [str(tmp_path / "rw"), "/dev/null"]!r})))
        def attempt(name, action):
            try:
                action()
                print(name + "=allowed")
            except OSError as exc:
                print(name + "=denied")
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)


@pytest.fixture()
def tree(tmp_path):
    for name in ("ro", "rw", "hidden"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "file.txt").write_text(name)
    return tmp_path


def test_read_write_and_hidden_folders(tree):
    """Check that read-only folders can be read but not written, read-write ones both, and others neither"""
    seen = restricted(tree, f"""
        attempt("read_ro", lambda: open({str(tree / "ro" / "file.txt")!r}).read())
        attempt("write_ro", lambda: open({str(tree / "ro" / "new.txt")!r}, "w"))
        attempt("read_rw", lambda: open({str(tree / "rw" / "file.txt")!r}).read())
        attempt("write_rw", lambda: open({str(tree / "rw" / "new.txt")!r}, "w").write("x"))
        attempt("delete_rw", lambda: os.remove({str(tree / "rw" / "file.txt")!r}))
        attempt("read_hidden", lambda: open({str(tree / "hidden" / "file.txt")!r}).read())
        attempt("list_hidden", lambda: os.listdir({str(tree / "hidden")!r}))
        attempt("delete_hidden", lambda: os.remove({str(tree / "hidden" / "file.txt")!r}))
        attempt("write_devnull", lambda: open("/dev/null", "w").write("x"))
    """)
    assert seen == {"abi": str(ABI), "read_ro": "allowed", "write_ro": "denied", "read_rw": "allowed",
                    "write_rw": "allowed", "delete_rw": "allowed", "read_hidden": "denied",
                    "list_hidden": "denied", "delete_hidden": "denied", "write_devnull": "allowed"}
    assert (tree / "hidden" / "file.txt").read_text() == "hidden"


@pytest.mark.skipif(ABI < 4, reason="TCP rules need Landlock ABI 4")
def test_tcp_connect_and_bind_are_refused(tree):
    """Check that no TCP connection reaches a listener on the host's loopback, and no port can be bound"""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        seen = restricted(tree, f"""
            import socket
            attempt("connect", lambda: socket.create_connection(("127.0.0.1", {server.getsockname()[1]}), timeout=2))
            attempt("bind", lambda: socket.socket().bind(("127.0.0.1", 0)))
        """)
    finally:
        server.close()
    assert seen["connect"] == "denied" and seen["bind"] == "denied"


@pytest.mark.skipif(ABI < 6, reason="signal scoping needs Landlock ABI 6")
def test_signals_cannot_leave_the_sandbox(tree):
    """Check that a restricted process cannot signal a process outside its domain, but can signal itself"""
    outside = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        seen = restricted(tree, f"""
            import os, signal
            attempt("outside", lambda: os.kill({outside.pid}, signal.SIGTERM))
            attempt("self", lambda: os.kill(os.getpid(), 0))
        """)
        assert seen == {"abi": str(ABI), "outside": "denied", "self": "allowed"}
        assert outside.poll() is None
    finally:
        outside.send_signal(signal.SIGKILL)
        outside.wait()


def test_missing_paths_are_skipped_and_failures_raise(tree):
    """Check that a path that does not exist is ignored, and an impossible restriction raises LandlockError"""
    seen = restricted(tree, "print('ok=yes')", write=[str(tree / "rw"), str(tree / "does-not-exist")])
    assert seen["ok"] == "yes"
    with pytest.raises(landlock.LandlockError):
        landlock.restrict([], [], abi=0)


def test_handled_rights_grow_with_the_abi():
    """Check that each ABI handles the rights it introduced and no others"""
    assert landlock.handled_fs(1) == (1 << 13) - 1
    assert landlock.handled_fs(2) & landlock.REFER and not landlock.handled_fs(2) & landlock.TRUNCATE
    assert landlock.handled_fs(5) & landlock.IOCTL_DEV and landlock.handled_fs(3) & landlock.TRUNCATE
