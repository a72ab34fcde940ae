"""runner/lean_template.py, each in a fresh interpreter: what it sets up is process-wide
and decided when numpy loads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.lean_template import usable_cpus
from tests.kernel import kernel_at_least

REPO = Path(__file__).resolve().parents[3]

OPENBLAS_THREADS = """
import ctypes, json, sys
{setup}
import numpy
path = next(l.split()[-1] for l in open("/proc/self/maps") if "libopenblas" in l)
print(json.dumps(ctypes.CDLL(path).openblas_get_num_threads64_()))
"""


def python(code: str, **env: str) -> object:
    clean = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env={**clean, **env},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_template_module_loads_no_numpy_before_its_main_runs() -> None:
    # Else the BLAS thread count would be fixed before single_threaded_blas() sets it.
    code = "import json, sys, runner.zygote; print(json.dumps('numpy' in sys.modules))"
    assert python(code) is False


def test_blas_runs_one_thread_unless_the_process_was_told_otherwise() -> None:
    setup = "from runner.lean_template import single_threaded_blas; single_threaded_blas()"
    assert python(OPENBLAS_THREADS.format(setup=setup)) == 1
    assert python(OPENBLAS_THREADS.format(setup=setup), OPENBLAS_NUM_THREADS="2") == 2


def test_the_heap_is_collapsed_into_huge_pages_where_the_kernel_can() -> None:
    code = """
import json
from runner.lean_template import collapse_heap
junk = [bytearray(64) for _ in range(200_000)]  # a heap worth collapsing
collapsed = collapse_heap()
huge = next(int(l.split()[1]) for l in open("/proc/self/smaps_rollup")
            if l.startswith("AnonHugePages:"))
print(json.dumps([collapsed, huge * 1024]))
"""
    collapsed, huge = python(code)  # type: ignore[misc]
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    if kernel_at_least(6, 1) and thp.exists() and "[never]" not in thp.read_text():
        assert collapsed >= 2 << 20 and huge >= collapsed
    else:
        assert collapsed == 0  # refused, and nothing else happens


MALLOC_FAULTS = """
import ctypes, json, resource
from runner.lean_template import keep_freed_memory, prefault_heap
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
MB = 1 << 20

def faults_touching(*sizes):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    blocks = [libc.malloc(size) for size in sizes]
    for block, size in zip(blocks, sizes):
        ctypes.memset(block, 1, size)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for block in blocks:
        libc.free(block)
    return after - before

{setup}
faults_touching(4 * MB)  # a block a command once had
print(json.dumps(faults_touching(2 * MB, 2 * MB)))  # ... and what the next needs
"""
PAGES_OF_4_MB = 1024


def test_freed_blocks_stay_mapped_for_the_next_allocations() -> None:
    """glibc's default gives a freed 4 MiB block back: the next 4 MiB fault anew.
    With the template's thresholds they come from memory already mapped."""
    default = python(MALLOC_FAULTS.format(setup=""))
    kept = python(MALLOC_FAULTS.format(setup="assert keep_freed_memory()"))
    assert isinstance(default, int) and isinstance(kept, int)
    assert default >= PAGES_OF_4_MB * 0.9
    assert kept < PAGES_OF_4_MB * 0.1


def test_a_prefaulted_heap_serves_a_commands_first_allocations_mapped() -> None:
    code = MALLOC_FAULTS.replace(
        "faults_touching(4 * MB)  # a block a command once had\n", ""
    ).format(setup="assert keep_freed_memory() and prefault_heap()")
    plain = MALLOC_FAULTS.replace(
        "faults_touching(4 * MB)  # a block a command once had\n", ""
    ).format(setup="assert keep_freed_memory()")
    prefaulted, cold = python(code), python(plain)
    assert isinstance(prefaulted, int) and isinstance(cold, int)
    assert cold >= PAGES_OF_4_MB * 0.9
    assert prefaulted < PAGES_OF_4_MB * 0.1


@pytest.mark.parametrize(
    ("cpu_max", "limit"),
    [("max 100000\n", None), ("150000 100000\n", 2), ("50000 100000\n", 1), (None, None)],
)
def test_usable_cpus_are_the_affinity_within_the_cgroups_quota(
    tmp_path: Path, cpu_max: str | None, limit: int | None
) -> None:
    path = tmp_path / "cpu.max"
    if cpu_max is not None:
        path.write_text(cpu_max)
    affinity = len(os.sched_getaffinity(0))
    expected = affinity if limit is None else min(affinity, limit)
    assert usable_cpus(path) == expected
