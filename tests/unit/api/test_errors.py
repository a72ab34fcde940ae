"""Error answers can always be written, whatever the client sent (api/errors.py)."""

from __future__ import annotations

import json

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

from api.errors import EscapingJSONResponse, install_error_handlers
from api.jobs.callbacks import CallbackRefusedError
from api.jobs.service import (
    InputGoneError,
    ResourcesTooLargeError,
    TimeoutTooLongError,
    UnknownStageFilterError,
)
from api.request_errors import UnknownJobError
from api.uploads import MalformedUploadError, MissingFileError, UploadTooLargeError
from runner.argv import ArgProblem, InvalidArgsError
from runner.catalog import UnknownCommandError, UnknownStageError
from runner.dependencies import DependencyUnavailableError
from runner.execute import ExecutorUnavailableError


def test_text_utf8_cannot_encode_goes_out_escaped_as_it_came() -> None:
    echoed = {"detail": [{"loc": ["body", "args", "\ud800"], "input": "é \udcff"}]}
    body = EscapingJSONResponse(echoed, status_code=422).body
    assert body.isascii() and json.loads(body) == echoed


def test_other_text_stays_utf8() -> None:
    assert EscapingJSONResponse({"detail": "é"}).body == '{"detail":"é"}'.encode()


# --- the domain-error table: each error the service raises → its status and body ---------

HOOK = "http://127.0.0.1:9/hook"
REFUSED = "callback_url leads to 127.0.0.1, a loopback address"
CASES = [
    pytest.param(
        UnknownStageError("paint", ["visualize", "run"]),
        404,
        {"detail": {"msg": "unknown stage 'paint'; valid stages: run, visualize",
                    "field": "stage", "valid": ["run", "visualize"]}},
        id="unknown stage",
    ),
    pytest.param(
        UnknownCommandError("visualize", "sculpt", ["heatmap"]),
        404,
        {"detail": {"msg": "unknown command 'sculpt' in stage 'visualize'; "
                           "valid commands: heatmap",
                    "field": "command", "valid": ["heatmap"]}},
        id="unknown command",
    ),
    pytest.param(
        UnknownJobError("0123456789abcdef"),
        404,
        {"detail": "no job with id '0123456789abcdef'"},
        id="unknown job",
    ),
    pytest.param(
        InvalidArgsError([ArgProblem("width", "must be an integer", "int_type", "wide")]),
        422,
        {"detail": [{"loc": ["body", "args", "width"], "msg": "must be an integer",
                     "type": "int_type", "input": "wide"}],
         "message": "args.width: must be an integer"},
        id="invalid args",
    ),
    pytest.param(
        TimeoutTooLongError(31.0, 30.0),
        422,
        {"detail": [{"loc": ["body", "timeout_s"],
                     "msg": "timeout_s may be at most 30 seconds; got 31",
                     "type": "less_than_equal", "input": 31.0}],
         "message": "timeout_s: timeout_s may be at most 30 seconds; got 31"},
        id="timeout too long",
    ),
    pytest.param(
        ResourcesTooLargeError([("cpu", "2"), ("memory", "4Gi")]),
        422,
        {"detail": [{"loc": ["body", "resources", "cpu"], "type": "less_than_equal",
                     "msg": "cpu may be at most 2"},
                    {"loc": ["body", "resources", "memory"], "type": "less_than_equal",
                     "msg": "memory may be at most 4Gi"}],
         "message": "resources.cpu: cpu may be at most 2; "
                    "resources.memory: memory may be at most 4Gi"},
        id="resources too large",
    ),
    pytest.param(
        CallbackRefusedError(HOOK, REFUSED),
        422,
        {"detail": [{"loc": ["body", "callback_url"], "msg": REFUSED, "type": "url",
                     "input": HOOK}],
         "message": f"callback_url: {REFUSED}"},
        id="callback refused",
    ),
    pytest.param(
        InputGoneError("input: the upload file_id:ab12 is gone"),
        422,
        {"detail": [{"loc": ["body", "args"], "type": "file_ref",
                     "msg": "input: the upload file_id:ab12 is gone"}],
         "message": "args: input: the upload file_id:ab12 is gone"},
        id="input gone",
    ),
    pytest.param(
        UnknownStageFilterError(UnknownStageError("paint", ["run"])),
        422,
        {"detail": [{"loc": ["query", "stage"], "type": "enum",
                     "msg": "unknown stage 'paint'; valid stages: run"}],
         "message": "stage: unknown stage 'paint'; valid stages: run"},
        id="unknown stage filter",
    ),
    pytest.param(
        MissingFileError(),
        422,
        {"detail": [{"loc": ["body", "file"], "type": "missing",
                     "msg": "send the file as multipart/form-data in the field 'file'"}],
         "message": "file: send the file as multipart/form-data in the field 'file'"},
        id="missing file",
    ),
    pytest.param(
        MalformedUploadError(ValueError("Expected boundary character 45")),
        400,
        {"detail": "malformed multipart body: Expected boundary character 45"},
        id="malformed upload",
    ),
    pytest.param(
        UploadTooLargeError(1024),
        413,
        {"detail": "upload exceeds the limit of 1024 bytes"},
        id="upload too large",
    ),
    pytest.param(
        UploadTooLargeError.declared(1024),
        413,
        {"detail": "uploads are limited to 1024 bytes"},
        id="upload declared too large",
    ),
    pytest.param(
        ExecutorUnavailableError("restarting"),
        503,
        {"detail": "sync executor is unavailable: restarting", "dependency": "sync executor"},
        id="executor down",
    ),
    pytest.param(
        DependencyUnavailableError("Redis", ConnectionError("refused")),
        503,
        {"detail": "Redis is unavailable: refused", "dependency": "Redis"},
        id="dependency down",
    ),
]  # fmt: skip


def raising(error: Exception) -> TestClient:
    """An app with the service's error handlers and one route that raises `error`."""
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/")
    async def fail() -> None:
        raise error

    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("error", "status", "body"), CASES)
def test_each_domain_error_is_answered_with_its_status_and_exact_body(
    error: Exception, status: int, body: dict
) -> None:
    answer = raising(error).get("/")
    compact = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert (answer.status_code, answer.content) == (status, compact)


@pytest.mark.parametrize(
    "error", [ExecutorUnavailableError("x"), DependencyUnavailableError("Redis", OSError("x"))]
)
def test_a_dependency_that_is_down_says_when_to_retry(error: Exception) -> None:
    assert raising(error).get("/").headers["retry-after"] == "5"


def test_other_errors_stay_server_errors() -> None:
    assert raising(KeyError("job")).get("/").status_code == 500
    assert raising(ValueError("a bug")).get("/").status_code == 500


def test_a_domain_error_on_a_websocket_closes_it_with_4000_plus_its_status() -> None:
    app = FastAPI()
    install_error_handlers(app)

    @app.websocket("/ws")
    async def fail(_: WebSocket) -> None:
        raise UnknownJobError("0123456789abcdef")

    with TestClient(app).websocket_connect("/ws") as ws:
        closed = ws.receive()
    assert (closed["code"], closed["reason"]) == (4404, "no job with id '0123456789abcdef'")
