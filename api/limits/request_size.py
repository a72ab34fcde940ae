"""What one request may carry: a body of at most ZYRA_MAX_REQUEST_BODY_MB (413), and
strings in `args` of at most ZYRA_MAX_ARG_LENGTH characters (422 naming the argument:
`RunRequestWithinLimits` in api/deps.py).

A JSON body is read whole into memory before it is parsed, and a run's arguments go on
into the job record, the job spec and the command; these bounds are the service's,
chosen by its operator, rather than whatever a buffer on the way happens to hold.
`POST /upload` streams its body to disk and has its own bound, ZYRA_MAX_UPLOAD_MB.
"""

from __future__ import annotations

from fastapi import HTTPException, status
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import EscapingJSONResponse

MB = 1 << 20
OWN_LIMIT_PATHS = frozenset({"/upload"})  # ZYRA_MAX_UPLOAD_MB


def _too_large(limit_mb: int) -> str:
    return (f"request bodies are limited to {limit_mb} MB ({limit_mb * MB} bytes, "
            "ZYRA_MAX_REQUEST_BODY_MB)")  # fmt: skip


class RequestBodyLimitMiddleware:
    """413 for a body declared larger than the limit (before any of it is read), or
    as soon as what arrives crosses it (chunked, or a Content-Length that lied)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings = getattr(scope["app"].state, "settings", None)  # set in the lifespan
        if scope["type"] != "http" or settings is None or scope["path"] in OWN_LIMIT_PATHS:
            await self.app(scope, receive, send)
            return
        limit_mb: int = settings.max_request_body_mb
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit_mb * MB:
            answer = EscapingJSONResponse(
                {"detail": _too_large(limit_mb)}, status.HTTP_413_CONTENT_TOO_LARGE
            )
            await answer(scope, receive, send)
            return
        await self.app(scope, _counting(receive, limit_mb), send)


def _counting(receive: Receive, limit_mb: int) -> Receive:
    received = 0

    async def receive_within_limit() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit_mb * MB:
                # Raised where the route reads its body: answered as any HTTPException.
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, _too_large(limit_mb))
        return message

    return receive_within_limit
