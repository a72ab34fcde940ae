"""Credentials in URLs never reach a log line.

Browsers cannot set headers on a WebSocket, so `?api_key=` (and `?access_token=`)
stay accepted there; uvicorn writes the path with its query in its access log
(`uvicorn.access`, which Gunicorn's access log is under the Uvicorn worker) and in
its WebSocket lines (`uvicorn.error`). A filter on those loggers and on the root
logger's handlers (our own `zyra.*` lines) replaces such values with `[redacted]`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from urllib.parse import unquote_plus

SECRET_QUERY_PARAMS = frozenset({"api_key", "access_token"})
REDACTED = "[redacted]"
SERVER_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "gunicorn.error", "gunicorn.access")

_QUERY_PARAM = re.compile(r"(^|[?&;\s])([^=&;#?/\s\"']+)=([^&;#\s\"']*)")
# A WebSocket credential subprotocol, or a bearer token, should one ever be logged.
_TOKENS = re.compile(r"\b(bearer\.|apikey\.|bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)


def redact(text: str) -> str:
    def parameter(match: re.Match[str]) -> str:
        lead, name, _ = match.groups()
        if unquote_plus(name).lower() in SECRET_QUERY_PARAMS:
            return f"{lead}{name}={REDACTED}"
        return match.group(0)

    if "=" in text:
        text = _QUERY_PARAM.sub(parameter, text)
    return _TOKENS.sub(lambda m: m.group(1) + REDACTED, text)


def _redact_arg(value: object) -> object:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float) or value is None:
        return value  # keep %d and %f formatting
    text = str(value)
    redacted = redact(text)
    return value if redacted == text else redacted


class RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            redacted = redact(record.msg)
            if redacted != record.msg and record.args:
                # A placeholder was part of what was redacted (`api_key=%s`): the arguments
                # no longer fit, and logging's error report would print them, the key among
                # them. The line is formatted as asked, then redacted whole.
                record.msg, record.args = redact(_formatted(record)), None
                return True
            record.msg = redacted
        if isinstance(record.args, Mapping):
            record.args = {k: _redact_arg(v) for k, v in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(a) for a in record.args)
        return True


def _formatted(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):  # the caller's format did not fit either
        return f"{record.msg} (arguments not shown: they do not fit the format)"


_FILTER = RedactCredentials()


def install_log_redaction() -> None:
    """On the servers' loggers and every handler of theirs and of the root logger;
    idempotent, so call it again after a server (re)configured its logging."""
    loggers = [logging.getLogger(), *(logging.getLogger(n) for n in SERVER_LOGGERS)]
    for logger in loggers:
        for target in (logger, *logger.handlers):
            if not any(isinstance(f, RedactCredentials) for f in target.filters):
                target.addFilter(_FILTER)
