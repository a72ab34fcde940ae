"""Error answers: written whatever the client sent, and the one table that turns each
error a service raises into its HTTP status and body (routes do not catch them)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request, Response, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.utils import is_body_allowed_for_status_code
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from api.request_errors import InvalidRequestError, UnknownJobError
from api.security.authentication import close_websocket
from api.uploads import MalformedUploadError, UploadTooLargeError
from runner.argv import InvalidArgsError
from runner.catalog import UnknownCommandError, UnknownStageError
from runner.dependencies import DependencyUnavailableError
from runner.execute import SYNC_EXECUTOR, ExecutorUnavailableError

CLOSE_TRY_AGAIN = 1013  # a dependency is down


def json_safe(value: Any) -> Any:
    """JSON cannot carry NaN or infinities: echo them back as text."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


class EscapingJSONResponse(JSONResponse):
    """JSON that can always be written. An error may echo what the client sent, and
    JSON lets a client send half a surrogate pair (`\\ud800`), which UTF-8 cannot
    encode: such an answer goes out with non-ASCII text escaped, as it came in."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return json.dumps(content, allow_nan=False, separators=(",", ":")).encode()


def _problems(detail: list[Any]) -> dict[str, Any]:
    """A 422's body: each problem as FastAPI gives it, and `message`, all of them in one
    line naming each field (`args.input: …`): what clients that show one string (n8n)
    show."""
    lines = []
    for problem in detail:
        loc = [str(part) for part in problem.get("loc", ())]
        where = ".".join(loc[1:] if loc[:1] in (["body"], ["query"], ["path"]) else loc)
        lines.append(f"{where}: {problem.get('msg', '')}" if where else str(problem.get("msg")))
    return {"detail": detail, "message": "; ".join(lines)}


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = json_safe(jsonable_encoder(exc.errors()))
    return EscapingJSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content=_problems(detail)
    )


async def _http_error(_: Request, exc: Exception) -> Response:
    """As FastAPI's own handler, written with EscapingJSONResponse: a 404 names the
    unknown stage the client sent, whatever it holds."""
    assert isinstance(exc, HTTPException)
    headers = getattr(exc, "headers", None)
    if not is_body_allowed_for_status_code(exc.status_code):
        return Response(status_code=exc.status_code, headers=headers)
    return EscapingJSONResponse(
        {"detail": exc.detail}, status_code=exc.status_code, headers=headers
    )


# --- the domain-error table: what the services raise, answered in one place -----------


@dataclass(frozen=True)
class ErrorAnswer:
    """How every route answers one kind of error a service raises."""

    status: int
    body: Callable[[Any], dict[str, Any]]
    headers: dict[str, str] | None = None


def _detail(of: Callable[[Any], Any]) -> Callable[[Any], dict[str, Any]]:
    return lambda exc: {"detail": of(exc)}


def _unknown_name(field: str) -> Callable[[Any], dict[str, Any]]:
    """The name that was not found, and the ones this server offers there."""
    return _detail(lambda exc: {"msg": str(exc), "field": field, "valid": exc.valid})


def _down(exc: DependencyUnavailableError) -> dict[str, Any]:
    return {"detail": str(exc), "dependency": exc.dependency}


RETRY_LATER = {"Retry-After": "5"}

# Looked up along the error's classes: a subclass is answered as its nearest listed base.
DOMAIN_ERRORS: dict[type[Exception], ErrorAnswer] = {
    UnknownStageError: ErrorAnswer(status.HTTP_404_NOT_FOUND, _unknown_name("stage")),
    UnknownCommandError: ErrorAnswer(status.HTTP_404_NOT_FOUND, _unknown_name("command")),
    UnknownJobError: ErrorAnswer(status.HTTP_404_NOT_FOUND, _detail(str)),
    InvalidArgsError: ErrorAnswer(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        lambda exc: _problems([problem.as_detail() for problem in exc.problems]),
    ),
    InvalidRequestError: ErrorAnswer(
        status.HTTP_422_UNPROCESSABLE_CONTENT, lambda exc: _problems(list(exc.problems))
    ),
    MalformedUploadError: ErrorAnswer(status.HTTP_400_BAD_REQUEST, _detail(str)),
    UploadTooLargeError: ErrorAnswer(status.HTTP_413_CONTENT_TOO_LARGE, _detail(str)),
    DependencyUnavailableError: ErrorAnswer(
        status.HTTP_503_SERVICE_UNAVAILABLE, _down, RETRY_LATER
    ),
    ExecutorUnavailableError: ErrorAnswer(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        lambda exc: _down(DependencyUnavailableError(SYNC_EXECUTOR, exc)),
        RETRY_LATER,
    ),
}


def answer_to(exc: Exception) -> ErrorAnswer:
    """The table's entry for `exc`: its class's, or its nearest listed base class's."""
    return next(DOMAIN_ERRORS[cls] for cls in type(exc).__mro__ if cls in DOMAIN_ERRORS)


async def domain_error(conn: HTTPConnection, exc: Exception) -> Response | None:
    """The table's answer to `exc`. A WebSocket is closed instead: 1013 while a
    dependency is down (e.g. the OAuth2 JWKS, while authenticating), else 4000 + the
    status, as 4401 and 4403."""
    answer = answer_to(exc)
    if isinstance(conn, WebSocket):
        code = CLOSE_TRY_AGAIN if answer.status == 503 else 4000 + answer.status
        await close_websocket(conn, code, str(exc))
        return None
    return EscapingJSONResponse(answer.body(exc), status_code=answer.status, headers=answer.headers)


async def dependency_down(conn: HTTPConnection, exc: Exception) -> Response | None:
    """503 naming the dependency that is down; for the rate limiter, which meets Redis
    outside the routes."""
    assert isinstance(exc, DependencyUnavailableError)
    return await domain_error(conn, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    for error in DOMAIN_ERRORS:
        app.add_exception_handler(error, domain_error)
