"""Log lines as one JSON object each (`ZYRA_LOG_FORMAT=json`), or plain text.

Shared by the API (api/observability/log_format.py adds its servers' loggers and key
redaction) and the runner, which must not import the API. What a line is about
(`job_id`, `principal`, `request_id`) comes from a context variable, so that every
line written while a job or a request is handled carries it without each call
passing it; threads started with a copied context (anyio's) inherit it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Literal, TextIO

LOG_FORMAT_ENV = "ZYRA_LOG_FORMAT"
LogFormat = Literal["json", "text"]
DEFAULT_LOG_FORMAT: LogFormat = "text"  # a human's terminal; the chart asks for json
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"
OUTPUT_LOGGER = "zyra.runner.output"  # the command's output, echoed by a runner

_NOTHING: Mapping[str, str] = MappingProxyType({})
_context: ContextVar[Mapping[str, str]] = ContextVar("zyra_log_context", default=_NOTHING)
# Attributes every LogRecord has: anything else on a record came from `extra=`.
_STANDARD = frozenset(
    set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
)
_BASE = frozenset({"timestamp", "level", "logger", "message", "process"})
# uvicorn's `extra=`: the message again with colour codes, a protocol object's repr.
_SKIPPED = _STANDARD | _BASE | frozenset({"color_message", "websocket"})
_json_output = False  # whether this process's runner echo writes JSON lines


def log_format_from_env(env: Mapping[str, str] = os.environ) -> LogFormat:
    raw = env.get(LOG_FORMAT_ENV, "").strip().lower() or DEFAULT_LOG_FORMAT
    if raw not in ("json", "text"):
        raise ValueError(f"{LOG_FORMAT_ENV}={raw!r}: expected json or text")
    return raw  # type: ignore[return-value]


# --- context --------------------------------------------------------------------------


def bind(**fields: str | None) -> Token[Mapping[str, str]]:
    """Add fields to every line written from here on in this context (None: drop)."""
    merged = dict(_context.get())
    for name, value in fields.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return _context.set(merged)


def unbind(token: Token[Mapping[str, str]]) -> None:
    _context.reset(token)


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        unbind(token)


def context_fields() -> Mapping[str, str]:
    return _context.get()


# --- formatting -----------------------------------------------------------------------


def _timestamp(created: float) -> str:
    """RFC 3339, UTC, milliseconds."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record. `redact` is applied to every string written (the
    API's removes `?api_key=` values and bearer tokens)."""

    def __init__(self, redact: Callable[[str], str] | None = None) -> None:
        super().__init__()
        self.redact = redact or (lambda text: text)

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "timestamp": _timestamp(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        doc.update(_context.get())
        for name, value in vars(record).items():  # `extra=`: more precise than the context
            if name not in _SKIPPED and not name.startswith("_"):
                doc[name] = _plain(value)
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exception"] = record.exc_text
        if record.stack_info:
            doc["stack"] = self.formatStack(record.stack_info)
        from runner import tracing  # cheap: OTel itself is imported only when tracing is on

        if (ids := tracing.current_ids()) is not None:
            doc["trace_id"], doc["span_id"] = ids
        return doc

    def format(self, record: logging.LogRecord) -> str:
        doc = self.fields(record)
        clean = {k: self.redact(v) if isinstance(v, str) else v for k, v in doc.items()}
        return json.dumps(clean, ensure_ascii=False, default=str)


def json_line(logger: str, message: str, level: int = logging.INFO, **fields: Any) -> str:
    """A line as JsonFormatter writes it, for text not written through `logging`."""
    record = logging.LogRecord(logger, level, "", 0, message, None, None)
    record.__dict__.update(fields)
    return JsonFormatter().format(record)


# --- set-up ---------------------------------------------------------------------------


def configure_logging(
    fmt: LogFormat, stream: TextIO | None = None, level: int = logging.INFO
) -> logging.Handler:
    """The root logger writes `fmt` lines to `stream` (stderr); its only handler."""
    global _json_output
    _json_output = fmt == "json"
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    if fmt == "json":
        route_stray_output()
    return handler


def route_stray_output() -> None:
    """Warnings and uncaught exceptions (of any thread) as log records, so that they
    too are JSON lines rather than bare text on stderr."""
    logging.captureWarnings(True)
    uncaught = logging.getLogger("zyra.uncaught")

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit:
            name = args.thread.name if args.thread else "?"
            info = (args.exc_type, args.exc_value, args.exc_traceback)
            uncaught.error("uncaught exception in thread %s", name, exc_info=info)  # type: ignore[arg-type]

    def main_hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        uncaught.error("uncaught exception", exc_info=(kind, value, tb))

    threading.excepthook = thread_hook
    sys.excepthook = main_hook


def json_output() -> bool:
    """Whether this process writes JSON lines (a runner's echo follows it)."""
    return _json_output


def output_lines(stream: str, text: str) -> str:
    """A command's output, echoed by a runner in JSON mode: one object per line."""
    return "".join(
        json_line(OUTPUT_LOGGER, line, stream=stream) + "\n" for line in text.splitlines()
    )


def plain_output(log_text: str) -> str:
    """A runner's log as the command's output: the echoed lines of a JSON log turned
    back into text, the runner's own warnings as `[runner] ...`, its other JSON lines
    left out, text lines kept."""
    lines = []
    for line in log_text.splitlines(keepends=True):
        if line.startswith("{"):
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and "logger" in doc and "message" in doc:
                if doc["logger"] == OUTPUT_LOGGER:
                    lines.append(f"{doc['message']}\n")
                elif doc.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                    lines.append(f"[runner] {doc['message']}\n")
                continue
        lines.append(line)
    return "".join(lines)
