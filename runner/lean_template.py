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
- malloc as a warm process has it. glibc serves blocks over 128 KiB with a fresh mmap and
  gives them back on free, raising that threshold only as a long-running process frees
  such blocks: a forked command starts at the default and takes a page fault for every
  page of every such block anew (~1,200 of a heatmap's ~5,800 faults). The template sets
  the thresholds where glibc's own adjustment ends (32 MiB; trimming at twice that),
  and every child inherits them.
- A spare pre-faults malloc's heap while it waits (8 MiB, ~5 ms of CPU): the command
  then finds the memory it allocates first already mapped (~2,500 fewer faults, ~10 %
  of a heatmap's time). Only while the machine has an idle core (runner/zygote.py
  decides): under full load those 5 ms would be taken from running commands.
- The same spare copies the pages of the template's memory that commands write to
  (runner/written_pages.py), so that they do not fault for copies one by one.
"""

from __future__ import annotations

import ctypes
import math
import os
from pathlib import Path

from runner.libc import glibc, madvise
from runner.written_pages import private_memory

BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
MADV_COLLAPSE = 25
HUGE_PAGE = 2 << 20
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's ceiling for its dynamic threshold (64-bit)
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # as glibc sets it when it raises the threshold
PREFAULT_BYTES = 8 << 20
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max …"


def single_threaded_blas() -> None:
    """Before numpy (or anything linking a BLAS) is imported."""
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")


def _heap_ranges() -> list[tuple[int, int]]:
    """The private anonymous read-write mappings (Python's arenas, malloc's heap),
    trimmed to whole huge pages."""
    ranges = []
    for start, end in private_memory():
        start = -(-start // HUGE_PAGE) * HUGE_PAGE
        end = end // HUGE_PAGE * HUGE_PAGE
        if end > start:
            ranges.append((start, end))
    return ranges


def collapse_heap() -> int:
    """Collapse the heap into huge pages; the bytes collapsed (0 where the kernel
    cannot: older than 6.1, or transparent huge pages off)."""
    call = madvise()
    if call is None:
        return 0
    collapsed = 0
    for start, end in _heap_ranges():
        if call(start, end - start, MADV_COLLAPSE) == 0:
            collapsed += end - start
    return collapsed


def keep_freed_memory() -> bool:
    """malloc's thresholds as a long-running process ends up with; whether they were set
    (glibc only). Call in the template: its children inherit them."""
    libc = glibc()
    if libc is None:
        return False
    return bool(
        libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        and libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )


def prefault_heap(size: int = PREFAULT_BYTES) -> bool:
    """Map `size` bytes of malloc's heap now, and keep them for the next allocations
    (needs `keep_freed_memory` first); whether it did."""
    libc = glibc()
    if libc is None or size >= MMAP_THRESHOLD:
        return False
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    block = libc.malloc(size)
    if not block:
        return False
    ctypes.memset(block, 0, size)
    libc.free(block)
    return True


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may keep busy: its affinity, within its cgroup's CPU quota
    (a container's CPU limit, which `os.cpu_count()` does not show)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return cpus
