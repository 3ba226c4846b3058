"""The fork server: each slot imports torch once, in a sandbox that forks a fresh runner per submission.

A cold start spends about 2 s of CPU importing torch in every sandbox, about 2 s more when the
notebook makes its first torch.optim optimizer (which imports torch's compiler front end), and
about 0.5 s at its first `import matplotlib.pyplot` (with the font list); at `--jobs` = cores that
time is taken from the notebooks. Here each slot keeps one long-lived sandbox whose runner
(`runner.py --fork-server`) has imported torch, torch._dynamo, numpy, matplotlib.pyplot and IPython
and run nothing else. For each submission it forks a child, which becomes an ordinary runner at the
point where a cold start's would begin its `init`. What each submission gets is what a cold start gives it:
  - a fresh process: the child of a server that never ran student code, in its own session;
  - its own working folder: a new host folder without bubblewrap; inside bubblewrap the slot's
    folder, /tmp and /dev/shm, emptied (and System V IPC removed) before the next fork;
  - no view of any other submission: the child gets its stdin, stdout and stderr from the grader
    (SCM_RIGHTS) and closes the server's channels before any student code runs; the server is
    non-dumpable, so a process of the sandbox's uid cannot ptrace it or read its /proc files;
    Landlock (applied by the child at `init`) forbids signalling it; the uid layer drops the
    child to the slot's uid while the server stays root;
  - no leftover processes: the server is a child subreaper, so everything a submission starts
    stays its descendant; before the next fork it kills and reaps them all (and the grader still
    kills every process of the slot's uid), and it answers "clean" only when none is left;
  - its limits: rlimits are inherited, and the per-process ones (CPU time) start again at zero.
Anything unexpected (no answer, an error, a server the submission killed) closes the whole
slot sandbox, and the next submission starts a new server: a fault fails closed.

`grade` starts its sandboxes this way unless told `--no-fork-server` (then warm or cold, warm.py) or
`--no-warm-start` (all cold). GPU devices and a Dask cluster's workers always start cold.

Contract (the same as `warm.WarmSlots`, so `grade` uses either):
  - `take(slot, torch)` returns a sandbox for the slot's next submission, its shell ready and torch
    imported and seeded (whether or not the notebook uses it: it costs nothing here), or None (a
    GPU device, a server that could not start): the caller then starts one cold, so a host that
    cannot start a sandbox fails there, as before. A slot whose server could not start stays cold
    for the rest of the batch; one whose server was closed after a fault starts a new one.
  - `prepare`, `starting`: nothing to do ahead of time.
  - `close()` closes every slot's server; after Ctrl-C too.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
from typing import Callable

from .sandbox import Sandbox, SandboxBroken, SandboxDied, SandboxTimeout

SERVER_START_TIMEOUT_S = 120.0
CONTROL_TIMEOUT_S = 15.0  # fork, clean and wait answers come within this, or the slot is closed


class SlotServer:
    """One slot's fork server: its sandbox, started once, and the lock that orders its requests."""

    def __init__(self, box: Sandbox):
        self.box = box
        self.lock = threading.Lock()
        self.channel: socket.socket | None = None

    @property
    def uid(self) -> int | None:
        return self.box.uid

    def start(self) -> None:
        """Start the slot's sandbox as a fork server and wait until torch is imported."""
        self.channel = self.box.start_server()
        reply = self.box.read_reply(SERVER_START_TIMEOUT_S)
        if reply.get("op") != "serving":
            raise SandboxBroken(f"the fork server could not start: {reply.get('error', reply)}")

    def alive(self) -> bool:
        return self.box.proc is not None and self.box.proc.poll() is None

    def fork(self, env: dict[str, str], cwd: str, stderr_fd: int) -> "Forked":
        """Fork a runner whose stdin, stdout and stderr are new pipes to us (and `stderr_fd`)."""
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        try:
            with self.lock:
                socket.send_fds(self.channel, [b"f"], [child_in, child_out, stderr_fd])
                reply = self.box.request({"op": "fork", "env": env, "cwd": cwd}, CONTROL_TIMEOUT_S)
        except BaseException:
            for fd in (to_child, from_child):
                os.close(fd)
            raise
        finally:
            os.close(child_in)
            os.close(child_out)
        if reply.get("op") != "forked":
            os.close(to_child)
            os.close(from_child)
            raise SandboxBroken(f"the fork server could not fork: {reply.get('error', reply)}")
        return Forked(self, int(reply["pid"]), os.fdopen(to_child, "wb"), os.fdopen(from_child, "rb", buffering=0))

    def control(self, message: dict, timeout: float | None = None) -> dict:
        """One request to the server; any failure closes the slot (SandboxBroken)."""
        try:
            with self.lock:
                reply = self.box.request(message, CONTROL_TIMEOUT_S if timeout is None else timeout)
        except (SandboxDied, SandboxTimeout) as exc:
            self.close()
            raise SandboxBroken(f"the slot's fork server stopped answering ({exc or 'no answer'})") from None
        if reply.get("op") == "error":
            self.close()
            raise SandboxBroken(f"the slot's fork server failed: {reply.get('error')}")
        return reply

    def close(self) -> None:
        self.box.close()
        if self.channel is not None:
            self.channel.close()
            self.channel = None


class Forked:
    """A runner forked by a slot's server, seen as `Sandbox` sees a `subprocess.Popen`.

    `pid` is the process group that stops this submission: the child's own session without a PID
    namespace; inside bubblewrap (whose PID namespace hides the child from here) the slot's whole
    sandbox, which is then started again for the next submission.
    """

    def __init__(self, server: SlotServer, child: int, stdin, stdout):
        self.server = server
        self.child = child
        self.stdin, self.stdout = stdin, stdout
        self.returncode: int | None = None
        self.pid = server.box.proc.pid if server.box.layers.bubblewrap else child

    def poll(self) -> int | None:
        """Cheap (the disk watcher calls it 20 times a second): known once the slot died or the
        submission was cleaned up; `wait` asks the server."""
        if self.returncode is None and not self.server.alive():
            self.returncode = -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        """The child's exit status (a negative signal number, as Popen's), or None while it runs.
        A server that cannot say (the submission killed the slot) reports SIGKILL."""
        if self.returncode is not None:
            return self.returncode
        if not self.server.alive():
            self.returncode = -signal.SIGKILL
            return self.returncode
        try:
            reply = self.server.control({"op": "wait", "timeout": min(timeout or 0, 10.0)},
                                        CONTROL_TIMEOUT_S + (timeout or 0))
        except SandboxBroken:
            self.returncode = -signal.SIGKILL
            return self.returncode
        if reply.get("op") == "exited":
            self.returncode = int(reply["status"])
        return self.returncode

    def clean(self, folders: list[str], ipc: bool) -> None:
        """Kill everything the submission left and empty its folders; closes the slot on failure."""
        for stream in (self.stdin, self.stdout):
            try:
                stream.close()
            except OSError:
                pass
        if self.server.alive():
            try:
                self.server.control({"op": "clean", "folders": folders, "ipc": ipc})
            except SandboxBroken:
                pass  # control() closed the slot: nothing of this submission survives that
        if self.returncode is None:
            self.returncode = -signal.SIGKILL


class ForkServers:
    """One fork server per slot, started on the slot's first submission."""

    def __init__(self, open_server: Callable[[int], Sandbox], open_child: Callable[[int, SlotServer], Sandbox],
                 usable: bool):
        self._open_server = open_server  # slot -> a new, unstarted server sandbox
        self._open_child = open_child    # (slot, server) -> a forked sandbox, its shell started
        self._usable = usable            # False for GPU devices: their cgroups are per sandbox
        self._servers: dict[int, SlotServer] = {}
        # A server that could not start will not start for the next submission either (the host
        # lacks something): that slot then starts its sandboxes cold, without waiting for another.
        self._cold: set[int] = set()
        self._lock = threading.Lock()
        self._closed = False  # after Ctrl-C a grading thread may still ask: it starts no server then

    def starting(self) -> None:
        pass

    def prepare(self, slot: int, torch: bool) -> None:
        pass

    def take(self, slot: int, torch: bool) -> Sandbox | None:
        if not self._usable or self._closed or slot in self._cold:
            return None
        server = self._server(slot)
        if server is None:
            return None
        try:
            return self._open_child(slot, server)
        except Exception:  # noqa: BLE001 - a cold start follows and reports its own failure
            self._drop(slot)
            return None

    def _server(self, slot: int) -> SlotServer | None:
        with self._lock:
            server = self._servers.get(slot)
        if server is not None and server.alive():
            return server
        self._drop(slot)
        server = SlotServer(self._open_server(slot))
        try:
            server.start()
        except Exception:  # noqa: BLE001 - a cold start follows and reports its own failure
            server.close()
            with self._lock:
                self._cold.add(slot)
            return None
        with self._lock:
            if not self._closed:
                self._servers[slot] = server
                return server
        server.close()  # closed while it started
        return None

    def _drop(self, slot: int) -> None:
        with self._lock:
            server = self._servers.pop(slot, None)
        if server is not None:
            server.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            server.close()

