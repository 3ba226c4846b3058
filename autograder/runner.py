"""Execute a notebook's cells inside the sandbox and answer the grader over pipes.

This file is copied into the sandbox with `wire.py`, `landlock.py` and `probe_tools.py` and started
as a plain Python process, so it imports nothing from the grader package. It never decides a score:
it runs cells, runs the grader's probes (functions sent as source by `shipping.py`, which return
plain data) and carries out the grader's hand-offs.

Protocol: one JSON object per line. The grader writes requests to our stdin; we answer on the
file descriptor that was stdout at start-up. Student output goes to a bounded buffer instead, so
printing hundreds of megabytes cannot fill a pipe or a disk.

With `--fork-server FD` this process is instead one grading slot's fork server (`ForkServer`):
it imports torch and torch's compiler front end (running no op) and then, on the same line
protocol, forks one child per submission. The child takes the stdin, stdout and stderr the grader
sends over the socket on FD, leaves everything of the server behind and becomes an ordinary runner,
exactly as a cold start's would be at this point. The server never runs student code.
"""
from __future__ import annotations

import array
import builtins
import ctypes
import importlib
import inspect
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import time

import landlock
import wire
from probe_tools import describe_error

TAIL_CHARS = 2000


class Tail:
    """A write-only text stream that keeps only the last `TAIL_CHARS` characters."""

    def __init__(self):
        self.text = ""

    def write(self, s):
        s = str(s)
        self.text = (self.text + s)[-TAIL_CHARS:]
        return len(s)

    def flush(self):
        pass

    def isatty(self):
        return False

    def fileno(self):
        raise OSError("student output is captured")


class ProbeError(Exception):
    """A probe could not find what it looks for; the message is shown to the student."""


def _drop_privileges() -> None:
    """Become the sandbox's unprivileged uid (set by the grader when it runs as root)."""
    uid = os.environ.pop("NN4E_SANDBOX_UID", None)
    if uid and os.getuid() == 0:
        os.setgroups([])
        os.setgid(int(uid))
        os.setuid(int(uid))


class Runner:
    def __init__(self):
        _drop_privileges()
        self.proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
        self.proto_out = os.dup(1)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        self.tail = Tail()
        sys.stdout = sys.stderr = self.tail
        # Writing past RLIMIT_FSIZE should raise OSError in the cell, not kill the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        self.shell = None
        self.torch = None

    # -- protocol -------------------------------------------------------------------------
    def send(self, message: dict) -> None:
        data = wire.dumps(message)
        view = memoryview(data)
        while view:
            written = os.write(self.proto_out, view)
            view = view[written:]

    def serve(self) -> None:
        while True:
            line = self.proto_in.readline()
            if not line:
                return
            request = wire.loads(line)
            op = request.get("op")
            if op == "exit":
                self.send({"op": "bye"})
                return
            handler = getattr(self, "op_" + str(op), None)
            if handler is None:
                self.send({"op": "error", "error": f"unknown op {op!r}"})
                continue
            try:
                reply = handler(request)
            except Exception as exc:  # noqa: BLE001 - answer, so the grader can carry on
                reply = {"op": "error", "ok": False, "error": describe_error(exc)}
            self.send(reply)

    # -- requests -------------------------------------------------------------------------
    def op_init(self, request: dict) -> dict:
        applied = 0
        rules = request.get("landlock")
        if rules:
            # Before anything else: no student code may ever run unrestricted. A failure raises,
            # the grader gets an error instead of "ready", and refuses to go on.
            applied = landlock.restrict(rules["read"], rules["write"])
        os.environ.setdefault("MPLBACKEND", "Agg")
        seed = int(request["seed"])
        random.seed(seed)
        try:
            import numpy as np

            np.random.seed(seed)
        except ImportError:
            pass
        if request.get("torch", True):
            # Imported before any student code so the seed, thread count and device policy hold.
            import torch

            torch.manual_seed(seed)
            torch.set_num_threads(int(request.get("threads", 1)))
            self.torch = torch
        from IPython.core.interactiveshell import InteractiveShell
        from traitlets.config import Config

        config = Config()
        config.HistoryManager.hist_file = ":memory:"
        self.shell = InteractiveShell.instance(config=config, colors="nocolor", autocall=0)
        # Figures must survive `plt.show()` so probes can inspect them; inline backends close them.
        self.shell.register_magic_function(lambda line="": None, "line", "matplotlib")
        self.shell.user_ns["__name__"] = "__main__"
        return {"op": "ready", "pid": os.getpid(), "landlock": applied}

    def op_run(self, request: dict) -> dict:
        self.tail.text = ""
        start = time.monotonic()
        result = self.shell.run_cell(request["source"], store_history=True, silent=False)
        error = result.error_before_exec or result.error_in_exec
        return {
            "op": "ran",
            "index": request["index"],
            "ok": error is None,
            "error": describe_error(error),
            "output_tail": self.tail.text[-500:],
            "seconds": round(time.monotonic() - start, 3),
        }

    def op_probe(self, request: dict) -> dict:
        try:
            inputs = self._to_native(wire.decode(request["inputs"])) if request.get("inputs") else {}
            probe = rebuild(request["code"], fresh_namespace())
            exported = probe(**arguments(probe, {"inputs": inputs}, self.shell.user_ns))
            if not isinstance(exported, dict):
                raise ProbeError(f"the probe {request['code'].get('call')} returned no data (a grader fault)")
            return {"op": "probed", "id": request["id"], "ok": True, "data": wire.encode(exported)}
        except ProbeError as exc:
            error = str(exc)
        except BaseException as exc:  # noqa: BLE001 - student objects may raise anything
            error = describe_error(exc)
        return {"op": "probed", "id": request["id"], "ok": False, "error": error}

    def op_inject(self, request: dict) -> dict:
        user_ns = self.shell.user_ns
        values = wire.decode(request.get("values") or {})
        for name, value in values.items():
            user_ns[name] = self._to_native(value)
        error = ""
        try:
            # Reference classes and functions the prompt specifies, defined as a notebook cell would.
            for shipment in request.get("install") or []:
                rebuild(shipment, user_ns)
            if request.get("run"):
                step = rebuild(request["run"], fresh_namespace())
                made = step(**arguments(step, {}, user_ns))
                user_ns.update(made or {})
        except BaseException as exc:  # noqa: BLE001 - the student's objects may be broken
            error = describe_error(exc)
        return {"op": "injected", "names": sorted(values), "error": error}

    # -- helpers for probes ------------------------------------------------------------------
    def _to_native(self, value):
        if isinstance(value, wire.Array):
            if value.kind == "tensor" and self.torch is not None:
                return self.torch.from_numpy(value.values.copy())
            return value.values.copy()
        if isinstance(value, dict):
            return {k: self._to_native(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._to_native(v) for v in value]
        return value

def arguments(function, given: dict, user_ns: dict) -> dict:
    """A value for each parameter: the grader's (`inputs`), else the student's variable of that name.

    A parameter with a default is optional; any other missing name is the student's to fix.
    """
    values = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in given:
            values[name] = given[name]
        elif name in user_ns:
            values[name] = user_ns[name]
        elif parameter.default is inspect.Parameter.empty:
            raise ProbeError(f"`{name}` is not defined: run the cell that creates it, and keep its name")
    return values


def fresh_namespace() -> dict:
    """Where a probe is rebuilt: nothing of the student's, so it reads only what it is passed."""
    return {"__builtins__": builtins, "__name__": "nn4e_probe"}


def rebuild(shipment: dict, namespace: dict):
    """Define a shipped function or class (see the grader's shipping.py) in `namespace` and return it."""
    for name, module, attribute in shipment.get("imports", []):
        value = importlib.import_module(module)
        namespace[name] = getattr(value, attribute) if attribute else value
    if shipment.get("constants"):
        namespace.update(wire.decode(shipment["constants"]))
    for source in shipment.get("sources", []):
        exec(compile(source, f"<grader: {shipment['call']}>", "exec"), namespace)
    return namespace[shipment["call"]]


# -- the fork server ---------------------------------------------------------------------------------
_PR_SET_DUMPABLE, _PR_SET_CHILD_SUBREAPER = 4, 36
_IPC_RMID = 0
CLEAN_PATIENCE_S = 5.0


class ForkServer:
    """One slot's server: torch (and matplotlib) imported once, a fresh runner forked for each submission.

    Requests on stdin (answers on stdout, as the runner's):
      fork   {env, cwd}  + the child's stdin, stdout, stderr by SCM_RIGHTS on the channel -> forked {pid}
      wait   {timeout}   -> exited {status} (a negative signal number, or the exit code) or running
      clean  {folders}   -> clean: every process the child left is dead and reaped, `folders` are
                            emptied and (in the sandbox's own IPC namespace) System V IPC removed
    The grader cleans after every submission and forks the next one only after a clean answer.
    """

    def __init__(self, channel: int):
        self.proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
        self.proto_out = os.dup(1)
        self.channel = socket.socket(fileno=channel)
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1):
            os.dup2(null, fd)
        os.close(null)
        libc = ctypes.CDLL(None, use_errno=True)
        # Non-dumpable: no process of the sandbox's uid may ptrace it or read its /proc files.
        # A subreaper: whatever a child double-forks stays ours to find and kill.
        if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) or libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0):
            raise OSError(ctypes.get_errno(), "prctl failed")
        self.libc = libc
        self.child = None
        self.status = None
        import numpy  # noqa: F401 - imported once here, so no child pays for it
        import torch  # noqa: F401 - no op runs here: torch's thread pools start in each child
        _import_torch_compiler()
        _import_matplotlib()
        from IPython.core import interactiveshell  # noqa: F401
        from traitlets import config  # noqa: F401

    send = Runner.send

    def serve(self) -> None:
        self.send({"op": "serving", "pid": os.getpid()})
        while True:
            line = self.proto_in.readline()
            if not line:
                return
            request = wire.loads(line)
            handler = getattr(self, "op_" + str(request.get("op")), None)
            try:
                reply = handler(request) if handler else {"op": "error", "error": "unknown op"}
            except Exception as exc:  # noqa: BLE001 - the grader closes the slot on any error
                reply = {"op": "error", "error": describe_error(exc)}
            if reply is not None:
                self.send(reply)

    def op_fork(self, request: dict) -> dict | None:
        if self.child is not None:
            raise RuntimeError("the last child was not cleaned up")
        fds = _receive_fds(self.channel, 3)
        pid = os.fork()
        if pid == 0:
            code = 70
            try:
                self._become_runner(fds, request)
                code = 0
            finally:
                os._exit(code)
        for fd in fds:
            os.close(fd)
        self.child, self.status = pid, None
        return {"op": "forked", "pid": pid}

    def _become_runner(self, fds: list[int], request: dict) -> None:
        """In the child: take the submission's stdio, drop the server's channels, run as a runner."""
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        self.proto_in.close()
        self.channel.close()
        os.close(self.proto_out)
        # Every other descriptor too (the received ones, anything an import left open): the child
        # starts with its stdio only, as a cold start's runner does.
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        os.setsid()  # its own session and process group, as a cold start's
        self.libc.prctl(_PR_SET_DUMPABLE, 1, 0, 0, 0)
        self.libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        os.environ.clear()
        os.environ.update(request["env"])
        tempfile.tempdir = None  # cached from the server's $TMPDIR, if an import asked for it
        _matplotlib_folders_from_environment()
        sys.argv = sys.argv[:1]
        os.chdir(request["cwd"])
        Runner().serve()
        sys.stdout.flush()

    def op_wait(self, request: dict) -> dict:
        deadline = time.monotonic() + float(request.get("timeout", 0))
        while self.child is not None and self.status is None:
            self._reap()
            if self.status is not None or time.monotonic() >= deadline:
                break
            time.sleep(0.02)
        if self.status is None:
            return {"op": "running"}
        return {"op": "exited", "status": self.status}

    def _reap(self) -> bool:
        """Reap every dead child; True if any was left to reap."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return False
            if pid == 0:
                return True
            if pid == self.child:
                self.status = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)

    def op_clean(self, request: dict) -> dict:
        deadline = time.monotonic() + CLEAN_PATIENCE_S
        while _kill_descendants(os.getpid()) or self._reap():
            if time.monotonic() > deadline:
                raise RuntimeError("processes of the last submission would not die")
            time.sleep(0.02)
        for folder in request.get("folders", []):
            _empty(folder)
        if request.get("ipc"):
            self._remove_ipc()
        self.child = None
        return {"op": "clean"}

    def _remove_ipc(self) -> None:
        """Remove every System V IPC object of this IPC namespace (the sandbox's own)."""
        for kind, remove in (("shm", self.libc.shmctl), ("msg", self.libc.msgctl), ("sem", self.libc.semctl)):
            try:
                rows = open(f"/proc/sysvipc/{kind}").read().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                ident = int(row.split()[1])
                if kind == "sem":
                    remove(ident, 0, _IPC_RMID)   # semctl(semid, semnum, cmd)
                else:
                    remove(ident, _IPC_RMID, None)  # shmctl/msgctl(id, cmd, buf)


def _import_torch_compiler() -> None:
    """Import torch's compiler front end (torch._dynamo) in the server, running nothing.

    torch.optim imports it when a notebook makes its first optimizer, and every torch assignment
    makes one: that import took about 1.9 s of each submission, now once per slot. The import also
    makes the compiler's cache folder (under $TMPDIR unless TORCHINDUCTOR_CACHE_DIR names one) and
    records it in the environment; a throwaway folder takes it, so the server leaves nothing in the
    /tmp its children get. A child finds its cache folder from its own environment when it
    compiles (torch looks it up on each use), as a cold start's runner does.
    """
    scratch = tempfile.mkdtemp(prefix="torch-import-")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = scratch
    try:
        import torch._dynamo  # noqa: F401
    finally:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
        shutil.rmtree(scratch, ignore_errors=True)


def _import_matplotlib() -> None:
    """Import matplotlib and pyplot in the server, with its font list built, drawing nothing.

    A notebook's first `import matplotlib.pyplot` took about 0.5 s of each submission: the imports,
    and the list of the system's fonts that matplotlib builds in an empty config folder (each
    child's is). Matplotlib also remembers its config and cache folders from their first use; the
    server's are a throwaway folder, removed here, and each child forgets them again
    (_matplotlib_folders_from_environment). The backend comes from MPLBACKEND (Agg), as in a child.
    """
    scratch = tempfile.mkdtemp(prefix="mpl-import-")
    before = os.environ.get("MPLCONFIGDIR")
    os.environ["MPLCONFIGDIR"] = scratch
    try:
        import matplotlib.pyplot  # noqa: F401 - builds matplotlib.font_manager.fontManager too
    finally:
        if before is None:
            os.environ.pop("MPLCONFIGDIR", None)
        else:
            os.environ["MPLCONFIGDIR"] = before
        shutil.rmtree(scratch, ignore_errors=True)


def _matplotlib_folders_from_environment() -> None:
    """In a child: make matplotlib look its config and cache folders up again, in the child's own
    environment (MPLCONFIGDIR), as a cold start's runner does on its first use of them.

    matplotlib memoizes `get_configdir` and `get_cachedir` (its `_logged_cached`); the server's
    answers name its removed throwaway folder. Fresh memoized wrappers of the same functions replace
    them; the font list stays the server's (the same system fonts a child would list)."""
    mpl = sys.modules.get("matplotlib")
    if mpl is None:
        return
    for name, label in (("get_configdir", "CONFIGDIR=%s"), ("get_cachedir", "CACHEDIR=%s")):
        setattr(mpl, name, mpl._logged_cached(label)(getattr(mpl, name).__wrapped__))


def _receive_fds(channel: socket.socket, count: int) -> list[int]:
    fds = array.array("i")
    _, ancillary, _, _ = channel.recvmsg(1, socket.CMSG_SPACE(count * fds.itemsize))
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - len(data) % fds.itemsize])
    if len(fds) != count:
        for fd in fds:
            os.close(fd)
        raise RuntimeError(f"expected {count} file descriptors from the grader, got {len(fds)}")
    return list(fds)


def _kill_descendants(me: int) -> bool:
    """SIGKILL every living descendant of `me` (found by parent links in /proc); True if any."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry)] = int(fields[1])
    found = False
    for pid in parents:
        ancestor, hops = parents.get(pid), 0
        while ancestor is not None and ancestor != me and hops < 4096:
            ancestor, hops = parents.get(ancestor), hops + 1
        if ancestor == me:
            found = True
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return found


def _empty(folder: str) -> None:
    """Delete everything in `folder` (a child may have left read-only folders behind)."""
    def writable_then_retry(function, path, _):
        os.chmod(os.path.dirname(path), 0o700)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, 0o700)
        function(path)

    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, onerror=writable_then_retry)
        else:
            os.unlink(entry.path)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--fork-server"]:
        ForkServer(int(sys.argv[2])).serve()
    else:
        Runner().serve()
