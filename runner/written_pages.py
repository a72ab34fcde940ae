"""The pages of the template's memory that commands write to, made a spare's own before
its command arrives.

A forked command shares the template's memory copy-on-write, and Python writes to every
object it touches (reference counts, caches): a heatmap's process took ~3,600
copy-on-write faults at ~3 µs each, a quarter of its time. Which pages those are hardly
depends on the command (the same modules, functions and caches), so the template learns
them once: a child of it runs the warm-ups again (runner/warm_up.py) and reports the
pages it made its own (/proc/self/pagemap's "exclusively mapped" bit). A spare forked
ahead copies them while it waits (MADV_POPULATE_WRITE, Linux 5.14+: a write fault
without a write, so the contents stay as they are), and its command then writes to pages
that are its own already. Like the heap's pre-faulting (runner/lean_template.py), only
while a core is idle: it costs the spare ~20 ms of CPU and ~25 MiB of memory of its own.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from runner.fork_output import output_of_fork
from runner.libc import madvise as libc_madvise

PAGE = os.sysconf("SC_PAGE_SIZE")
MADV_POPULATE_WRITE = 23
PRESENT, EXCLUSIVE = 1 << 63, 1 << 56  # /proc/PID/pagemap entry bits
LEARN_TIMEOUT_S = 120  # the warm-ups take about a second when run again
_RUN = struct.Struct("<QQ")

Range = tuple[int, int]  # [start, end) addresses, page-aligned


def private_memory() -> list[Range]:
    """This process's private anonymous read-write mappings: malloc's heap and mmaps,
    Python's arenas, numpy's buffers."""
    ranges = []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split()
            anonymous = len(fields) < 6 or fields[5] == "[heap]"
            if anonymous and fields[1].startswith("rw") and fields[1].endswith("p"):
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


@dataclass(frozen=True)
class WrittenPages:
    """Where a command is expected to write to the template's memory."""

    runs: tuple[Range, ...] = ()  # sorted, not overlapping

    @property
    def pages(self) -> int:
        return sum((end - start) // PAGE for start, end in self.runs)

    def copy_ahead(self) -> int:
        """In a fork of the template: make those pages this process's own now; how many
        it did (0 where the kernel cannot). Only within what is still private anonymous
        memory here: the template may have unmapped some since it learned them."""
        madvise = libc_madvise()
        if madvise is None or not self.runs:
            return 0
        copied = 0
        for start, end in _within(self.runs, private_memory()):
            if madvise(start, end - start, MADV_POPULATE_WRITE) == 0:
                copied += (end - start) // PAGE
            elif ctypes.get_errno() == errno.EINVAL:
                break  # a kernel older than 5.14: no such advice
        return copied


def learn(work: Callable[[], object], timeout_s: float = LEARN_TIMEOUT_S) -> WrittenPages:
    """The pages of this process's private memory that `work`, run in a child forked
    now, writes to. OSError if the child did not report them (it failed, or ran out of
    time)."""
    ranges = private_memory()

    def report() -> bytes:
        work()
        return b"".join(_RUN.pack(*run) for run in _written(ranges))

    data = output_of_fork(report, "the child learning them", timeout_s)
    return WrittenPages(tuple(_RUN.iter_unpack(data)))


def _written(ranges: Iterable[Range]) -> Iterator[Range]:
    """Runs of pages within `ranges` that this process maps alone (written since the
    fork, or new): present and exclusively mapped."""
    with open("/proc/self/pagemap", "rb") as pagemap:
        for start, end in ranges:
            pagemap.seek(start // PAGE * 8)
            entries = memoryview(pagemap.read((end - start) // PAGE * 8)).cast("Q")
            run_start = None
            for i, entry in enumerate(entries):
                mine = entry & PRESENT and entry & EXCLUSIVE
                if mine and run_start is None:
                    run_start = start + i * PAGE
                elif not mine and run_start is not None:
                    yield run_start, start + i * PAGE
                    run_start = None
            if run_start is not None:
                yield run_start, start + len(entries) * PAGE


def _within(runs: Iterable[Range], ranges: Iterable[Range]) -> Iterator[Range]:
    """The parts of `runs` inside `ranges` (both sorted)."""
    pending = iter(sorted(ranges))
    current = next(pending, None)
    for start, end in runs:
        while current is not None and current[1] <= start:
            current = next(pending, None)
        while current is not None and current[0] < end:
            lo, hi = max(start, current[0]), min(end, current[1])
            if lo < hi:
                yield lo, hi
            if current[1] >= end:
                break
            current = next(pending, None)
