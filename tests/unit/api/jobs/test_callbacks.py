"""Callbacks reach only allowed destinations, at the address checked, on every hop.

Receivers are real HTTP servers on loopback; names resolve through an injected
resolver, so a name can point at loopback now and elsewhere a moment later."""

from __future__ import annotations

import json
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from api.jobs.callback_outbox import RetryRules
from api.jobs.callbacks import callback_refusal, post_once
from runner.outbound import OutboundPolicy
from tests.k8s.pki import CertificateAuthority

PAYLOAD = {"job_id": "j1", "status": "succeeded"}


@dataclass
class Receiver:
    """Answers each POST with the next of `answers` (status, Location), then 204."""

    server: ThreadingHTTPServer
    answers: list[tuple[int, str | None]] = field(default_factory=list)
    seen: list[dict] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.server.server_port


def start_receiver(tls: ssl.SSLContext | None = None) -> Receiver:
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            me = holder[0]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            me.seen.append({"path": self.path, "host": self.headers["Host"],
                            "body": json.loads(body)})  # fmt: skip
            status, location = me.answers.pop(0) if me.answers else (204, None)
            self.send_response(status)
            if location:
                self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    holder.append(Receiver(server))
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return holder[0]


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started = [start_receiver(), start_receiver()]
    yield started
    for receiver in started:
        receiver.server.shutdown()
        receiver.server.server_close()


def answering(*answers: list[str]):
    """A resolver giving each answer in turn (the last one from then on); [] fails."""
    queue = list(answers)

    def resolve(host: str, port: int | None) -> list[str]:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        if not answer:
            raise OSError(-3, "Temporary failure in name resolution")
        return answer

    return resolve


# Retried as the outbox retries (callback_outbox.py), without its waits.
RULES = RetryRules(window_s=60, not_found_window_s=0, max_backoff_s=0.01)


def send(url: str, policy: OutboundPolicy, attempts: int = 3) -> bool:
    """Whether `attempts` attempts deliver PAYLOAD, stopping where the outbox would."""
    body, headers = json.dumps(PAYLOAD).encode(), {"Content-Type": "application/json"}
    with httpx.Client(timeout=5) as client:
        for attempt in range(1, attempts + 1):
            answer = post_once(client, url, body, headers, policy)
            if answer.delivered:
                return True
            if RULES.next_delay(answer, attempt, ended_s_ago=0) is None:
                return False
    return False


def test_a_loopback_callback_is_refused_unless_allowed(receivers: list[Receiver]) -> None:
    url = f"http://127.0.0.1:{receivers[0].port}/hook"
    assert callback_refusal(url, OutboundPolicy()) == (
        "127.0.0.1 is a loopback address; allowed destinations: public addresses or "
        "ZYRA_OUTBOUND_ALLOW"
    )
    assert not send(url, OutboundPolicy())
    assert receivers[0].seen == []
    allowed = OutboundPolicy.from_entries(["127.0.0.1"])
    assert callback_refusal(url, allowed) is None
    assert send(url, allowed)
    assert receivers[0].seen == [{"path": "/hook", "host": f"127.0.0.1:{receivers[0].port}",
                                  "body": PAYLOAD}]  # fmt: skip


def test_a_name_is_reached_at_the_address_checked_and_keeps_its_host_header(
    receivers: list[Receiver],
) -> None:
    policy = OutboundPolicy.from_entries(["127.0.0.1"], resolver=answering(["127.0.0.1"]))
    url = f"http://hooks.example.test:{receivers[0].port}/n8n"
    assert callback_refusal(url, policy) is None
    assert send(url, policy)
    assert receivers[0].seen[0]["host"] == f"hooks.example.test:{receivers[0].port}"


def test_https_to_a_pinned_address_still_verifies_the_certificate_of_the_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = CertificateAuthority(tmp_path / "pki")
    cert, key = ca.issue("hooks", "hooks.example.test", hosts=("hooks.example.test",),
                         server=True)  # fmt: skip
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    receiver = start_receiver(tls)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert_path))
    try:
        policy = OutboundPolicy.from_entries(["127.0.0.1"], resolver=answering(["127.0.0.1"]))
        # The certificate names only hooks.example.test: SNI and verification use the name.
        assert send(f"https://hooks.example.test:{receiver.port}/hook", policy)
        assert receiver.seen[0]["host"] == f"hooks.example.test:{receiver.port}"
        # Its address alone does not match the certificate.
        assert not send(f"https://127.0.0.1:{receiver.port}/hook", policy, attempts=1)
        assert len(receiver.seen) == 1
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


def test_a_name_that_resolves_elsewhere_by_delivery_time_is_not_contacted(
    receivers: list[Receiver],
) -> None:
    # Checked when the job was submitted (loopback, allowed), rebound before it ended.
    resolve = answering(["127.0.0.1"], ["10.20.30.40"])
    policy = OutboundPolicy.from_entries(["127.0.0.1"], resolver=resolve)
    url = f"http://rebind.example.test:{receivers[0].port}/hook"
    assert callback_refusal(url, policy) is None
    assert not send(url, policy)  # refused before any connection: nothing to 10.20.30.40


def test_a_name_that_does_not_resolve_for_a_while_is_retried(receivers: list[Receiver]) -> None:
    policy = OutboundPolicy.from_entries(["127.0.0.1"], resolver=answering([], ["127.0.0.1"]))
    assert send(f"http://flaky.example.test:{receivers[0].port}/hook", policy)
    assert len(receivers[0].seen) == 1


def test_a_307_redirect_is_followed_only_to_an_allowed_destination(
    receivers: list[Receiver],
) -> None:
    first, second = receivers
    policy = OutboundPolicy.from_entries(["127.0.0.1"])
    first.answers = [(307, "/moved")]
    assert send(f"http://127.0.0.1:{first.port}/hook", policy)
    assert [s["path"] for s in first.seen] == ["/hook", "/moved"]
    assert first.seen[1]["body"] == PAYLOAD

    # `localhost` is refused by name, even though its address is allowed: not followed,
    # and not retried either (the receiver asked for something refused).
    first.seen.clear()
    first.answers = [(307, f"http://localhost:{second.port}/internal")] * 3
    assert not send(f"http://127.0.0.1:{first.port}/hook", policy)
    assert len(first.seen) == 1
    assert second.seen == []


def test_other_redirects_are_not_followed_and_end_delivery(receivers: list[Receiver]) -> None:
    first, second = receivers
    policy = OutboundPolicy.from_entries(["127.0.0.1"])
    first.answers = [(302, f"http://127.0.0.1:{second.port}/")] * 2
    assert not send(f"http://127.0.0.1:{first.port}/hook", policy, attempts=2)
    assert len(first.seen) == 1 and second.seen == []


def test_client_errors_are_final_and_server_errors_are_retried(
    receivers: list[Receiver],
) -> None:
    first, _ = receivers
    policy = OutboundPolicy.from_entries(["127.0.0.1"])
    first.answers = [(503, None), (502, None)]
    assert send(f"http://127.0.0.1:{first.port}/hook", policy)
    assert len(first.seen) == 3
    first.seen.clear()
    first.answers = [(400, None)]
    assert not send(f"http://127.0.0.1:{first.port}/hook", policy)
    assert len(first.seen) == 1
