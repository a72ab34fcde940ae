"""runner/libc.py: the C library, loaded once, errno kept."""

from __future__ import annotations

import ctypes
import errno
import mmap
import subprocess
import sys
from pathlib import Path

from runner.libc import glibc, libc, madvise

REPO = Path(__file__).resolve().parents[3]
MADV_DONTNEED = 4


def test_it_is_loaded_once_and_keeps_errno() -> None:
    assert libc() is libc()
    assert libc().close(-1) == -1
    assert ctypes.get_errno() == errno.EBADF


def test_prctl_pads_its_arguments_and_says_a_refusal() -> None:
    """In a process of its own: PR_SET_NAME names it (15), PR_GET_NAME reads it (16)."""
    code = """
import ctypes, json
from runner.libc import prctl
name = ctypes.create_string_buffer(16)
print(json.dumps([prctl(15, b"zyra-test"), prctl(16, name), name.value.decode(),
                  prctl(-1), ctypes.get_errno()]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO)  # fmt: skip
    assert done.stdout.strip() == f'[0, 0, "zyra-test", -1, {errno.EINVAL}]'


def test_madvise_takes_addresses_beyond_32_bits() -> None:
    call = madvise()
    assert call is not None
    buffer = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buffer[:5] = b"hello"
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffer))
    assert call(address, mmap.PAGESIZE, MADV_DONTNEED) == 0
    assert buffer[:5] == b"\0" * 5  # a private page given back reads as zeros again


def test_glibc_is_told_apart_by_mallopt() -> None:
    assert (glibc() is not None) == hasattr(libc(), "mallopt")
