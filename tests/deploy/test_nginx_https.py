"""deploy/nginx/zyra-orchestrator.conf, run for real: Debian's nginx in front of a real API.

The example is rendered with simple substitutions (ports, certificate paths, server_name, the
upstream's port), wrapped in a minimal nginx.conf, checked with `nginx -t` and started in the
foreground. Everything a client does goes through it over HTTPS, verified against a throwaway
CA: health, a multi-megabyte upload, a sync run and its download, a WebSocket stream to its
terminal message, Server-Sent Events arriving while the job still runs, and the HTTP redirect.
Needs the `nginx` binary (Debian package `nginx`; .ci/run installs it).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

from api.settings import Settings
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.jobs_client import TERMINAL, submit, wait_finished, wait_status
from tests.k8s.pki import CertificateAuthority
from tests.services import free_port

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "deploy" / "nginx" / "zyra-orchestrator.conf"
MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 200, "height": 100}


@dataclass
class Proxy:
    https: str
    http: str
    ssl_context: ssl.SSLContext
    error_log: Path

    def client(self, timeout: float = 120) -> httpx.Client:
        return httpx.Client(
            base_url=self.https, headers={"X-API-Key": API_KEY}, verify=self.ssl_context,
            timeout=timeout,
        )  # fmt: skip


def nginx_binary() -> str:
    binary = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
    if binary is None:
        pytest.fail("nginx is not installed (Debian package `nginx`; .ci/run installs it)")
    return binary


def render(example: str, replacements: dict[str, str]) -> str:
    """Each placeholder must be in the example, so it stays easy to substitute."""
    for old, new in replacements.items():
        assert old in example, f"{EXAMPLE.name} no longer contains {old!r}"
        example = example.replace(old, new)
    return example


def nginx_conf(tmp: Path, site: Path) -> str:
    temp = {name: tmp / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for folder in temp.values():
        folder.mkdir()
    return "\n".join([
        # As root, workers would run as nobody and could not reach this private tmp folder.
        "user root;" if os.geteuid() == 0 else "",
        "worker_processes 1;",
        f"error_log {tmp / 'error.log'} info;",
        "events { worker_connections 256; }",
        "http {",
        f"    access_log {tmp / 'access.log'};",
        "    default_type application/octet-stream;",
        f"    client_body_temp_path {temp['body']};",
        f"    proxy_temp_path {temp['proxy']};",
        f"    fastcgi_temp_path {temp['fastcgi']};",
        f"    uwsgi_temp_path {temp['uwsgi']};",
        f"    scgi_temp_path {temp['scgi']};",
        f"    include {site};",
        "}",
        "",
    ])  # fmt: skip


def nginx_command(binary: str, tmp: Path, *extra: str) -> list[str]:
    return [
        binary, "-p", str(tmp), "-c", str(tmp / "nginx.conf"), "-e", str(tmp / "error.log"),
        "-g", f"daemon off; pid {tmp / 'nginx.pid'};", *extra,
    ]  # fmt: skip


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nginx exited with {process.returncode}:\n{log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx is not listening:\n{log.read_text()}")


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(tmp_path_factory.mktemp("nginx-api"), inputs)
    yield server
    stop_api(server)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory, api: ApiServer) -> Iterator[Proxy]:
    binary = nginx_binary()
    tmp = tmp_path_factory.mktemp("nginx")
    ca = CertificateAuthority(tmp / "pki")
    cert, key = ca.issue("nginx", "localhost", hosts=("127.0.0.1", "localhost"), server=True)
    fullchain = tmp / "fullchain.pem"
    fullchain.write_bytes(cert.read_bytes() + ca.cert_path.read_bytes())
    https_port, http_port = free_port(), free_port()
    api_port = api.url.rsplit(":", 1)[1]
    site = tmp / "zyra-orchestrator.conf"
    site.write_text(
        render(EXAMPLE.read_text(), {
            "listen 80;": f"listen 127.0.0.1:{http_port};",
            "listen [::]:80;": "",
            "listen 443 ssl;": f"listen 127.0.0.1:{https_port} ssl;",
            "listen [::]:443 ssl;": "",
            "server_name api.example.com;": "server_name localhost;",
            "/etc/ssl/zyra-orchestrator/fullchain.pem": str(fullchain),
            "/etc/ssl/zyra-orchestrator/privkey.pem": str(key),
            "/var/www/letsencrypt": str(tmp / "acme"),
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{api_port};",
        })
    )  # fmt: skip
    (tmp / "nginx.conf").write_text(nginx_conf(tmp, site))

    check = subprocess.run(nginx_command(binary, tmp, "-t"), capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert "test is successful" in check.stderr

    process = subprocess.Popen(
        nginx_command(binary, tmp), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(https_port, process, tmp / "error.log")
        context = ssl.create_default_context(cafile=str(ca.cert_path))
        yield Proxy(
            f"https://127.0.0.1:{https_port}", f"http://127.0.0.1:{http_port}", context,
            tmp / "error.log",
        )  # fmt: skip
    finally:
        process.terminate()  # SIGTERM: fast shutdown
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def client(proxy: Proxy) -> Iterator[httpx.Client]:
    with proxy.client() as c:
        yield c


def test_upload_limit_matches_the_services_default() -> None:
    default_mb = Settings.model_fields["max_upload_mb"].default
    assert f"client_max_body_size {default_mb}m;" in EXAMPLE.read_text()


def test_health_over_https_with_hsts(client: httpx.Client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.http_version == "HTTP/1.1"
    assert response.headers["strict-transport-security"].startswith("max-age=")
    assert client.get("/readyz").status_code == 200


def test_plain_http_redirects_to_https(proxy: Proxy) -> None:
    response = httpx.get(f"{proxy.http}/jobs?limit=1", follow_redirects=False)
    assert response.status_code == 301
    assert response.headers["location"] == "https://127.0.0.1/jobs?limit=1"


def test_a_multi_megabyte_upload_then_a_sync_run_and_its_download(
    client: httpx.Client,
) -> None:
    buffer = io.BytesIO()
    np.save(buffer, np.random.default_rng(7).random((600, 1200)))  # 5.8 MB, over nginx's 1m
    data = buffer.getvalue()
    assert len(data) > 5 << 20
    uploaded = client.post("/upload", files={"file": ("big.npy", data)})
    assert uploaded.status_code == 201, uploaded.text
    meta = uploaded.json()
    assert (meta["size"], meta["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())

    run = client.post("/cli/run", json={
        "stage": "visualize", "command": "heatmap", "mode": "sync",
        "args": {"input": f"file_id:{meta['file_id']}", "output": "big.png", **MAP},
    })  # fmt: skip
    assert run.status_code == 200, run.text
    body = run.json()
    assert (body["status"], body["exit_code"]) == ("succeeded", 0), body["stderr"]
    [output] = body["outputs"]
    png = client.get(f"/jobs/{body['job_id']}/download").content
    assert png.startswith(b"\x89PNG") and hashlib.sha256(png).hexdigest() == output["sha256"]


def test_websocket_stream_through_the_proxy_to_its_terminal_message(
    proxy: Proxy, client: httpx.Client, inputs: Path
) -> None:
    records = inputs / "nginx-records.json"
    records.write_text(json.dumps([{"i": i} for i in range(2000)]))
    job_id = submit(client, "process", "api-json", {"file_or_url": str(records), "format": "csv"})
    url = proxy.https.replace("https://", "wss://") + f"/ws/jobs/{job_id}"
    messages = []
    with connect(
        url, ssl=proxy.ssl_context, additional_headers={"X-API-Key": API_KEY}, open_timeout=30
    ) as ws:
        for raw in ws:
            messages.append(json.loads(raw))
        close_code = ws.close_code
    assert close_code == 1000
    seqs = [m["seq"] for m in messages]
    assert seqs == list(range(1, len(seqs) + 1))
    assert (messages[-1]["status"], messages[-1]["exit_code"]) == ("succeeded", 0)
    assert "".join(m.get("stdout", "") for m in messages).count("\n") == 2001
    assert wait_finished(client, job_id)["status"] == "succeeded"


def test_server_sent_events_arrive_while_the_job_runs(
    client: httpx.Client, silent_server: str
) -> None:
    """A job that waits forever: its first events must come through before it ends."""
    job_id = submit(client, "acquire", "http", {"url": silent_server, "output": "x"})
    wait_status(client, job_id, "running")
    events: list[dict] = []
    started = time.monotonic()
    with client.stream(
        "GET", f"/jobs/{job_id}/events", timeout=httpx.Timeout(60, read=20)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        for line in lines:
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
                if events[-1].get("status") == "running":
                    break
        # The job has not ended, yet its history up to "running" is here.
        assert client.get(f"/jobs/{job_id}").json()["status"] not in TERMINAL
        assert [e.get("status") for e in events if "status" in e][:2] == ["queued", "running"]
        assert time.monotonic() - started < 20

        assert client.delete(f"/jobs/{job_id}").status_code == 200
        for line in lines:  # the rest, until the server ends the stream
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["status"] == "cancelled"
