"""Error responses that can always be written, whatever the client sent."""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from api.security.authentication import close_websocket
from runner.dependencies import DependencyUnavailableError

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


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail = json_safe(jsonable_encoder(exc.errors()))
    return JSONResponse(
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT, content={"detail": detail}
    )


async def dependency_down(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
    """503 naming the dependency that is down; a WebSocket is closed with 1013."""
    assert isinstance(exc, DependencyUnavailableError)
    if isinstance(conn, WebSocket):  # e.g. the OAuth2 JWKS, while authenticating
        await close_websocket(conn, CLOSE_TRY_AGAIN, str(exc))
        return None
    return JSONResponse(
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        content={"detail": str(exc), "dependency": exc.dependency},
        headers={"Retry-After": "5"},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(DependencyUnavailableError, dependency_down)
