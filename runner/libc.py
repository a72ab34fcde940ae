"""The C library, for what Python's os module does not offer: prctl, madvise, capset,
the Landlock system calls, malloc's settings. Loaded once per process (a fork keeps it).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
from collections.abc import Callable


@functools.cache
def libc() -> ctypes.CDLL:
    """This process's C library; each call keeps errno (`ctypes.get_errno()`). OSError
    where there is none to load."""
    return ctypes.CDLL(None, use_errno=True)


def glibc() -> ctypes.CDLL | None:
    """The C library if it is glibc (it has `mallopt`: musl has not), else None."""
    with contextlib.suppress(OSError, AttributeError):
        found = libc()
        found.mallopt  # noqa: B018
        return found
    return None


@functools.cache
def madvise() -> Callable[[int, int, int], int] | None:
    """madvise(addr, length, advice); None where there is none."""
    with contextlib.suppress(OSError, AttributeError):
        call = libc().madvise
        call.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        return call  # type: ignore[no-any-return]
    return None


def prctl(option: int, *args: object) -> int:
    """prctl(option, args…, then zeros); -1 with errno set where the kernel refused.
    A pointer goes as a ctypes object (a Python int goes as a C int). OSError or
    AttributeError where there is no C library or no prctl."""
    padded = (*args, *(0,) * (4 - len(args)))
    return int(libc().prctl(option, *padded))
