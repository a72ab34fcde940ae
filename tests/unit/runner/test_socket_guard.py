"""The socket-level guard, installed in a fresh Python process as a command's would be:
connections Zyra makes by itself (a redirect, a name resolved again) are held to the
policy. Servers listen on loopback addresses only."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

GUARDED = """
import json, socket, sys
import requests
from runner.outbound import OutboundPolicy
from runner.socket_guard import install

allow, trusted, url = json.loads(sys.argv[1])
install(OutboundPolicy.from_entries(allow), trusted)
try:
    response = requests.get(url, timeout=5)
    print(json.dumps({"status": response.status_code, "body": response.text}))
except requests.RequestException as exc:
    print(json.dumps({"error": str(exc)}))
"""


class Seen:
    def __init__(self) -> None:
        self.paths: list[str] = []


def serve(address: str, seen: Seen, redirect_to: str | None = None) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.paths.append(self.path)
            if redirect_to:
                self.send_response(302)
                self.send_header("Location", redirect_to)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = b"time,value\n2024-01-01,1\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer((address, 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def servers() -> Iterator[list[ThreadingHTTPServer]]:
    started: list[ThreadingHTTPServer] = []
    yield started
    for server in started:
        server.shutdown()
        server.server_close()


def guarded_get(url: str, allow: list[str], trusted: list[str] | None = None) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", GUARDED, json.dumps([allow, trusted or [], url])],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(done.stdout)


def test_a_refused_address_is_never_connected_to(servers: list) -> None:
    seen = Seen()
    servers.append(server := serve("127.0.0.1", seen))
    url = f"http://127.0.0.1:{server.server_port}/data.csv"
    result = guarded_get(url, [])
    assert "outbound connection refused: 127.0.0.1 is a loopback address" in result["error"]
    assert seen.paths == []
    assert guarded_get(url, ["127.0.0.1"]) == {"status": 200, "body": "time,value\n2024-01-01,1\n"}
    assert seen.paths == ["/data.csv"]


def test_a_redirect_zyra_follows_by_itself_is_held_to_the_policy(servers: list) -> None:
    inner, outer = Seen(), Seen()
    servers.append(target := serve("127.0.0.2", inner))  # loopback, not allowed below
    servers.append(first := serve("127.0.0.1", outer, f"http://127.0.0.2:{target.server_port}/"))
    result = guarded_get(f"http://127.0.0.1:{first.server_port}/start", ["127.0.0.1"])
    assert "127.0.0.2 is a loopback address" in result["error"]
    assert outer.paths == ["/start"] and inner.paths == []


def test_local_names_are_refused_unless_vouched_for(servers: list) -> None:
    seen = Seen()
    servers.append(server := serve("127.0.0.1", seen))
    url = f"http://localhost:{server.server_port}/x"
    # An allowed address does not admit a local name that leads there.
    assert "localhost is a loopback name" in guarded_get(url, ["127.0.0.1"])["error"]
    assert seen.paths == []
    # A name the operator listed (or trusts, like the S3 endpoint) takes its addresses along.
    assert guarded_get(url, ["localhost"])["status"] == 200
    assert guarded_get(url, [], trusted=["localhost"])["status"] == 200


def test_udp_and_unix_sockets() -> None:
    script = """
import socket
from runner.outbound import OutboundPolicy
from runner.socket_guard import install
install(OutboundPolicy())
a, b = socket.socketpair()  # AF_UNIX: not the network
a.sendall(b"ok"); assert b.recv(2) == b"ok"
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
try:
    udp.sendto(b"x", ("169.254.169.254", 53))
except PermissionError as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert "169.254.169.254 is a link-local address" in done.stdout


def test_nothing_is_patched_until_installed() -> None:
    import runner.socket_guard  # noqa: F401  (importing it changes nothing)

    assert socket.socket.connect is socket.SocketType.connect  # _socket's own
    assert socket.getaddrinfo.__module__ == "socket"


def test_zyra_itself_following_a_redirect_is_stopped(servers: list, tmp_path: Path) -> None:
    """What the guard is for: `acquire http` checked in the API, redirected by the server."""
    inner, outer = Seen(), Seen()
    servers.append(target := serve("127.0.0.2", inner))
    servers.append(first := serve("127.0.0.1", outer, f"http://127.0.0.2:{target.server_port}/"))
    script = """
import sys
from runner.outbound import OutboundPolicy
from runner.socket_guard import install
install(OutboundPolicy.from_entries(["127.0.0.1"]))
from zyra.cli import main
sys.exit(main(["acquire", "http", sys.argv[1], "--output", "x.csv"]))
"""
    url = f"http://127.0.0.1:{first.server_port}/data.csv"
    done = subprocess.run([sys.executable, "-c", script, url], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)  # fmt: skip
    assert done.returncode != 0
    assert "127.0.0.2 is a loopback address" in done.stderr
    assert set(outer.paths) == {"/data.csv"} and inner.paths == []  # Zyra retries
    assert not (tmp_path / "x.csv").exists()
