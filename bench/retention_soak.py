"""Disk use of the data dir under a steady stream of noisy async jobs: with retention
(short ZYRA_RESULT_TTL_S and ZYRA_JOB_TTL_S) and, side by side, with it effectively
off (TTLs of 30 days).

Starts two APIs (local backend, embedded stores) and feeds both the same jobs: every
few seconds a wave of `process api-json` runs that each print a few MB as CSV (every
other one writes it as an output instead). Samples each data dir as it goes and prints a
table: what the events file, the job records, the runner logs and the outputs take.
With retention the total levels off after the TTL plus a sweep interval; without, it
grows with every job.

    .venv/bin/python bench/retention_soak.py [--minutes 3] [--ttl 60] [--wave 4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.e2e.conftest import ApiServer, start_api, stop_api

MB = 1 << 20
RECORDS = 20_000  # about 3 MB of CSV
WAVE_EVERY_S = 10
SAMPLE_EVERY_S = 15
MONTH_S = 30 * 86400
PARTS = {
    "events": lambda p: p.name.startswith("events.sqlite3"),
    "records": lambda p: p.name.startswith("jobs.sqlite3"),
    "runner logs": lambda p: p.name.endswith(".runner.log"),
    "outputs": lambda p: "storage" in p.parts,
}


def disk_use(data_dir: Path) -> dict[str, int]:
    """Bytes on disk (allocated blocks) per part, and in all."""
    use = dict.fromkeys([*PARTS, "total"], 0)
    for path in data_dir.rglob("*"):
        try:
            if not path.is_file() or path.is_symlink():
                continue
            size = path.stat().st_blocks * 512
        except FileNotFoundError:  # deleted while we walked
            continue
        use["total"] += size
        for part, holds in PARTS.items():
            if holds(path.relative_to(data_dir)):
                use[part] += size
    return use


def submit(client: httpx.Client, records: Path, n: int) -> str:
    args: dict = {"file_or_url": str(records), "format": "csv"}
    if n % 2:
        args["output"] = "rows.csv"
    reply = client.post("/cli/run", json={"stage": "process", "command": "api-json",
                                          "args": args, "mode": "async"})  # fmt: skip
    reply.raise_for_status()
    return reply.json()["job_id"]


def progress(client: httpx.Client, job_ids: list[str]) -> tuple[int, int]:
    """Jobs done (finished, or finished and already forgotten: 404), and of those the
    ones whose record is still kept."""
    done = kept = 0
    for job_id in job_ids:
        reply = client.get(f"/jobs/{job_id}")
        if reply.status_code == 404:
            done += 1
        elif reply.json()["status"] in ("succeeded", "failed"):
            done, kept = done + 1, kept + 1
    return done, kept


def row(cells: list[str], widths: list[int]) -> str:
    return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def main(minutes: float, ttl_s: int, wave: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="zyra-soak-"))
    inputs = tmp / "inputs"
    inputs.mkdir()
    records = inputs / "records.json"
    records.write_text(json.dumps([{"i": i, "pad": "x" * 140} for i in range(RECORDS)]))
    settings = {
        "on": {"ZYRA_RESULT_TTL_S": str(ttl_s), "ZYRA_JOB_TTL_S": str(ttl_s),
               "ZYRA_CLEANUP_INTERVAL_S": "5"},
        "off": {"ZYRA_RESULT_TTL_S": str(MONTH_S), "ZYRA_JOB_TTL_S": str(MONTH_S),
                "ZYRA_CLEANUP_INTERVAL_S": "5"},
    }  # fmt: skip
    with ExitStack() as stack:
        servers: dict[str, ApiServer] = {}
        for label, env in settings.items():
            servers[label] = start_api(tmp / label, inputs, ZYRA_LOCAL_MAX_RUNNING="4", **env)
            stack.callback(stop_api, servers[label])
        clients = {label: stack.enter_context(s.client()) for label, s in servers.items()}
        print(f"{wave} jobs of ~3 MB of output every {WAVE_EVERY_S} s for {minutes:g} min; "
              f"retention on: TTLs {ttl_s} s, sweep every 5 s; off: TTLs 30 days")  # fmt: skip
        heads = ["t (s)", "jobs", "done on/off", "kept on/off", "on: events", "records",
                 "runner logs", "outputs", "on: total MB", "off: total MB"]  # fmt: skip
        widths = [len(h) for h in heads]
        print(row(heads, widths))
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        start = time.monotonic()
        next_wave = next_sample = start
        ids: dict[str, list[str]] = {label: [] for label in clients}
        n = 0
        while (now := time.monotonic()) - start < minutes * 60:
            if now >= next_wave:
                for _ in range(wave):
                    for label, client in clients.items():
                        ids[label].append(submit(client, records, n))
                    n += 1
                next_wave += WAVE_EVERY_S
            if now >= next_sample:
                on, off = (disk_use(servers[k].data_dir) for k in ("on", "off"))
                (done_on, kept_on), (done_off, kept_off) = (
                    progress(clients[k], ids[k]) for k in ("on", "off")
                )
                cells = [f"{now - start:.0f}", str(n), f"{done_on}/{done_off}",
                         f"{kept_on}/{kept_off}"]  # fmt: skip
                cells += [f"{on[p] / MB:.1f}" for p in PARTS]
                cells += [f"{on['total'] / MB:.1f}", f"{off['total'] / MB:.1f}"]
                print(row(cells, widths), flush=True)
                next_sample += SAMPLE_EVERY_S
            time.sleep(0.5)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--ttl", type=int, default=60, help="TTLs with retention on (≥ 60 s)")
    parser.add_argument("--wave", type=int, default=4, help="jobs per wave, per API")
    args = parser.parse_args()
    main(args.minutes, args.ttl, args.wave)
