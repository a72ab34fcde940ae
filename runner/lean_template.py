"""What makes each fork of the template process cheaper, set up before and after it loads
Zyra's stack (runner/zygote.py). Both measured by bench/sync_cpu.py.

- BLAS with one thread. OpenBLAS starts a pool of worker threads in every process that
  calls it, and they spin after each call: in a forked command that is ~20 ms of CPU per
  heatmap for nothing, and with many commands at once the pools only fight over the same
  cores. The thread count is read when the library loads, so it is set before the
  preload imports numpy; a value the process was started with is kept.
- Huge pages for the template's heap. A fork copies a page-table entry per 4 KiB page of
  the parent's memory and the child's exit drops them again: with the heap collapsed
  into 2 MiB pages (MADV_COLLAPSE, Linux 6.1+) there are 512 times fewer, about half the
  fork's and the exit's cost. A child still copies only the 4 KiB it writes to.
"""

from __future__ import annotations

import ctypes
import os

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MADV_COLLAPSE = 25
HUGE_PAGE = 2 << 20


def single_threaded_blas() -> None:
    """Before numpy (or anything linking a BLAS) is imported."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def _heap_ranges() -> list[tuple[int, int]]:
    """The private anonymous read-write mappings (Python's arenas, malloc's heap),
    trimmed to whole huge pages."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            anonymous = len(fields) < 6 or fields[5] == "[heap]"
            if not (anonymous and fields[1].startswith("rw") and fields[1].endswith("p")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            start = -(-start // HUGE_PAGE) * HUGE_PAGE
            end = end // HUGE_PAGE * HUGE_PAGE
            if end > start:
                ranges.append((start, end))
    return ranges


def collapse_heap() -> int:
    """Collapse the heap into huge pages; the bytes collapsed (0 where the kernel
    cannot: older than 6.1, or transparent huge pages off)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        madvise = libc.madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    collapsed = 0
    for start, end in _heap_ranges():
        if madvise(start, end - start, MADV_COLLAPSE) == 0:
            collapsed += end - start
    return collapsed
