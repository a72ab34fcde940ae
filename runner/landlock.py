"""Landlock, the Linux security module an unprivileged process uses to confine itself.

A ruleset names the kinds of access it handles; every such access is then denied
unless a rule allows it beneath a given file or directory. Once a process calls
`restrict_self`, it and every process it starts keep the restriction for good.
Since ABI 6 a ruleset can also scope signals and abstract Unix sockets: the
process may then only signal, or connect to, processes inside its own domain.
A confined process can never ptrace, or read the sensitive /proc files of,
a process outside its domain.

Bindings through ctypes: the three system calls have the same numbers on every
architecture Linux gives them to. See landlock(7).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
from enum import IntFlag

from runner.libc import libc, prctl

SYS_CREATE_RULESET = 444
SYS_ADD_RULE = 445
SYS_RESTRICT_SELF = 446
CREATE_RULESET_VERSION = 1
RULE_PATH_BENEATH = 1
PR_SET_NO_NEW_PRIVS = 38


class FsAccess(IntFlag):
    EXECUTE = 1 << 0
    WRITE_FILE = 1 << 1
    READ_FILE = 1 << 2
    READ_DIR = 1 << 3
    REMOVE_DIR = 1 << 4
    REMOVE_FILE = 1 << 5
    MAKE_CHAR = 1 << 6
    MAKE_DIR = 1 << 7
    MAKE_REG = 1 << 8
    MAKE_SOCK = 1 << 9
    MAKE_FIFO = 1 << 10
    MAKE_BLOCK = 1 << 11
    MAKE_SYM = 1 << 12
    REFER = 1 << 13  # ABI 2
    TRUNCATE = 1 << 14  # ABI 3
    IOCTL_DEV = 1 << 15  # ABI 5


class Scope(IntFlag):
    ABSTRACT_UNIX_SOCKET = 1 << 0  # ABI 6
    SIGNAL = 1 << 1  # ABI 6


# Rights that make sense on a file (not a directory) in a rule.
FILE_RIGHTS = (
    FsAccess.EXECUTE
    | FsAccess.WRITE_FILE
    | FsAccess.READ_FILE
    | FsAccess.TRUNCATE
    | FsAccess.IOCTL_DEV
)
READ = FsAccess.READ_FILE | FsAccess.READ_DIR
READ_EXECUTE = READ | FsAccess.EXECUTE
_FS_BY_ABI = {
    1: FsAccess(0x1FFF),
    2: FsAccess(0x3FFF),
    3: FsAccess(0x7FFF),
    5: FsAccess(0xFFFF),
}


def handled_fs(abi: int) -> FsAccess:
    """Every filesystem right the kernel's ABI knows."""
    return _FS_BY_ABI[max(k for k in _FS_BY_ABI if k <= abi)] if abi >= 1 else FsAccess(0)


def scopes(abi: int) -> Scope:
    return Scope.ABSTRACT_UNIX_SOCKET | Scope.SIGNAL if abi >= 6 else Scope(0)


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class LandlockError(OSError):
    """The kernel refused a Landlock call."""


def abi_version() -> int:
    """The kernel's Landlock ABI version; 0 when Landlock is absent or disabled."""
    try:
        lib = libc()
    except OSError:
        return 0
    version = lib.syscall(SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                          ctypes.c_uint32(CREATE_RULESET_VERSION))  # fmt: skip
    return max(0, int(version))


def set_no_new_privs() -> None:
    """No exec can grant privileges again (setuid bits, file capabilities)."""
    if prctl(PR_SET_NO_NEW_PRIVS, 1) != 0:
        raise LandlockError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS) failed")


class Ruleset:
    """Rules gathered, then applied to the calling thread (and its future children)."""

    def __init__(self, abi: int) -> None:
        if abi < 1:
            raise LandlockError(0, "Landlock is not available on this kernel")
        self.abi = abi
        self.handled = handled_fs(abi)
        attr = _RulesetAttr(int(self.handled), 0, int(scopes(abi)))
        # The struct grew with the ABI; older kernels accept only their own size.
        size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else 8
        self._libc = libc()
        fd = self._libc.syscall(SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                                ctypes.c_uint32(0))  # fmt: skip
        if fd < 0:
            raise LandlockError(ctypes.get_errno(), "landlock_create_ruleset failed")
        self._fd = fd

    def allow(self, path: str, access: FsAccess) -> bool:
        """Allow `access` beneath `path`; False when the path does not exist."""
        try:
            target = os.open(path, os.O_PATH | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            if not os.path.isdir(path):
                access &= FILE_RIGHTS
            rule = _PathBeneathAttr(int(access & self.handled), target)
            if self._libc.syscall(SYS_ADD_RULE, self._fd, RULE_PATH_BENEATH, ctypes.byref(rule),
                                  ctypes.c_uint32(0)) != 0:  # fmt: skip
                raise LandlockError(ctypes.get_errno(), f"landlock_add_rule failed for {path}")
        finally:
            os.close(target)
        return True

    def restrict_self(self) -> None:
        """Confine the calling thread; needs no_new_privs (or CAP_SYS_ADMIN)."""
        try:
            if self._libc.syscall(SYS_RESTRICT_SELF, self._fd, ctypes.c_uint32(0)) != 0:
                raise LandlockError(ctypes.get_errno(), "landlock_restrict_self failed")
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1
