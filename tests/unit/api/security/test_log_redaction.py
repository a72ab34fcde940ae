"""Credentials in URLs are redacted from log lines, whoever writes them."""

from __future__ import annotations

import io
import logging

import pytest

from api.security.log_redaction import RedactCredentials, redact

SECRET = "s3cr3t-key-value"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f'1.2.3.4:5 - "GET /ws/jobs/j?since=3&api_key={SECRET} HTTP/1.1" 101',
         '1.2.3.4:5 - "GET /ws/jobs/j?since=3&api_key=[redacted] HTTP/1.1" 101'),
        (f"WebSocket /ws/jobs/j?access_token={SECRET}&since=1",
         "WebSocket /ws/jobs/j?access_token=[redacted]&since=1"),
        (f"/x?api%5Fkey={SECRET}", "/x?api%5Fkey=[redacted]"),
        (f"offered bearer.{SECRET}", "offered bearer.[redacted]"),
        ("GET /jobs?status=running&limit=5", "GET /jobs?status=running&limit=5"),
    ],
)  # fmt: skip
def test_redact(line: str, expected: str) -> None:
    assert redact(line) == expected


def test_the_filter_redacts_arguments_and_keeps_the_format() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactCredentials())
    logger = logging.getLogger("test.redaction")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning('%s - "%s %s HTTP/%s" %d', "1.2.3.4:5", "GET",
                       f"/jobs?api_key={SECRET}", "1.1", 401)  # fmt: skip
        logger.warning("%(path)s", {"path": f"/ws?api_key={SECRET}"})
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        '1.2.3.4:5 - "GET /jobs?api_key=[redacted] HTTP/1.1" 401',
        "/ws?api_key=[redacted]",
    ]


def test_a_key_after_a_placeholder_in_the_format_is_redacted_and_never_reported(
    capsys: pytest.CaptureFixture[str],
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactCredentials())
    logger = logging.getLogger("test.redaction.placeholder")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("GET /jobs?api_key=%s&limit=%d", SECRET, 5)
        logger.warning("GET /jobs?api_key=%s&limit=%d", SECRET)  # a caller's bad format
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines()[0] == "GET /jobs?api_key=[redacted]&limit=5"
    assert SECRET not in stream.getvalue()
    assert SECRET not in capsys.readouterr().err  # logging's "--- Logging error ---" report
