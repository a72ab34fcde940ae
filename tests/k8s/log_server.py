"""The node agent's HTTPS endpoint the API server proxies `pods/log` to."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

if TYPE_CHECKING:
    from tests.k8s.node_agent import NodeAgent
    from tests.k8s.pod_process import Container

log = logging.getLogger(__name__)


def parse_time(stamp: str) -> float:
    # RFC3339 with up to nanoseconds; Python parses at most microseconds.
    base, _, frac = stamp.rstrip("Z").partition(".")
    seconds = dt.datetime.fromisoformat(base).replace(tzinfo=dt.UTC).timestamp()
    return seconds + (float(f"0.{frac}") if frac else 0.0)


def start_log_server(agent: NodeAgent) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Serve on 127.0.0.1:agent.port with the agent's serving cert; mutual TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(agent.serving.cert), str(agent.serving.key))
    # Only the API server (its kubelet client cert is signed by the same CA) may connect.
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(str(agent.control_plane.ca.cert_path))

    class Handler(LogHandler):
        node = agent

    server = ThreadingHTTPServer(("127.0.0.1", agent.port), Handler)
    server.daemon_threads = True
    # Handshake in the handler thread, not in the accept loop.
    server.socket = context.wrap_socket(
        server.socket, server_side=True, do_handshake_on_connect=False
    )
    thread = threading.Thread(target=server.serve_forever, name="node-agent-logs", daemon=True)
    thread.start()
    return server, thread


class LogHandler(BaseHTTPRequestHandler):
    """GET /containerLogs/{namespace}/{pod}/{container}: what `pods/log` is proxied to."""

    node: NodeAgent

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("log server: " + format, *args)

    def _error(self, code: int, message: str) -> None:
        body = message.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._error(404, "404 page not found")
            return
        _, namespace, pod, name = parts
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        container = self.node.find(namespace, pod)
        if container is None or container.spec["name"] != name:
            self._error(404, f'container "{name}" in pod "{pod}" not found')
            return
        if container.process is None and not container.log_path.exists():
            # Same wording as the kubelet, which clients (and kubectl users) recognise.
            why = {"ImagePullBackOff": "trying and failing to pull image"}.get(
                container.waiting, container.waiting
            )
            self._error(400, f'container "{name}" in pod "{pod}" is waiting to start: {why}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()  # HTTP/1.0 without a length: the body ends when we close
        # The client may go away mid-stream (e.g. `kubectl logs -f` interrupted).
        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self._stream(container, query)

    def _stream(self, container: Container, query: dict[str, str]) -> None:
        follow = query.get("follow") == "true"
        stamps = query.get("timestamps") == "true"
        budget = int(query["limitBytes"]) if "limitBytes" in query else None
        since = None
        if "sinceSeconds" in query:
            since = time.time() - int(query["sinceSeconds"])
        elif "sinceTime" in query:
            since = parse_time(query["sinceTime"])
        records, offset = container.log_records()
        if since is not None:
            records = [r for r in records if parse_time(r[0]) >= since]
        if "tailLines" in query:
            tail = int(query["tailLines"])
            records = records[-tail:] if tail > 0 else []
        while True:
            for stamp, text in records:
                chunk = (f"{stamp} {text}" if stamps else text).encode()
                if budget is not None:
                    chunk, budget = chunk[:budget], budget - len(chunk[:budget])
                self.wfile.write(chunk)
                if budget == 0:
                    return
            self.wfile.flush()
            if not follow or self.node.stopping.is_set():
                return
            finished = container.done.is_set()
            records, offset = container.log_records(offset)
            if finished and not records:
                return
            if not records:
                time.sleep(0.1)
