"""The API's log lines: JSON with the servers' fields, keys redacted, or text."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
from collections.abc import Iterator

import pytest

from api.observability.log_format import (
    ApiJsonFormatter,
    configure_api_logging,
    use_json_everywhere,
    uvicorn_log_config,
)
from api.security.log_redaction import RedactCredentials
from runner import log_format
from runner.log_format import bound

KEY = "the-api-key-0123456789"
TOKEN = "eyJhbGciOiJSUzI1NiJ9.payload.signature"


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger (our `zyra.*` lines) writing JSON into a buffer."""
    root = logging.getLogger()
    handlers, level, json_output = root.handlers[:], root.level, log_format._json_output
    hooks = threading.excepthook, sys.excepthook
    configure_api_logging("json")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)
    log_format._json_output = json_output
    threading.excepthook, sys.excepthook = hooks
    logging.captureWarnings(False)


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_our_lines_are_json_with_the_context(captured: io.StringIO) -> None:
    with bound(job_id="j1", principal="alice", request_id="req-1"):
        logging.getLogger("zyra.jobs").info("job finished", extra={"status": "succeeded"})
    [line] = lines(captured)
    assert line["logger"] == "zyra.jobs" and line["message"] == "job finished"
    assert (line["job_id"], line["principal"], line["request_id"]) == ("j1", "alice", "req-1")
    assert line["status"] == "succeeded" and line["level"] == "INFO"


def test_keys_and_tokens_never_reach_a_json_line(captured: io.StringIO) -> None:
    log = logging.getLogger("zyra.test")
    log.info("GET %s", f"/ws/jobs/x?api_key={KEY}&since=3")  # as uvicorn writes its lines
    log.info(f"followed /ws/jobs/x?access_token={TOKEN}")
    log.warning("upstream said %s", f"Authorization: Bearer {TOKEN}")
    log.info("extra", extra={"url": f"/x?api_key={KEY}"})
    try:
        raise RuntimeError(f"could not fetch /x?api_key={KEY}")
    except RuntimeError:
        log.exception("failed")
    text = captured.getvalue()
    assert KEY not in text and TOKEN not in text
    written = lines(captured)
    assert written[0]["message"] == "GET /ws/jobs/x?api_key=[redacted]&since=3"
    assert written[1]["message"] == "followed /ws/jobs/x?access_token=[redacted]"
    assert written[2]["message"] == "upstream said Authorization: Bearer [redacted]"
    assert written[3]["url"] == "/x?api_key=[redacted]"
    assert "api_key=[redacted]" in written[4]["exception"]


def test_an_access_line_has_its_parts() -> None:
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/ws/jobs/j?api_key={KEY}", "1.1", 101), None,
    )  # fmt: skip
    RedactCredentials().filter(record)  # as on uvicorn's loggers
    line = json.loads(ApiJsonFormatter().format(record))
    assert line["message"] == '127.0.0.1:5000 - "GET /ws/jobs/j?api_key=[redacted] HTTP/1.1" 101'
    assert (line["method"], line["path"], line["status_code"], line["client_addr"]) == (
        "GET", "/ws/jobs/j?api_key=[redacted]", 101, "127.0.0.1:5000",
    )  # fmt: skip


def test_uvicorn_config_json_and_text() -> None:
    json_config = uvicorn_log_config("json")
    assert all(f == {"()": ApiJsonFormatter} for f in json_config["formatters"].values())
    text_config = uvicorn_log_config("text")
    assert [f["()"] for f in text_config["formatters"].values()] == [
        "uvicorn.logging.DefaultFormatter", "uvicorn.logging.AccessFormatter",
    ]  # fmt: skip
    for config in (json_config, text_config):
        assert all("redact_credentials" in h["filters"] for h in config["handlers"].values())


def test_text_mode_keeps_the_terminals_lines() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_api_logging("text")
        stream = io.StringIO()
        root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
        with bound(job_id="j1"):
            logging.getLogger("zyra.jobs").info("queued %s", f"?api_key={KEY}")
        text = stream.getvalue()
        assert re.fullmatch(r"\S+ \S+ INFO zyra\.jobs queued \?api_key=\[redacted\]\n", text)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def test_use_json_everywhere_reformats_the_servers_handlers() -> None:
    """What Gunicorn's hooks do to the handlers it and basicConfig made."""
    access = logging.getLogger("gunicorn.access")
    handler = logging.StreamHandler(io.StringIO())
    access.addHandler(handler)
    hooks = threading.excepthook, sys.excepthook
    try:
        use_json_everywhere()
        assert isinstance(handler.formatter, ApiJsonFormatter)
        assert any(isinstance(f, RedactCredentials) for f in handler.filters)
    finally:
        access.removeHandler(handler)
        threading.excepthook, sys.excepthook = hooks
        logging.captureWarnings(False)
