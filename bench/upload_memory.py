"""The API's resident memory while a 1 GiB file goes up and comes back down.

Starts the API (local storage), uploads a generated file of SIZE_MB through
POST /upload, copies it into a job's output with `disseminate local`, and
downloads that output, streaming both ways. Before each transfer the API's
peak-RSS counter is reset (/proc/PID/clear_refs); the table shows how far the
peak rose above the resident size before the transfer. Target: < 100 MB.

    .venv/bin/python bench/upload_memory.py [SIZE_MB]
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import start_api, stop_api

MB = 1 << 20


def status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> int:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return status_kb(pid, "VmRSS")


def main(size_mb: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="zyra-bench-mem-"))
    source = tmp / "big.bin"
    digest = hashlib.sha256()
    with source.open("wb") as f:
        block = bytes(range(256)) * (MB // 256)
        for i in range(size_mb):
            chunk = block[:-8] + i.to_bytes(8, "big")
            digest.update(chunk)
            f.write(chunk)
    server = start_api(tmp, tmp, ZYRA_MAX_UPLOAD_MB=str(size_mb + 16))
    pid = server.process.pid
    rows = []
    try:
        with server.client(timeout=600) as client:
            client.get("/cli/commands")  # first-request allocations happen before measuring
            before = reset_peak(pid)
            t = time.perf_counter()
            with source.open("rb") as f:
                meta = client.post("/upload", files={"file": ("big.bin", f)}).json()
            rows.append(("upload", time.perf_counter() - t, before, status_kb(pid, "VmHWM")))
            assert meta["sha256"] == digest.hexdigest(), meta

            body = client.post("/cli/run", json={
                "stage": "disseminate", "command": "local",
                "args": {"input": f"file_id:{meta['file_id']}", "path": "copy.bin"},
                "timeout_s": 300,
            }).json()  # fmt: skip
            assert body["exit_code"] == 0, body["stderr"]

            before = reset_peak(pid)
            t = time.perf_counter()
            down = hashlib.sha256()
            with client.stream("GET", f"/jobs/{body['job_id']}/download") as response:
                for chunk in response.iter_bytes(MB):
                    down.update(chunk)
            rows.append(("download", time.perf_counter() - t, before, status_kb(pid, "VmHWM")))
            assert down.hexdigest() == digest.hexdigest()
    finally:
        stop_api(server)
    print(
        f"| {size_mb} MiB through the API | seconds | MiB/s | RSS before MB | peak MB | growth MB |"
    )
    print("|---|---|---|---|---|---|")
    for name, seconds, before_kb, peak_kb in rows:
        print(f"| {name} | {seconds:.1f} | {size_mb / seconds:.0f} | {before_kb / 1024:.0f} "
              f"| {peak_kb / 1024:.0f} | {(peak_kb - before_kb) / 1024:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 1024)
