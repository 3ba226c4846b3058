"""Start `runner.py` for one submission in a throwaway, resource-limited, isolated process.

Layers (`isolation.py` decides which are available; each result records which were active):
  process    - own session and process group, scrubbed environment, throwaway working folder,
               rlimits (address space, processes, open files, file size, CPU time); the whole
               group is killed at the end, and so are orphans it left behind.
  bubblewrap - no network, private PID namespace (so double-forked daemons die with it),
               read-only system, private /tmp, and only the interpreter, its venv, the data and
               the submission's own folder bound in. The repository itself (solutions, hidden
               checks, grading.yml, other submissions) is never visible.
  landlock   - the runner restricts itself before any student code runs: read-only system,
               interpreter and data; read-write only its working folder and private tmp; no TCP;
               no signals or abstract sockets leaving the sandbox (ABI 6+).
  user       - when the grader runs as root: student code runs as an unprivileged uid, in a
               private network namespace when root can make one.

Fork servers (`forkserver.py`): a sandbox started with `start_server` runs `runner.py --fork-server`,
which imports torch once; a sandbox given that `server` gets its runner forked from it instead of
a new process, in the same walls (the server's), with its own folder, stdio and uid hand-over.

Devices (`gpu_policy`, from the assignment's `device`): `cpu` hides the GPUs. `cuda`, and `auto` on
a machine with NVIDIA GPUs, give slot N the GPU N % (number of GPUs) through CUDA_VISIBLE_DEVICES;
bubblewrap binds the GPU nodes into its fresh /dev, Landlock lets the runner open them and read
the driver's /proc/driver/nvidia.
A GPU slot has no address-space cap (CUDA reserves far more address space than it uses). Where the
grader's cgroup v2 is delegated to it, the slot's sandbox gets a cgroup of its own with `memory.max`
instead (`memcap.py`); elsewhere it has no memory cap, and the warning says so. `cuda` on a machine
without a GPU is a ConfigError.
"""
from __future__ import annotations

import ctypes
import fcntl
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import wire
from .config import ConfigError, Limits
from .isolation import (BASE_UID, UID_RANGE, Layers, enter_private_network, find_gpus, interpreter_prefixes,
                        sandbox_python)
from .memcap import MemoryCap, delegation

PACKAGE_DIR = Path(__file__).resolve().parent
RUNNER_FILES = ("runner.py", "wire.py", "landlock.py", "probe_tools.py")  # the only grader code the sandbox sees
SANDBOX_ROOT = Path("/sandbox")
GRADER_DIR_INSIDE = Path("/opt/grader")
# Fixed, not under $TMPDIR: every grader process on the machine must see the same locks. Only root
# claims uids, and /run is root's; /tmp is the fallback for containers without it.
UID_LOCK_DIR = Path("/run/nn4e-sandbox-uids" if os.access("/run", os.W_OK) else "/tmp/nn4e-sandbox-uids")
MAX_MESSAGE_BYTES = 64 * 2**20
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/sbin", "/etc")
# Read-only extras for Landlock: torch reads the CPU layout. The rest of /proc stays closed, so a
# sandbox cannot read the environment or command line of the grader's processes.
SYSTEM_FILES = ("/proc/cpuinfo", "/sys/devices/system/cpu")
DEVICES = ("/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom")
# Folders every user may write to on the host: without bubblewrap, a sandbox uid's files there are
# removed after the run.
SHARED_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm")
DISK_POLL_S = 0.05


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


class SandboxBroken(Exception):
    """The sandbox could not be set up as promised (a fault of the grader's host, not the student's)."""


@dataclass(frozen=True)
class DevicePolicy:
    """What one slot's sandbox gets for its `device`: recorded label, binds, environment, limits."""

    label: str                                # "cpu" or "cuda:<index>", as the result records it
    binds: tuple[str, ...] = ()               # bubblewrap arguments: (--dev-bind-try, node, /dev/name) triples
    env: tuple[tuple[str, str], ...] = ()     # added to the scrubbed environment
    devices: tuple[str, ...] = ()             # device nodes the runner opens read-write (Landlock)
    readable: tuple[str, ...] = ()            # extra read-only paths (Landlock)
    cap_address_space: bool = True            # RLIMIT_AS from limits.memory_mb
    memory_cgroup: Path | None = None         # without RLIMIT_AS: the delegated cgroup its memory cap goes under
    warning: str = ""                         # for the layers line: what this slot goes without


NO_GPU_MEMORY_CAP = "no memory cap on GPU slots: "


def gpu_policy(slot: int, device: str, dev_root: str = "/dev", proc_root: str = "/proc",
               cgroup_root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> DevicePolicy:
    """The device policy of sandbox `slot` for `device` (cpu, auto or cuda) on this machine.

    cpu hides every GPU (an empty CUDA_VISIBLE_DEVICES), as does auto without GPUs (nothing to see).
    Otherwise every GPU node is bound (CUDA enumerates them all; which one a slot uses is chosen by
    CUDA_VISIBLE_DEVICES, round-robin over the GPUs), the address-space cap is dropped and the
    warning says what replaces it. Raises ConfigError for cuda on a machine without a GPU.
    """
    if device == "cpu":
        return DevicePolicy("cpu", env=(("CUDA_VISIBLE_DEVICES", ""),))
    gpus = find_gpus(dev_root, proc_root)
    if not gpus:
        if device == "cuda":
            raise ConfigError(f"device: cuda in grading.yml, but this machine has no NVIDIA GPU (no "
                              f"{os.path.join(dev_root, 'nvidia0')}): set device: cpu or auto, or grade on a "
                              "GPU machine")
        return DevicePolicy("cpu")  # auto without GPUs: the CPU, as before GPUs were supported
    index = gpus.indices[slot % len(gpus.indices)]
    inside = tuple("/dev/" + os.path.basename(node) for node in gpus.nodes)
    # --dev-bind: bwrap mounts --bind and --ro-bind with nodev, where a device node cannot be opened.
    # bwrap's fresh /dev comes first in the arguments, so these go after it.
    binds = tuple(arg for node, target in zip(gpus.nodes, inside) for arg in ("--dev-bind-try", node, target))
    # The driver's /proc folder needs no bind: the kernel shows /proc/driver in every procfs mount,
    # bwrap's fresh /proc too (and bwrap cannot make a mount point inside procfs). Landlock must allow it.
    readable = ("/proc/driver/nvidia",) if gpus.driver is not None else ()
    # The address-space cap would break CUDA: a cgroup's memory.max replaces it where one is delegated.
    cgroup = delegation(cgroup_root, self_cgroup)
    return DevicePolicy(f"cuda:{index}", binds, (("CUDA_VISIBLE_DEVICES", str(index)),), inside, readable,
                        cap_address_space=False, memory_cgroup=cgroup.folder,
                        warning="" if cgroup.folder else NO_GPU_MEMORY_CAP + cgroup.why_not)


def device_note(device: str, jobs: int) -> str:
    """One line for the layers line: the device each slot gets, and what GPU slots go without."""
    policies = [gpu_policy(slot, device) for slot in range(max(1, jobs))]
    labels = ", ".join(sorted({p.label for p in policies}))
    notes = sorted({p.warning for p in policies if p.warning}
                   | {f"GPU slots' memory capped by cgroup v2 (memory.max) under {p.memory_cgroup}"
                      for p in policies if p.memory_cgroup})
    return f"device {device}: {labels}" + "".join(f"; {note}" for note in notes)


def _scrubbed_env(home: str, tmpdir: str, threads: int, policy: DevicePolicy) -> dict[str, str]:
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": tmpdir,
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{home}/.mpl",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "TORCH_HOME": f"{home}/.torch",
    }
    env.update(policy.env)
    return env


def _tmpfs_sizes(limits: Limits) -> dict[str, int]:
    """Bytes of each size-capped tmpfs under bubblewrap; together they are the disk budget."""
    total = limits.disk_mb * 2**20
    return {"work": total // 2, "/tmp": total // 4, "/dev/shm": total - total // 2 - total // 4}


def _bwrap_args(bwrap: str, limits: Limits, inside_work: Path, grader_dir: Path, data_dir: Path | None,
                device_binds: tuple[str, ...] = ()) -> list[str]:
    """Arguments for bubblewrap. Everything the sandbox can write is a tmpfs of fixed size, so a
    submission that fills its disk gets "No space left on device" instead of filling the host's.
    `device_binds` (a GPU slot's nodes) go on top of the fresh /dev."""
    sizes = _tmpfs_sizes(limits)
    args = [bwrap, "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
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
    args.extend(["--proc", "/proc", "--dev", "/dev",
                 "--perms", "1777", "--size", str(sizes["/dev/shm"]), "--tmpfs", "/dev/shm",
                 "--perms", "1777", "--size", str(sizes["/tmp"]), "--tmpfs", "/tmp"])
    args.extend(device_binds)
    made.add("/tmp")
    for prefix in interpreter_prefixes():
        parents_of(prefix)
        args.extend(["--ro-bind", str(prefix), str(prefix)])
    parents_of(GRADER_DIR_INSIDE)
    args.extend(["--ro-bind", str(grader_dir), str(GRADER_DIR_INSIDE)])
    if data_dir is not None:
        parents_of(SANDBOX_ROOT / "datasets")
        args.extend(["--ro-bind", str(data_dir), str(SANDBOX_ROOT / "datasets")])
    parents_of(inside_work)
    args.extend(["--perms", "1777", "--size", str(sizes["work"]), "--tmpfs", str(inside_work),
                 "--chdir", str(inside_work)])
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


def _rlimits(limits: Limits, cap_address_space: bool = True) -> list[tuple[int, int]]:
    """The rlimits of a sandbox (RLIMIT_NPROC aside): (resource, value) pairs. A GPU slot has no
    address-space cap: CUDA reserves tens of GiB of virtual memory it never touches."""
    mib = 2**20
    pairs = [(resource.RLIMIT_AS, limits.memory_mb * mib)] if cap_address_space else []
    return pairs + [
        (resource.RLIMIT_NOFILE, limits.max_open_files),
        (resource.RLIMIT_FSIZE, limits.max_file_size_mb * mib),
        (resource.RLIMIT_CPU, int(limits.notebook_timeout_s) + 30),
        (resource.RLIMIT_CORE, 0),
    ]


def _limit_child(limits: Limits, uid: int | None, private_network: bool, cap_address_space: bool = True,
                 memory: MemoryCap | None = None):
    """preexec_fn: the memory cgroup, rlimits (all inherited by everything the student starts) and
    the network namespace."""
    # A sandbox uid owns nothing else; otherwise the limit must leave room for the user's own tasks.
    nproc = limits.max_processes if uid is not None else _tasks_of(os.getuid()) + limits.max_processes
    pairs = _rlimits(limits, cap_address_space)  # computed before the fork: preexec_fn stays minimal

    def apply():
        if memory is not None:
            memory.join()  # raising here makes Popen fail: no GPU sandbox without its cap
        if private_network:
            enter_private_network()  # raising here makes Popen fail: no sandbox without its wall
        for which, value in pairs:
            resource.setrlimit(which, (value, value))
        # Root ignores RLIMIT_NPROC; the runner drops to the sandbox uid before any student code.
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))

    return apply


@dataclass(eq=False)
class Sandbox:
    """One sandboxed runner process for one submission. Use as a context manager.

    Host layout of `tmp` without bubblewrap (with it, the same pieces are bound under /sandbox):
      grader/                 runner.py, wire.py, landlock.py, probe_tools.py (read-only for the sandbox)
      assignments/<id>/       the working folder (read-write)
      home/, home/tmp/        $HOME and $TMPDIR (read-write)
      datasets -> data_dir    so `../../datasets` works as in the course's folder layout
    """

    assignment_id: str
    limits: Limits
    layers: Layers
    data_dir: Path | None
    slot: int = 0
    threads: int = 1
    device: str = "cpu"
    policy: DevicePolicy = field(init=False)
    tmp: Path = field(init=False)
    work: Path = field(init=False)
    server: object | None = None  # forkserver.SlotServer: fork the runner from the slot's server
    proc: subprocess.Popen | None = field(init=False, default=None)
    uid: int | None = field(init=False, default=None)

    def __post_init__(self):
        self.policy = gpu_policy(self.slot, self.device)  # first: a ConfigError leaves nothing behind
        self.tmp = Path(tempfile.mkdtemp(prefix=f"nn4e-sandbox-{os.getpid()}-"))
        grader_dir = self.tmp / "grader"
        grader_dir.mkdir()
        for name in RUNNER_FILES:
            shutil.copy2(PACKAGE_DIR / name, grader_dir / name)
        self.work = self.tmp / "assignments" / self.assignment_id
        self.work.mkdir(parents=True)
        self.home = self.tmp / "home"
        (self.home / "tmp").mkdir(parents=True)
        if self.data_dir is not None and not self.layers.bubblewrap:
            os.symlink(self.data_dir, self.tmp / "datasets")
        self._buffer = b""
        self._uid_lock = None
        self._memory: MemoryCap | None = None

    def _hand_over(self, uid: int) -> None:
        """Give the sandbox uid its own folders, private to it; everything else stays root's."""
        # 0711: the uid may pass through to its folders but not list the others.
        for path in (self.tmp, self.tmp / "assignments"):
            os.chmod(path, 0o711)
        os.chmod(self.tmp / "grader", 0o755)
        for path in (self.work, self.home, self.home / "tmp"):
            os.chown(path, uid, uid)
            os.chmod(path, 0o700)

    def landlock_rules(self) -> dict | None:
        """What the runner may read and write, as paths it sees (inside bubblewrap, or on the host)."""
        if not self.layers.landlock:
            return None
        prefixes = [str(p) for p in interpreter_prefixes()]
        if self.layers.bubblewrap:
            read = [*SYSTEM_DIRS, *prefixes, str(GRADER_DIR_INSIDE), str(SANDBOX_ROOT / "datasets")]
            write = [str(SANDBOX_ROOT / "assignments" / self.assignment_id), "/tmp"]
        else:
            read = [*SYSTEM_DIRS, *prefixes, str(self.tmp / "grader")]
            if self.data_dir is not None:
                read.append(str(Path(self.data_dir).resolve()))
            write = [str(self.work), str(self.home)]
        return {"read": [*read, *SYSTEM_FILES, *self.policy.readable],
                "write": [*write, *DEVICES, *self.policy.devices]}

    def start(self, serve_fd: int | None = None) -> None:
        """Start the runner: a new process, or with `server` a child forked by the slot's fork
        server. `serve_fd` starts this sandbox as a fork server instead, its channel on that fd."""
        if self.server is not None:
            self.uid = self.server.uid  # the slot's uid, claimed by its server's sandbox
            if self.uid is not None:
                self._hand_over(self.uid)
        elif self.layers.unprivileged_user:
            self.uid, self._uid_lock = _claim_uid(BASE_UID + self.slot)
            self._hand_over(self.uid)
        uid = self.uid
        python = [sandbox_python(), "-E", "-s"]
        serve = ["--fork-server", str(serve_fd)] if serve_fd is not None else []
        if self.layers.bubblewrap:
            inside_work = SANDBOX_ROOT / "assignments" / self.assignment_id
            env = _scrubbed_env("/tmp", "/tmp", self.threads, self.policy)
            cwd = str(inside_work)
            command = _bwrap_args(self.layers.bwrap, self.limits, inside_work, self.tmp / "grader", self.data_dir,
                                  self.policy.binds)
            command += [*python, str(GRADER_DIR_INSIDE / "runner.py"), *serve]
        else:
            env = _scrubbed_env(str(self.home), str(self.home / "tmp"), self.threads, self.policy)
            cwd = str(self.work)
            command = [*python, str(self.tmp / "grader" / "runner.py"), *serve]
            if uid is None:
                _become_subreaper()  # orphans of the sandbox become ours, so close() can find them
        if uid is not None:
            env["NN4E_SANDBOX_UID"] = str(uid)
        # Start-up failures (a missing interpreter, a broken venv) are kept for the error message;
        # the runner points its stderr at /dev/null before any student code runs.
        self._stderr = tempfile.TemporaryFile()
        self._started_ticks = _now_ticks()  # everything the sandbox starts is younger than this
        if self.server is not None:
            # Not under the lock, unlike a Popen: a forked runner is the server's child, never one
            # of ours that an orphan hunt could mistake, and forking waits for the server's answer.
            self.proc = self.server.fork(env, cwd, self._stderr.fileno())
            with _ACTIVE_LOCK:
                _ACTIVE.add(self)
        else:
            self._popen(command, env, uid, () if serve_fd is None else (serve_fd,))
        self.disk_exceeded = ""
        if serve_fd is None:  # a fork server runs no student code: each child's sandbox watches its disk
            threading.Thread(target=self._watch_disk, args=(self.proc,), daemon=True).start()

    def _popen(self, command: list[str], env: dict[str, str], uid: int | None, pass_fds: tuple[int, ...]) -> None:
        if self.policy.memory_cgroup is not None:
            self._memory = self._memory_cap(self.policy.memory_cgroup)
        preexec = _limit_child(self.limits, uid, self.layers.private_network and not self.layers.bubblewrap,
                               self.policy.cap_address_space, self._memory)
        with _ACTIVE_LOCK:  # registered as it starts, so no orphan hunt mistakes it for an orphan
            try:
                self.proc = subprocess.Popen(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                    cwd=self.work, env=env, start_new_session=True, preexec_fn=preexec, pass_fds=pass_fds,
                )
            except subprocess.SubprocessError as exc:  # preexec_fn raised: a wall could not be put up
                raise SandboxBroken(f"the sandbox's process could not be given its limits ({exc})") from None
            _ACTIVE.add(self)

    def start_server(self) -> socket.socket:
        """Start this sandbox as a slot's fork server (`forkserver.py`); returns our end of the
        socket its children's stdio is sent over."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.start(theirs.fileno())
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return ours

    def read_reply(self, timeout: float) -> dict:
        """The next message from the runner, without sending a request (a fork server's greeting)."""
        if self.proc is None:
            raise SandboxDied(self._death_reason())
        return self._read_message(self.proc, time.monotonic() + timeout)

    def _memory_cap(self, parent: Path) -> MemoryCap:
        """The sandbox's own cgroup under `parent`, capped at the memory limit. Under bubblewrap its
        tmpfs folders (the disk budget) live in memory, charged to the cgroup, so they are added."""
        cap = self.limits.memory_mb + (self.limits.disk_mb if self.layers.bubblewrap else 0)
        try:
            return MemoryCap(parent, self.tmp.name, cap * 2**20)
        except OSError as exc:
            raise SandboxBroken(f"could not give the sandbox its memory cap, a cgroup under {parent} "
                                f"({exc.strerror or exc}); grade with device: cpu, or fix the cgroup's "
                                "delegation") from None

    def initialise(self, seed: int, threads: int = 1, torch: bool = True, timeout: float = 120) -> dict:
        """Start the notebook's shell; the runner applies Landlock first, and must confirm it did."""
        reply = self.request({"op": "init", "seed": seed, "threads": threads, "torch": torch,
                              "landlock": self.landlock_rules()}, timeout)
        if reply.get("op") != "ready":
            raise SandboxBroken(f"the sandbox could not start: {reply.get('error', reply)}")
        if reply.get("landlock", 0) != self.layers.landlock:
            raise SandboxBroken(f"the runner applied Landlock ABI {reply.get('landlock', 0)}, "
                                f"not {self.layers.landlock}: refusing to run the notebook")
        return reply

    # -- the disk budget -----------------------------------------------------------------------
    def inside_writable(self) -> list[str]:
        """Every folder a submission may write inside bubblewrap (each a size-capped tmpfs)."""
        return [str(SANDBOX_ROOT / "assignments" / self.assignment_id), "/tmp", "/dev/shm"]

    def disk_usage(self, proc: subprocess.Popen) -> tuple[int, int]:
        """(bytes, files and folders) the submission has written so far."""
        if self.layers.bubblewrap:
            return _tmpfs_usage(proc.pid, self.inside_writable())
        roots = [self.work, self.home]
        total = [0, 0]
        for root in roots:
            _add_tree(str(root), total)
        if self.uid is not None:  # without bubblewrap or Landlock, the uid may also write in /tmp
            for shared in SHARED_WRITABLE:
                _add_tree(shared, total, owner=self.uid)
        return total[0], total[1]

    def _watch_disk(self, proc: subprocess.Popen) -> None:
        """Kill the sandbox once it has written more than its budget (bytes or files).

        Under bubblewrap the tmpfs sizes cap the bytes, and this caps the number of files. Without
        bubblewrap nothing stops a write as it happens, so the submission is stopped at half its
        budget: the other half absorbs what a fast writer adds between two checks (`DISK_POLL_S`;
        about 100-170 MB was measured on a fast disk).
        """
        budget, files = self.limits.disk_mb * 2**20, self.limits.max_files
        if not self.layers.bubblewrap:
            budget //= 2
        while proc.poll() is None:
            try:
                used, count = self.disk_usage(proc)
            except OSError:
                used, count = 0, 0
            if used > budget or count > files:
                self.disk_exceeded = (f"disk limit reached ({used / 2**20:.0f} MiB in {count} files; the limit is "
                                      f"{self.limits.disk_mb} MiB and {files} files)")
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            time.sleep(DISK_POLL_S)

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
        if self.layers.bubblewrap and code is not None and code - 128 in {int(s) for s in signal.valid_signals()}:
            # bubblewrap exits with 128 + N when its child dies of signal N: report the signal, as a
            # runner forked inside bubblewrap (whose status the fork server reads) is reported.
            code = 128 - code
        if code is not None and code < 0:
            name = signal.Signals(-code).name
            hint = {"SIGKILL": " (killed; often the memory limit)", "SIGSEGV": " (segmentation fault)",
                    "SIGXCPU": " (CPU-time limit)"}.get(name, "")
            if getattr(self, "disk_exceeded", ""):
                return self.disk_exceeded
            if self._memory is not None and self._memory.out_of_memory():
                return f"the notebook ran out of memory (the limit is {self.limits.memory_mb} MiB)"
            return f"the notebook's process died with {name}{hint}"
        return f"the notebook's process exited with code {code}" + self._startup_error()

    def _startup_error(self) -> str:
        text = self.startup_log()
        return f" ({text.splitlines()[-1][:300]})" if text else ""

    def startup_log(self) -> str:
        """The runner's own error output (written only before it hands over to student code)."""
        stream = getattr(self, "_stderr", None)
        if stream is None or stream.closed:
            return ""
        stream.seek(0)
        return stream.read(4000).decode(errors="replace").strip()

    # -- cleanup ---------------------------------------------------------------------------
    def close(self) -> None:
        """Kill the process group (and the slot uid's leftovers) and delete the folder; idempotent."""
        with _ACTIVE_LOCK:
            _ACTIVE.discard(self)
        if self.proc is not None:
            if self.server is not None:
                # The server kills what the submission left (its subreaper) and empties its folders;
                # killing the process group here would, inside bubblewrap, kill the whole slot.
                self.proc.clean(self.inside_writable() if self.layers.bubblewrap else [], ipc=self.layers.bubblewrap)
            else:
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
                if not self.layers.bubblewrap:
                    _remove_files_of(self.uid)
            elif not self.layers.bubblewrap and self.server is None:
                _kill_orphans(self._started_ticks)
            self.proc = None
        if self._memory is not None:
            self._memory.close()  # after the kills above: a cgroup is removed only once empty
            self._memory = None
        if getattr(self, "_stderr", None) is not None:
            self._stderr.close()
        if getattr(self, "_uid_lock", None) is not None:
            os.close(self._uid_lock)  # releases the flock
            self._uid_lock = None
        for _ in range(3):  # a dying process may still be writing; try again briefly
            shutil.rmtree(self.tmp, ignore_errors=True)
            if not self.tmp.exists():
                break
            time.sleep(0.2)

    def __enter__(self) -> "Sandbox":
        try:
            self.start()
        except BaseException:
            self.close()  # __exit__ does not run when __enter__ raises: leave no folder or cgroup behind
            raise
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


def _remove_files_of(uid: int) -> None:
    """Delete what a sandbox uid left in the host's shared writable folders (no bubblewrap /tmp)."""
    for root in SHARED_WRITABLE:
        for folder, dirs, files in os.walk(root):
            for name in list(dirs) + files:
                path = os.path.join(folder, name)
                try:
                    if os.lstat(path).st_uid != uid:
                        continue
                    if name in dirs:
                        dirs.remove(name)
                        shutil.rmtree(path, ignore_errors=True)
                    else:
                        os.unlink(path)
                except OSError:
                    continue


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def _stat_fields(pid: int | str) -> list[str]:
    """/proc/<pid>/stat's fields after the command name: [0] is field 3 (state), [1] the parent."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _now_ticks() -> int:
    """Now, in the clock ticks since boot that /proc/<pid>/stat's start time (field 22) counts,
    rounded down a tick so that a process started this instant is not older."""
    uptime = float(Path("/proc/uptime").read_text().split()[0])
    return max(0, int(uptime * os.sysconf("SC_CLK_TCK")) - 1)


def _kill_orphans(since_ticks: int, patience_s: float = 10.0) -> None:
    """Kill processes a sandbox left behind when it has neither a PID namespace nor its own uid.

    The grader is a child subreaper, so a daemon that double-forked out of its process group is
    re-parented to the grader instead of init. Any child of ours that is not a running sandbox's
    runner and started no earlier than this sandbox (`since_ticks`) is such an orphan:
    runners are registered under the same lock they are started with, and the grader's own older
    children (a Dask worker's, a notebook server's, multiprocessing's resource tracker) are spared.
    An orphan's own children are re-parented to us in turn when it dies.
    """
    me = os.getpid()
    deadline = time.monotonic() + patience_s
    while time.monotonic() < deadline:
        with _ACTIVE_LOCK:
            runners = {box.proc.pid for box in _ACTIVE if box.proc is not None}
            found = _kill_children_except(me, runners, since_ticks)
        if not found:
            return
        time.sleep(0.05)


def _kill_children_except(me: int, runners: set[int], since_ticks: int) -> bool:
    """SIGKILL (and reap) every child of `me` started at or after `since_ticks`, but `runners`;
    True if there was one."""
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in runners:
            continue
        try:
            fields = _stat_fields(entry.name)
            parent, started = int(fields[1]), int(fields[19])
        except (OSError, IndexError, ValueError):
            continue
        if parent != me or started < since_ticks:
            continue
        found = True
        try:
            os.kill(int(entry.name), signal.SIGKILL)
            os.waitpid(int(entry.name), os.WNOHANG)
        except (ProcessLookupError, ChildProcessError):
            pass
    return found



def _add_tree(root: str, total: list[int], owner: int | None = None) -> None:
    """Add the bytes allocated under `root` and the number of entries to `total`; with `owner`,
    only entries of that uid (and everything under them), as in a shared folder such as /tmp."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if owner is not None and info.st_uid != owner:
            continue
        total[0] += info.st_blocks * 512
        total[1] += 1
        if entry.is_dir(follow_symlinks=False):
            _add_tree(entry.path, total)


def _tmpfs_usage(bwrap_pid: int, mounts: list[str]) -> tuple[int, int]:
    """Bytes and inodes used in the sandbox's tmpfs mounts, read through a sandboxed process's root.

    The outer bwrap process stays in the host's mount namespace; its child is in the sandbox's.
    """
    try:
        children = Path(f"/proc/{bwrap_pid}/task/{bwrap_pid}/children").read_text().split()
    except OSError:
        return 0, 0
    if not children:
        return 0, 0
    used = files = 0
    for mount in mounts:
        stats = os.statvfs(f"/proc/{children[0]}/root{mount}")
        used += (stats.f_blocks - stats.f_bfree) * stats.f_frsize
        files += stats.f_files - stats.f_ffree
    return used, files
