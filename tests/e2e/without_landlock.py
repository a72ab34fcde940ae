"""A node without Landlock, for one process: a seccomp filter (as a container runtime's
profile might) that makes `landlock_create_ruleset` fail with ENOSYS, the answer of a
kernel without it. Pass `deny_landlock` as `preexec_fn`; the filter outlives exec."""

from __future__ import annotations

import ctypes
import errno
import struct

PR_SET_NO_NEW_PRIVS = 38
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
SECCOMP_RET_ALLOW = 0x7FFF0000
SECCOMP_RET_ERRNO = 0x00050000
SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on x86_64 and arm64
# classic BPF: A = seccomp_data.nr; if A == 444 return ERRNO(ENOSYS) else ALLOW
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
PROGRAM = [
    (BPF_LD_W_ABS, 0, 0, 0),
    (BPF_JEQ_K, 0, 1, SYS_LANDLOCK_CREATE_RULESET),
    (BPF_RET_K, 0, 0, SECCOMP_RET_ERRNO | errno.ENOSYS),
    (BPF_RET_K, 0, 0, SECCOMP_RET_ALLOW),
]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def deny_landlock() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in PROGRAM)
    prog = _SockFprog(len(PROGRAM), code)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_NO_NEW_PRIVS)")
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_SECCOMP)")
