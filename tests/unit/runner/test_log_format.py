"""JSON log lines and their context, shared by the API and the runner."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
import threading
import warnings
from collections.abc import Iterator

import pytest

from runner import log_format
from runner.log_format import (
    JsonFormatter,
    bind,
    bound,
    configure_logging,
    context_fields,
    log_format_from_env,
    output_lines,
    plain_output,
    unbind,
)


@pytest.fixture
def root_restored() -> Iterator[None]:
    """What configure_logging changes for the whole process, put back."""
    root = logging.getLogger()
    handlers, level, json_output = root.handlers[:], root.level, log_format._json_output
    hooks = threading.excepthook, sys.excepthook
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    log_format._json_output = json_output
    threading.excepthook, sys.excepthook = hooks
    logging.captureWarnings(False)


def record(msg: str = "hello %s", args: tuple = ("world",), **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("zyra.test", logging.WARNING, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_a_line_has_the_fields_and_the_context() -> None:
    with bound(job_id="j1", principal="alice", request_id="r1"):
        line = json.loads(JsonFormatter().format(record()))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["timestamp"])
    assert line | {"timestamp": None, "process": None} == {
        "timestamp": None, "process": None, "level": "WARNING", "logger": "zyra.test",
        "message": "hello world", "job_id": "j1", "principal": "alice", "request_id": "r1",
    }  # fmt: skip
    assert "trace_id" not in line  # tracing is off


def test_extras_are_fields_and_win_over_the_context() -> None:
    with bound(job_id="from-context"):
        line = json.loads(JsonFormatter().format(record(job_id="j2", exit_code=3, path=object())))
    assert line["job_id"] == "j2" and line["exit_code"] == 3
    assert line["path"].startswith("<object object")  # not JSON: its text
    noisy = json.loads(JsonFormatter().format(record(color_message="\x1b[36m", websocket=1)))
    assert "color_message" not in noisy and "websocket" not in noisy


def test_an_exception_is_one_field_of_the_same_line() -> None:
    try:
        raise ValueError("bad value")
    except ValueError:
        logger = logging.getLogger("zyra.test.exc")
        stream = io.StringIO()
        handler = logging.StreamHandler(stream)
        handler.setFormatter(JsonFormatter())
        logger.addHandler(handler)
        try:
            logger.exception("it failed")
        finally:
            logger.removeHandler(handler)
    [text] = stream.getvalue().splitlines()
    line = json.loads(text)
    assert line["message"] == "it failed" and line["level"] == "ERROR"
    assert line["exception"].startswith("Traceback")
    assert "ValueError: bad value" in line["exception"]


def test_the_formatter_redacts_every_string_it_writes() -> None:
    formatter = JsonFormatter(redact=lambda text: text.replace("s3cret", "[redacted]"))
    line = formatter.format(record("key %s", ("s3cret",), extra_field="x s3cret"))
    assert "s3cret" not in line and json.loads(line)["extra_field"] == "x [redacted]"


def test_bind_adds_and_drops_fields_and_unbind_restores() -> None:
    outer = bind(job_id="a", principal="p")
    inner = bind(job_id=None, request_id="r")
    assert dict(context_fields()) == {"principal": "p", "request_id": "r"}
    unbind(inner)
    assert dict(context_fields()) == {"job_id": "a", "principal": "p"}
    unbind(outer)
    assert dict(context_fields()) == {}


def test_the_setting() -> None:
    assert log_format_from_env({}) == "text"
    assert log_format_from_env({"ZYRA_LOG_FORMAT": " JSON "}) == "json"
    with pytest.raises(ValueError, match="ZYRA_LOG_FORMAT='yaml'"):
        log_format_from_env({"ZYRA_LOG_FORMAT": "yaml"})


@pytest.mark.usefixtures("root_restored")
def test_configure_logging_json_and_text() -> None:
    stream = io.StringIO()
    configure_logging("json", stream)
    logging.getLogger("zyra.x").info("one")
    assert json.loads(stream.getvalue())["message"] == "one" and log_format.json_output()
    stream = io.StringIO()
    configure_logging("text", stream)
    logging.getLogger("zyra.x").info("two")
    assert re.fullmatch(r"\S+ \S+ INFO zyra\.x two\n", stream.getvalue())
    assert not log_format.json_output()


def test_echoed_output_is_one_object_per_line_and_reads_back_as_text() -> None:
    with bound(job_id="j3"):
        echoed = output_lines("stdout", "a,b\n1,2\n")
    lines = [json.loads(line) for line in echoed.splitlines()]
    assert [(line["message"], line["stream"], line["job_id"]) for line in lines] == [
        ("a,b", "stdout", "j3"), ("1,2", "stdout", "j3"),
    ]  # fmt: skip
    own = json.dumps({"logger": "zyra.runner", "level": "INFO", "message": "runner started"})
    warning = json.dumps({"logger": "zyra.runner", "level": "WARNING", "message": "no result"})
    log = f"{own}\n{echoed}{warning}\nplain text line\n{{not json\n"
    assert plain_output(log) == "a,b\n1,2\n[runner] no result\nplain text line\n{not json\n"


@pytest.mark.usefixtures("root_restored")
def test_warnings_and_uncaught_exceptions_are_json_lines_too() -> None:
    stream = io.StringIO()
    configure_logging("json", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logging.captureWarnings(True)  # pytest's own capture set showwarning back
        warnings.warn("old API", DeprecationWarning, stacklevel=1)

    def fail() -> None:
        raise RuntimeError("in a thread")

    thread = threading.Thread(target=fail, name="worker-1")
    log_format.route_stray_output()  # again: pytest put its own thread hook in meanwhile
    thread.start()
    thread.join()
    warning, uncaught = (json.loads(line) for line in stream.getvalue().splitlines())
    assert warning["logger"] == "py.warnings" and "old API" in warning["message"]
    assert uncaught["message"] == "uncaught exception in thread worker-1"
    assert "RuntimeError: in a thread" in uncaught["exception"]
