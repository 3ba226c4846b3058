"""Start `runner.py` for one submission in a throwaway, resource-limited, isolated process.

Layers (each result records which were active):
  process   - own session and process group, scrubbed environment, throwaway working folder,
              rlimits (address space, processes, open files, file size, CPU time); the whole
              group is killed at the end.
  bubblewrap - when `bwrap` is installed: no network, private PID namespace (so double-forked
              daemons die with it), read-only system, private /tmp, and only the interpreter, its
              venv, the data and the submission's own folder bound in. The repository itself
              (solutions, hidden checks, grading.yml, other submissions) is never visible.
  user      - when the grader runs as root: student code runs as an unprivileged uid.
"""
from __future__ import annotations

import fcntl
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import wire
from .config import Limits

PACKAGE_DIR = Path(__file__).resolve().parent
SANDBOX_ROOT = Path("/sandbox")
GRADER_DIR_INSIDE = Path("/opt/grader")
BASE_UID = 61000  # one uid per running sandbox, so one fork storm cannot starve another submission
UID_RANGE = 1000
# Fixed, not under $TMPDIR: every grader process on the machine must see the same locks.
UID_LOCK_DIR = Path("/tmp/nn4e-sandbox-uids")
MAX_MESSAGE_BYTES = 64 * 2**20
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")


_ACTIVE: set["Sandbox"] = set()
_ACTIVE_LOCK = threading.Lock()


def close_all() -> None:
    """Kill every running sandbox (Ctrl-C): no student process outlives the grader."""
    with _ACTIVE_LOCK:
        boxes = list(_ACTIVE)
    for box in boxes:
        box.close()


class SandboxTimeout(Exception):
    """The runner did not answer within the time allowed."""


class SandboxDied(Exception):
    """The runner exited (os._exit, segfault, killed, out of memory) before answering."""


@dataclass(frozen=True)
class Layers:
    bubblewrap: bool
    unprivileged_user: bool

    @property
    def names(self) -> list[str]:
        active = ["process"]
        if self.bubblewrap:
            active.append("bubblewrap")
        if self.unprivileged_user:
            active.append("user")
        return active


def _world_traversable(path: Path) -> bool:
    for parent in [path, *path.parents]:
        if parent.exists() and not os.stat(parent).st_mode & 0o001:
            return False
    return True


def detect_layers(use_bwrap: bool = True) -> Layers:
    """Which sandbox layers this machine supports."""
    bwrap = use_bwrap and shutil.which("bwrap") is not None and _bwrap_works()
    as_root = os.geteuid() == 0
    # Without bubblewrap the unprivileged uid must be able to reach the interpreter on the host.
    user = as_root and (bwrap or _world_traversable(Path(sys.base_prefix)))
    return Layers(bubblewrap=bwrap, unprivileged_user=user)


_BWRAP_OK: bool | None = None


def _bwrap_works() -> bool:
    global _BWRAP_OK
    if _BWRAP_OK is None:
        try:
            probe = subprocess.run(
                ["bwrap", "--unshare-net", "--unshare-pid", "--ro-bind", "/", "/", "true"],
                capture_output=True, timeout=20)
            _BWRAP_OK = probe.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _BWRAP_OK = False
    return _BWRAP_OK


def _scrubbed_env(home: str, threads: int, device: str) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{home}/.mpl",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TORCH_HOME": f"{home}/.torch",
    }
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def _bwrap_args(work: Path, inside_work: Path, grader_dir: Path, data_dir: Path | None) -> list[str]:
    args = ["bwrap", "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--unshare-cgroup-try", "--die-with-parent", "--new-session"]
    made: set[str] = set()

    def parents_of(target: Path):
        # bwrap creates missing parents with mode 0700; make them traversable for the sandbox uid.
        for parent in reversed(target.parents):
            key = str(parent)
            if key != "/" and key not in made:
                made.add(key)
                args.extend(["--perms", "0755", "--dir", key])

    for system_dir in SYSTEM_DIRS:
        if os.path.exists(system_dir):
            args.extend(["--ro-bind", system_dir, system_dir])
    # The private /tmp comes before the interpreter's binds: a venv under /tmp must stay visible.
    args.extend(["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"])
    made.add("/tmp")
    for prefix in sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}):
        parents_of(prefix)
        args.extend(["--ro-bind", str(prefix), str(prefix)])
    parents_of(GRADER_DIR_INSIDE)
    args.extend(["--ro-bind", str(grader_dir), str(GRADER_DIR_INSIDE)])
    if data_dir is not None:
        parents_of(SANDBOX_ROOT / "datasets")
        args.extend(["--ro-bind", str(data_dir), str(SANDBOX_ROOT / "datasets")])
    parents_of(inside_work)
    args.extend(["--bind", str(work), str(inside_work), "--chdir", str(inside_work)])
    return args


def _tasks_of(uid: int) -> int:
    """Threads and processes `uid` owns now (RLIMIT_NPROC counts both)."""
    count = 0
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += sum(1 for _ in (entry / "task").iterdir())
            except OSError:
                continue
    return count


def _limit_child(limits: Limits, uid: int | None):
    """preexec_fn: rlimits, inherited by everything the student starts."""
    # A sandbox uid owns nothing else; otherwise the limit must leave room for the user's own tasks.
    nproc = limits.max_processes if uid is not None else _tasks_of(os.getuid()) + limits.max_processes

    def apply():
        mib = 2**20
        pairs = [
            (resource.RLIMIT_AS, limits.memory_mb * mib),
            (resource.RLIMIT_NOFILE, limits.max_open_files),
            (resource.RLIMIT_FSIZE, limits.max_file_size_mb * mib),
            (resource.RLIMIT_CPU, int(limits.notebook_timeout_s) + 30),
            (resource.RLIMIT_CORE, 0),
        ]
        for which, value in pairs:
            resource.setrlimit(which, (value, value))
        # Root ignores RLIMIT_NPROC; the runner drops to the sandbox uid before any student code.
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


@dataclass(eq=False)
class Sandbox:
    """One sandboxed runner process for one submission. Use as a context manager."""

    assignment_id: str
    limits: Limits
    layers: Layers
    data_dir: Path | None
    slot: int = 0
    threads: int = 1
    device: str = "cpu"
    tmp: Path = field(init=False)
    work: Path = field(init=False)
    proc: subprocess.Popen | None = field(init=False, default=None)
    uid: int | None = field(init=False, default=None)

    def __post_init__(self):
        self.tmp = Path(tempfile.mkdtemp(prefix=f"nn4e-sandbox-{os.getpid()}-"))
        grader_dir = self.tmp / "grader"
        grader_dir.mkdir()
        for name in ("runner.py", "wire.py"):
            shutil.copy2(PACKAGE_DIR / name, grader_dir / name)
        self.work = self.tmp / "assignments" / self.assignment_id
        self.work.mkdir(parents=True)
        self._buffer = b""

    def start(self) -> None:
        self._uid_lock = None
        if self.layers.unprivileged_user:
            self.uid, self._uid_lock = _claim_uid(BASE_UID + self.slot)
        uid = self.uid
        if uid is not None:
            for path in (self.tmp, self.tmp / "assignments", self.work):
                os.chown(path, uid, uid)
            os.chmod(self.tmp, 0o755)
        python = [sys.executable, "-E", "-s"]
        if self.layers.bubblewrap:
            inside_work = SANDBOX_ROOT / "assignments" / self.assignment_id
            env = _scrubbed_env("/tmp", self.threads, self.device)
            command = _bwrap_args(self.work, inside_work, self.tmp / "grader", self.data_dir)
            command += [*python, str(GRADER_DIR_INSIDE / "runner.py")]
        else:
            if self.data_dir is not None:
                os.symlink(self.data_dir, self.tmp / "datasets")
            home = self.tmp / "home"
            home.mkdir()
            if uid is not None:
                os.chown(home, uid, uid)
            env = _scrubbed_env(str(home), self.threads, self.device)
            command = [*python, str(self.tmp / "grader" / "runner.py")]
        if uid is not None:
            env["NN4E_SANDBOX_UID"] = str(uid)
        self.proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            cwd=self.work, env=env, start_new_session=True, preexec_fn=_limit_child(self.limits, uid),
        )
        with _ACTIVE_LOCK:
            _ACTIVE.add(self)

    # -- protocol --------------------------------------------------------------------------
    def request(self, message: dict, timeout: float) -> dict:
        """Send one request and wait up to `timeout` seconds for its answer."""
        proc = self.proc
        if proc is None:
            raise SandboxDied(self._death_reason())
        try:
            proc.stdin.write(wire.dumps(message))
            proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            raise SandboxDied(self._death_reason()) from None
        return self._read_message(proc, time.monotonic() + timeout)

    def _read_message(self, proc: subprocess.Popen, deadline: float) -> dict:
        try:
            fd = proc.stdout.fileno()
        except ValueError:  # closed by close_all()
            raise SandboxDied(self._death_reason()) from None
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SandboxTimeout()
            try:
                ready, _, _ = select.select([fd], [], [], min(remaining, 1.0))
                if not ready:
                    continue
                chunk = os.read(fd, 1 << 20)
            except (OSError, ValueError):
                raise SandboxDied(self._death_reason()) from None
            if not chunk:
                raise SandboxDied(self._death_reason())
            self._buffer += chunk
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise SandboxDied("the notebook sent more data than a probe may export")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return wire.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise SandboxDied("the grader's channel was corrupted by the notebook") from None

    def _death_reason(self) -> str:
        proc = self.proc
        if proc is None:
            return "the grader stopped the notebook (interrupted)"
        code = proc.wait(timeout=10)
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = {"SIGKILL": " (killed; often the memory limit)", "SIGSEGV": " (segmentation fault)",
                    "SIGXCPU": " (CPU-time limit)"}.get(name, "")
            return f"the notebook's process died with {name}{hint}"
        return f"the notebook's process exited with code {code}"

    # -- cleanup ---------------------------------------------------------------------------
    def close(self) -> None:
        """Kill the process group (and the slot uid's leftovers) and delete the folder; idempotent."""
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    stream.close()
                except OSError:
                    pass
            if self.uid is not None:
                _kill_uid(self.uid)
            self.proc = None
        if getattr(self, "_uid_lock", None) is not None:
            os.close(self._uid_lock)  # releases the flock
            self._uid_lock = None
        for _ in range(3):  # a dying process may still be writing; try again briefly
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not self.tmp.exists():
                break
            time.sleep(0.2)

    def __enter__(self) -> "Sandbox":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _claim_uid(first: int) -> tuple[int, int]:
    """Lock a uid no other sandbox (in any grader process) is using; return (uid, lock fd)."""
    UID_LOCK_DIR.mkdir(mode=0o700, exist_ok=True)
    for offset in range(UID_RANGE):
        uid = BASE_UID + (first - BASE_UID + offset) % UID_RANGE
        fd = os.open(UID_LOCK_DIR / str(uid), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return uid, fd
        except OSError:
            os.close(fd)
    raise RuntimeError("no free sandbox uid: too many sandboxes are running")


def _kill_uid(uid: int, patience_s: float = 10.0) -> None:
    """Kill every process still owned by a sandbox uid (daemons that left the process group),
    and wait until none is left, so the sandbox folder can be removed and the uid reused."""
    deadline = time.monotonic() + patience_s
    while True:
        found = False
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if entry.stat().st_uid == uid:
                    found = True
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ProcessLookupError):
                continue
        if not found or time.monotonic() > deadline:
            return
        time.sleep(0.05)
