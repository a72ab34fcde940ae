"""A large file up through the API and back down: throughput, and how far the API's
resident memory rises while it streams (the goal: less than 100 MB).

Starts the API (embedded default, local storage), uploads a generated file through
POST /upload, copies it into a job's outputs with a sync `disseminate local`, and
downloads that output, streaming both ways and checking its SHA-256 both ways. Before
each transfer the API's peak-RSS counter is reset (/proc/PID/clear_refs); the growth is
how far the peak (VmHWM) rose above the resident size before the transfer.

    .venv/bin/python bench/transfer.py [--quick]
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.tables import Table
from tests.e2e.conftest import start_api, stop_api

MiB = 1 << 20
MB = 1_000_000
SIZE_MIB, QUICK_SIZE_MIB = 1024, 100
GOAL_GROWTH_MB = 100


@dataclass
class Transfer:
    name: str
    seconds: float
    rss_before_kib: int
    peak_kib: int

    @property
    def growth_mb(self) -> float:
        return (self.peak_kib - self.rss_before_kib) * 1024 / MB


def status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> int:
    """Reset the process's VmHWM to its current RSS (clear_refs 5); that RSS, in KiB."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kib(pid, "VmRSS")


def write_source(path: Path, size_mib: int) -> str:
    """A file of distinct blocks (no page deduplicates another); its SHA-256."""
    digest = hashlib.sha256()
    block = bytes(range(256)) * (MiB // 256)
    with path.open("wb") as f:
        for i in range(size_mib):
            chunk = block[:-8] + i.to_bytes(8, "big")
            digest.update(chunk)
            f.write(chunk)
    return digest.hexdigest()


def measure(quick: bool) -> list[Table]:
    size_mib = QUICK_SIZE_MIB if quick else SIZE_MIB
    transfers: list[Transfer] = []
    with tempfile.TemporaryDirectory(prefix="zyra-bench-transfer-") as tmp:
        root = Path(tmp)
        source = root / "big.bin"
        expected = write_source(source, size_mib)
        (root / "inputs").mkdir()
        server = start_api(root / "api", root / "inputs", ZYRA_MAX_UPLOAD_MB=str(size_mib + 16))
        pid = server.process.pid
        try:
            with server.client(timeout=600) as client:
                client.get("/cli/commands")  # first-request allocations happen before measuring
                before = reset_peak(pid)
                started = time.perf_counter()
                with source.open("rb") as f:
                    meta = client.post("/upload", files={"file": ("big.bin", f)}).json()
                seconds = time.perf_counter() - started
                transfers.append(Transfer("upload", seconds, before, status_kib(pid, "VmHWM")))
                assert meta["sha256"] == expected, meta

                body = client.post("/cli/run", json={
                    "stage": "disseminate", "command": "local", "mode": "sync",
                    "args": {"input": f"file_id:{meta['file_id']}", "path": "copy.bin"},
                    "timeout_s": 300,
                }).json()  # fmt: skip
                assert body["exit_code"] == 0, body["stderr"]

                before = reset_peak(pid)
                started = time.perf_counter()
                down = hashlib.sha256()
                with client.stream("GET", f"/jobs/{body['job_id']}/download") as response:
                    for chunk in response.iter_bytes(MiB):
                        down.update(chunk)
                seconds = time.perf_counter() - started
                transfers.append(Transfer("download", seconds, before, status_kib(pid, "VmHWM")))
                assert down.hexdigest() == expected
        finally:
            stop_api(server)
    return [table(transfers, size_mib, quick)]


def table(transfers: list[Transfer], size_mib: int, quick: bool) -> Table:
    size = f"{size_mib // 1024} GiB" if size_mib % 1024 == 0 else f"{size_mib} MiB"
    out = Table(
        f"Transfer: {size} through the API",
        ["transfer", "seconds", "MB/s", "API RSS before, MB", "peak, MB", "growth, MB"],
    )
    for t in transfers:
        out.add(t.name, f"{t.seconds:.2f}", f"{size_mib * MiB / MB / t.seconds:.0f}",
                f"{t.rss_before_kib * 1024 / MB:.0f}", f"{t.peak_kib * 1024 / MB:.0f}",
                f"{t.growth_mb:.1f}")  # fmt: skip
    verdicts = [
        f"{t.name} met ({t.growth_mb:.1f} MB)"
        if t.growth_mb < GOAL_GROWTH_MB
        else f"{t.name} missed by {t.growth_mb - GOAL_GROWTH_MB:.1f} MB"
        for t in transfers
    ]
    out.notes += [
        f"One file of {size_mib} MiB{' (quick: the full run sends 1 GiB)' if quick else ''}, "
        "generated; `POST /upload` (multipart, streamed by httpx from the file), then a sync "
        "`disseminate local` copies the upload into a job's outputs (not timed), then `GET "
        "/jobs/{id}/download` streamed in 1 MiB reads (hashed as they come: part of its "
        "time). SHA-256 checked both ways. One API "
        "process (`python -m api`, embedded default, local storage) on loopback; MB = 10^6 "
        "bytes.",
        "RSS: before each transfer the API process's peak is reset (`/proc/PID/clear_refs` "
        "5); growth = its VmHWM after the transfer minus its VmRSS before. Only the API "
        "process: the command of the copy runs in a child of its own.",
        f"Goal: RSS growth < {GOAL_GROWTH_MB} MB per transfer: " + "; ".join(verdicts) + ".",
    ]
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SIZE_MIB} MiB, not {SIZE_MIB // 1024} GiB")  # fmt: skip
    for t in measure(parser.parse_args().quick):
        print(t.markdown())
