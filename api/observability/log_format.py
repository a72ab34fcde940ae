"""The API's log lines: JSON (`ZYRA_LOG_FORMAT=json`) or text, from our `zyra.*`
loggers, uvicorn's and Gunicorn's alike.

JSON lines carry `timestamp` (RFC 3339, UTC), `level`, `logger`, `message`, and
what the line is about (`request_id`, `principal`, `job_id`: api/observability/
log_context.py), the exception when there is one, and `trace_id`/`span_id` while
tracing is on. Key redaction (api/security/log_redaction.py) still runs as a filter
on the loggers and handlers; the formatter redacts every string it writes again, so
nothing it adds (an exception's text, an `extra=` value) escapes it.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from api.security.log_redaction import (
    SERVER_LOGGERS,
    RedactCredentials,
    install_log_redaction,
    redact,
)
from runner.log_format import JsonFormatter, LogFormat, configure_logging, route_stray_output

ACCESS_FIELDS = ("client_addr", "method", "path", "http_version", "status_code")


class ApiJsonFormatter(JsonFormatter):
    def __init__(self) -> None:
        super().__init__(redact=redact)

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        doc = super().fields(record)
        # uvicorn's access line: `%s - "%s %s HTTP/%s" %d` and its five values
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            doc.update(zip(ACCESS_FIELDS, args, strict=True))
        return doc


def configure_api_logging(fmt: LogFormat) -> None:
    """Our own loggers (`zyra.*`, libraries') through the root logger, on stderr."""
    handler = configure_logging(fmt)
    if fmt == "json":
        handler.setFormatter(ApiJsonFormatter())
    install_log_redaction()


def uvicorn_log_config(fmt: LogFormat = "text") -> dict[str, Any]:
    """uvicorn's own, with `?api_key=` values redacted on every handler; JSON lines in
    place of its formats when asked."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_credentials"] = {"()": RedactCredentials}
    for handler in config["handlers"].values():
        handler.setdefault("filters", []).append("redact_credentials")
    if fmt == "json":
        for name in config["formatters"]:
            config["formatters"][name] = {"()": ApiJsonFormatter}
    return config


def use_json_everywhere() -> None:
    """JSON on every handler of the root logger and the servers' loggers (Gunicorn
    made its own before our code ran); idempotent."""
    formatter = ApiJsonFormatter()
    for name in ("", *SERVER_LOGGERS):
        for handler in logging.getLogger(name).handlers:
            handler.setFormatter(formatter)
    install_log_redaction()
    route_stray_output()
