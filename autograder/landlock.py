"""Restrict the calling process with Landlock: which folders it may read or write, no TCP, no
signals or abstract UNIX sockets beyond its own sandbox.

Landlock is the Linux security module (5.13 and later) that any unprivileged process may use to
restrict itself and its future children. It needs no user namespace, so it still works on hosts
where bubblewrap cannot start (Ubuntu 24.04's AppArmor restriction, Docker's default seccomp
profile, hardened kernels). A restriction can never be lifted, not even by root.

This file is copied into the sandbox next to `runner.py` and imports only the standard library:
the runner applies the grader's rules to itself before any student code runs. The PyPI bindings
were not used for that reason, and because at the time of writing they were pre-1.0 releases, one
of them without the network and scope rights this sandbox relies on. The calls below follow the
kernel's documented interface (Documentation/userspace-api/landlock.rst).

Contract: `abi_version()` is 0 when Landlock is unavailable. `restrict()` either applies every
rule the running kernel supports and returns its ABI version, or raises `LandlockError` and
leaves the process unrestricted; callers must then refuse to run untrusted code (fail closed).
"""
from __future__ import annotations

import ctypes
import os

# Same numbers on every architecture: these syscalls were added after the tables were unified.
_SYS_CREATE_RULESET, _SYS_ADD_RULE, _SYS_RESTRICT_SELF = 444, 445, 446
_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1
_PR_SET_NO_NEW_PRIVS = 38

# Filesystem rights, and the ABI that introduced them.
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1 << 0, 1 << 1, 1 << 2, 1 << 3
REMOVE_DIR, REMOVE_FILE, MAKE_CHAR, MAKE_DIR = 1 << 4, 1 << 5, 1 << 6, 1 << 7
MAKE_REG, MAKE_SOCK, MAKE_FIFO, MAKE_BLOCK, MAKE_SYM = 1 << 8, 1 << 9, 1 << 10, 1 << 11, 1 << 12
REFER = 1 << 13        # ABI 2: link or rename across folders
TRUNCATE = 1 << 14     # ABI 3
IOCTL_DEV = 1 << 15    # ABI 5
_FS_BY_ABI = {1: (1 << 13) - 1, 2: REFER, 3: TRUNCATE, 5: IOCTL_DEV}
# Network rights (ABI 4): handled and never granted, so every TCP bind and connect is refused.
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
# Scopes (ABI 6): no abstract UNIX socket or signal may reach a process outside this domain.
_SCOPE_ABSTRACT_UNIX_SOCKET, _SCOPE_SIGNAL = 1 << 0, 1 << 1

# Rights that make sense on a single file (the kernel rejects directory rights there).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV
READ = EXECUTE | READ_FILE | READ_DIR


class LandlockError(OSError):
    """Landlock could not be applied; the process is unrestricted and must not run student code."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64),
                ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def _syscall(number: int, *args) -> int:
    result = _libc.syscall(number, *args)
    if result < 0:
        errno = ctypes.get_errno()
        raise LandlockError(errno, os.strerror(errno))
    return result


def abi_version() -> int:
    """The kernel's Landlock ABI version, or 0 when Landlock is missing or disabled."""
    try:
        return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION))
    except (LandlockError, AttributeError):
        return 0


def handled_fs(abi: int) -> int:
    """Every filesystem right the given ABI knows: all of them are denied unless a rule grants them."""
    rights = 0
    for since, bits in _FS_BY_ABI.items():
        if abi >= since:
            rights |= bits
    return rights


def restrict(read: list[str], write: list[str], abi: int | None = None) -> int:
    """Allow reading beneath `read`, and everything beneath `write`; deny the rest of the
    filesystem, TCP (ABI 4+), and signals and abstract sockets leaving the sandbox (ABI 6+).

    Entries may be folders or single files (a device such as /dev/null). Paths that do not
    exist are skipped. Returns the ABI version applied.
    """
    abi = abi_version() if abi is None else abi
    if abi < 1:
        raise LandlockError(0, "Landlock is not available on this kernel")
    fs = handled_fs(abi)
    attr = _RulesetAttr(fs, _NET_BIND_TCP | _NET_CONNECT_TCP if abi >= 4 else 0,
                        _SCOPE_ABSTRACT_UNIX_SOCKET | _SCOPE_SIGNAL if abi >= 6 else 0)
    # Older kernels reject a struct larger than they know; pass only the fields this ABI has.
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    ruleset = _syscall(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    try:
        for paths, rights in ((read, READ & fs), (write, fs)):
            for path in paths:
                _allow(ruleset, path, rights)
        if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
            errno = ctypes.get_errno()
            raise LandlockError(errno, f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(errno)}")
        _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return abi


def _allow(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        if not os.path.isdir(path):
            rights &= _FILE_RIGHTS
        rule = _PathBeneathAttr(rights, fd)
        try:
            _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(_RULE_PATH_BENEATH), ctypes.byref(rule),
                     ctypes.c_uint32(0))
        except LandlockError as exc:
            raise LandlockError(exc.errno, f"cannot add a Landlock rule for {path}: {exc.strerror}") from None
    finally:
        os.close(fd)
