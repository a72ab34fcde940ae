"""`helm test`: what a client does first, through the API's Service.

Uploads a small CSV, draws it with `visualize timeseries` as a sync run, downloads
the PNG; with --async also runs it as a Job and waits for it. Standard library only:
it runs from the API image. Exit 0 when all of it worked, 1 with the reason if not.

Key: $ZYRA_API_KEY, else the first plain `name:key` line of $ZYRA_API_KEYS_FILE.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TERMINAL = {"succeeded", "failed", "cancelled"}


class SmokeTestError(Exception):
    pass


def api_key() -> str:
    if key := os.environ.get("ZYRA_API_KEY"):
        return key
    path = os.environ.get("ZYRA_API_KEYS_FILE")
    if path and Path(path).is_file():
        for line in Path(path).read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            secret = line.split(":", 1)[1] if ":" in line else line
            if not secret.startswith("sha256:"):
                return secret
    raise SmokeTestError("no plain API key: set ZYRA_API_KEY or ZYRA_API_KEYS_FILE")


class Client:
    def __init__(self, base_url: str, key: str, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self.key = key
        self.timeout_s = timeout_s

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        headers = {"X-API-Key": self.key}
        if content_type:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base_url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def json(self, method: str, path: str, payload: Any = None) -> Any:
        body = json.dumps(payload).encode() if payload is not None else None
        status, data = self.request(method, path, body, "application/json" if body else None)
        if status >= 400:
            raise SmokeTestError(f"{method} {path}: HTTP {status}: {data[:500]!r}")
        return json.loads(data)

    def upload(self, name: str, content: bytes) -> str:
        boundary = uuid.uuid4().hex
        head = (
            f"--{boundary}\r\n"
            f'Content-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        )
        body = head.encode() + content + f"\r\n--{boundary}--\r\n".encode()
        status, data = self.request(
            "POST", "/upload", body, f"multipart/form-data; boundary={boundary}"
        )
        if status >= 400:
            raise SmokeTestError(f"POST /upload: HTTP {status}: {data[:500]!r}")
        return str(json.loads(data)["file_id"])


def wait_ready(client: Client, deadline: float) -> None:
    while True:
        status, data = client.request("GET", "/readyz")
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise SmokeTestError(f"/readyz still answers {status}: {data[:300]!r}")
        time.sleep(2)


def run_timeseries(client: Client, file_id: str, mode: str, deadline: float) -> dict[str, Any]:
    request = {
        "stage": "visualize",
        "command": "timeseries",
        "mode": mode,
        "args": {"input": f"file_id:{file_id}", "x": "time", "y": "value", "output": "smoke.png"},
    }
    reply = client.json("POST", "/cli/run", request)
    if mode == "sync":
        return dict(reply)
    job_id = reply["job_id"]
    while True:
        job = client.json("GET", f"/jobs/{job_id}")
        if job["status"] in TERMINAL:
            return dict(job)
        if time.monotonic() > deadline:
            raise SmokeTestError(f"async job {job_id} still {job['status']}")
        time.sleep(2)


def check_png(client: Client, run: dict[str, Any], mode: str) -> None:
    if run.get("exit_code") != 0:
        raise SmokeTestError(f"{mode} run failed: {json.dumps(run)[:1500]}")
    status, data = client.request("GET", f"/jobs/{run['job_id']}/download")
    if status != 200 or not data.startswith(PNG_MAGIC):
        raise SmokeTestError(f"{mode} download: HTTP {status}, {data[:40]!r}")
    print(f"{mode}: job {run['job_id']} exit 0, {len(data)} byte PNG")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", help="the API's base URL, e.g. http://zyra:8000")
    parser.add_argument("--async", dest="run_async", action="store_true",
                        help="also run the command as a Job")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds in all")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.timeout
    try:
        client = Client(args.url, api_key(), timeout_s=args.timeout)
        wait_ready(client, deadline)
        csv = "time,value\n" + "".join(f"{i},{i * i}\n" for i in range(20))
        file_id = client.upload("series.csv", csv.encode())
        check_png(client, run_timeseries(client, file_id, "sync", deadline), "sync")
        if args.run_async:
            check_png(client, run_timeseries(client, file_id, "async", deadline), "async")
    except (SmokeTestError, OSError) as exc:
        print(f"smoke test failed: {exc}", file=sys.stderr)
        return 1
    print("smoke test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
