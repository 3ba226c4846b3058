"""A memory cap for sandboxes that cannot have an address-space cap: a cgroup v2 `memory.max`.

A GPU slot runs without RLIMIT_AS (CUDA reserves tens of GiB of address space it never touches).
Where the grader's own cgroup v2 is delegated to it (writable, offering the memory controller),
each such sandbox gets a child cgroup of its own with `memory.max` instead; elsewhere it runs
without a cap, and `sandbox.memory_warning` says so in the layers line.

Contract:
  - `delegation(...)` readies the delegated cgroup once per grader process and says whether it
    could. The cgroup v2 "no internal processes" rule lets a cgroup hand the memory controller to
    its children only when no process lives in it, so the grader first moves itself into a leaf
    child, `grader/` (the pattern systemd's delegation documentation prescribes), then enables
    `+memory` in the delegated cgroup. If that fails (other processes live there), it moves itself
    back, removes the leaf and reports why: the caller then warns and goes without a cap.
  - `MemoryCap(parent, name, limit)` makes one sandbox's cgroup and sets its cap; raises OSError
    when the host refuses (the sandbox then fails closed as a host fault, never as a student's
    zero). `join()` runs in the sandbox's child before it execs, so everything the notebook ever
    starts is inside. `close()` kills whatever is still inside and removes the cgroup.

Nothing here has run on a real delegated cgroup v2 with the memory controller: the machine the
project is developed on mounts the memory controller on cgroup v1. The tests use a folder standing
in for the cgroup tree, and check what is written where.
"""
from __future__ import annotations

import errno
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .isolation import delegated_cgroup

LEAF = "grader"  # where the grader process lives once it has readied its delegated cgroup


@dataclass(frozen=True)
class Delegation:
    """The delegated cgroup where sandbox cgroups go, or None and why not."""

    folder: Path | None
    why_not: str = ""


_READY: dict[tuple[str, str], Delegation] = {}
_READY_LOCK = threading.Lock()


def delegation(cgroup_root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> Delegation:
    """Ready this process's delegated cgroup v2 for memory-capped children (once; later calls
    return the first answer)."""
    key = (cgroup_root, self_cgroup)
    with _READY_LOCK:
        if key not in _READY:
            _READY[key] = _ready(delegated_cgroup(cgroup_root, self_cgroup))
        return _READY[key]


def _ready(folder: Path | None) -> Delegation:
    if folder is None:
        return Delegation(None, "no delegated cgroup v2")
    if "memory" in _read(folder / "cgroup.subtree_control").split():
        return Delegation(folder)  # readied already (by an earlier grader in this cgroup, or by hand)
    leaf = folder / LEAF
    try:
        leaf.mkdir(exist_ok=True)
        _write(leaf / "cgroup.procs", str(os.getpid()))
    except OSError as exc:
        return Delegation(None, f"could not move the grader into {leaf} ({exc.strerror or exc})")
    try:
        _write(folder / "cgroup.subtree_control", "+memory")
    except OSError as exc:
        try:  # put the grader back where it was found
            _write(folder / "cgroup.procs", str(os.getpid()))
            leaf.rmdir()
        except OSError:
            pass
        busy = " (other processes live there: run the grader in a cgroup of its own, e.g. under " \
               "`systemd-run --scope -p Delegate=yes`)" if exc.errno == errno.EBUSY else ""
        return Delegation(None, f"could not enable the memory controller in {folder}: "
                                f"{exc.strerror or exc}{busy}")
    return Delegation(folder)


class MemoryCap:
    """One sandbox's own cgroup under the delegated one, with `memory.max` and no swap."""

    def __init__(self, parent: Path, name: str, limit_bytes: int):
        self.folder = parent / name
        self.limit_bytes = limit_bytes
        self.folder.mkdir()
        try:
            _write(self.folder / "memory.max", str(limit_bytes))
            if (self.folder / "memory.swap.max").exists():  # absent without swap accounting
                _write(self.folder / "memory.swap.max", "0")  # or the cap would spill into swap
        except OSError:
            self.close()
            raise

    def join(self) -> None:
        """Move the calling process into the cgroup (the sandbox's child, before exec)."""
        _write(self.folder / "cgroup.procs", str(os.getpid()))

    def out_of_memory(self) -> bool:
        """Whether the kernel killed a process of this cgroup for reaching `memory.max`."""
        for line in _read(self.folder / "memory.events").splitlines():
            name, _, count = line.partition(" ")
            if name == "oom_kill" and count.strip() not in ("", "0"):
                return True
        return False

    def close(self, patience_s: float = 10.0) -> None:
        """Kill everything still inside (a daemon that escaped the process group too) and remove
        the cgroup; idempotent. A cgroup cannot be removed while a process lives in it."""
        deadline = time.monotonic() + patience_s
        while self.folder.exists():
            self._kill_members()
            try:
                self.folder.rmdir()
                return
            except OSError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    return  # nothing more to do: an empty leftover cgroup holds no process
            time.sleep(0.05)

    def _kill_members(self) -> None:
        try:  # cgroup.kill (Linux 5.14+) kills every member at once, races with fork included
            fd = os.open(self.folder / "cgroup.kill", os.O_WRONLY)
        except OSError:
            for pid in _read(self.folder / "cgroup.procs").split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, PermissionError, ValueError):
                    pass
            return
        try:
            os.write(fd, b"1")
        except OSError:
            pass
        finally:
            os.close(fd)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _write(path: Path, text: str) -> None:
    # One write() per value: cgroupfs takes each write as one command.
    with open(path, "a") as stream:
        stream.write(text)
