"""runner/written_pages.py: learning which pages a fork writes to, and copying them in a
later fork before it needs them. Each case in a fresh interpreter, which forks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runner.written_pages import PAGE, _within
from tests.kernel import kernel_at_least

REPO = Path(__file__).resolve().parents[3]
PAGES = 256  # per buffer: each an anonymous mapping of its own (over malloc's threshold)

BUFFERS = f"""
import ctypes, json, mmap, os, resource
from runner.written_pages import PAGE, WrittenPages, learn
PAGES = {PAGES}
private = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
written, untouched = (mmap.mmap(-1, PAGES * PAGE, flags=private) for _ in range(2))
for buf in (written, untouched):
    buf.write(b"x" * len(buf))  # present in this process, as the template's memory is
def address(buf):
    return ctypes.addressof(ctypes.c_char.from_buffer(buf))
def pages_of(buf):
    return {{address(buf) + i * PAGE for i in range(PAGES)}}
def learned_pages(learned):
    return {{page for start, end in learned.runs for page in range(start, end, PAGE)}}
def write_all(buf):
    for i in range(PAGES):
        buf[i * PAGE] = ord("y")
def in_a_fork(work):
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write_fd, json.dumps(work()).encode())
        os._exit(0)
    os.close(write_fd)
    os.waitpid(pid, 0)
    return json.loads(os.read(read_fd, 1 << 16))
def faults(action):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    action()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
"""


def python(code: str) -> object:
    done = subprocess.run(
        [sys.executable, "-c", BUFFERS + code], cwd=REPO, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def populate_write_supported() -> bool:
    return kernel_at_least(5, 14)  # MADV_POPULATE_WRITE


def test_the_pages_a_fork_writes_to_are_learned_and_those_it_does_not_are_not() -> None:
    found = python("""
learned = learn(lambda: write_all(written))
print(json.dumps([
    len(pages_of(written) & learned_pages(learned)),
    len(pages_of(untouched) & learned_pages(learned)),
    learned.pages >= PAGES,
]))
""")
    assert found == [PAGES, 0, True]


def test_a_fork_that_copied_them_ahead_writes_to_them_without_faulting() -> None:
    if not populate_write_supported():
        pytest.skip("MADV_POPULATE_WRITE needs Linux 5.14")
    plain, ahead, copied = python("""
learned = learn(lambda: write_all(written))
plain = in_a_fork(lambda: faults(lambda: write_all(written)))
def copy_then_write():
    copied = learned.copy_ahead()
    return [faults(lambda: write_all(written)), copied]
ahead, copied = in_a_fork(copy_then_write)
print(json.dumps([plain, ahead, copied]))
""")  # type: ignore[misc]
    assert plain >= PAGES * 0.9  # each page copied on its first write
    assert ahead < PAGES * 0.1
    assert copied >= PAGES


def test_copying_ahead_keeps_the_contents_and_skips_what_is_no_longer_mapped() -> None:
    if not populate_write_supported():
        pytest.skip("MADV_POPULATE_WRITE needs Linux 5.14")
    same, copied, most = python("""
learned = learn(lambda: (write_all(written), write_all(untouched)))
gone = len(untouched) // PAGE
untouched.close()  # unmapped since it was learned
written[:5] = b"hello"
def copy():
    copied = learned.copy_ahead()
    return [written[:5] == b"hello" and written[PAGE:PAGE + 3] == b"xxx", copied]
same, copied = in_a_fork(copy)
print(json.dumps([same, copied, learned.pages - gone]))
""")  # type: ignore[misc]
    assert same is True
    assert PAGES <= copied <= most  # none of the pages unmapped


def test_a_failed_learning_is_an_error_not_an_empty_answer() -> None:
    said = python("""
def fails():
    raise RuntimeError("no")
try:
    learn(fails)
except OSError as exc:
    print(json.dumps(str(exc)))
""")
    assert said == "the child learning them ended with 1"


@pytest.mark.parametrize(
    ("runs", "ranges", "inside"),
    [
        ([(0, 4)], [(0, 4)], [(0, 4)]),
        ([(0, 4)], [(1, 2), (3, 8)], [(1, 2), (3, 4)]),
        ([(0, 2), (3, 6), (9, 10)], [(1, 4), (5, 9)], [(1, 2), (3, 4), (5, 6)]),
        ([(5, 6)], [(0, 5), (6, 9)], []),
        ([(0, 3), (4, 7)], [(2, 5)], [(2, 3), (4, 5)]),
        ([(0, 9)], [], []),
    ],
)
def test_only_the_parts_still_mapped_are_copied(
    runs: list[tuple[int, int]], ranges: list[tuple[int, int]], inside: list[tuple[int, int]]
) -> None:
    pages = [(a * PAGE, b * PAGE) for a, b in runs]
    mapped = [(a * PAGE, b * PAGE) for a, b in ranges]
    assert list(_within(pages, mapped)) == [(a * PAGE, b * PAGE) for a, b in inside]
