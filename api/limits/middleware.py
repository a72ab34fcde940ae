"""Every HTTP request and WebSocket connection but the health probes passes the rate
limits before its route runs (api/limits/admission.py); answers carry the RateLimit-*
headers of the limit that applied."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from api.errors import dependency_down
from api.limits.admission import VERDICT_STATE, RequestLimits
from api.limits.errors import LimitExceededError, refuse
from api.observability.scrape_auth import is_scrape
from runner.dependencies import DependencyUnavailableError

EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})  # probes must never be throttled


class RateLimitMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        # Built in the lifespan: absent only while the app is starting.
        limits: RequestLimits | None = getattr(scope["app"].state, "request_limits", None)
        if limits is None:
            await self.app(scope, receive, send)
            return
        limits.locate_client(scope)
        conn = (
            WebSocket(scope, receive, send)
            if scope["type"] == "websocket"
            else HTTPConnection(scope, receive)
        )
        if is_scrape(conn):  # Prometheus with ZYRA_METRICS_TOKEN: no API credential to count
            await self.app(scope, receive, send)
            return
        try:
            verdict = await limits.admit(conn)
        except (LimitExceededError, DependencyUnavailableError) as exc:
            answer = (
                await refuse(conn, exc)
                if isinstance(exc, LimitExceededError)
                else await dependency_down(conn, exc)
            )
            if answer is not None:
                await answer(scope, receive, send)
            return
        if verdict is not None:
            setattr(conn.state, VERDICT_STATE, verdict)
        await self.app(scope, receive, _with_rate_headers(scope, send))


def _with_rate_headers(scope: Scope, send: Send) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            verdict = scope.get("state", {}).get(VERDICT_STATE)
            headers = MutableHeaders(raw=list(message.get("headers", [])))
            if verdict is not None and "ratelimit-limit" not in headers:  # a 429 has its own
                for name, value in verdict.headers().items():
                    headers.append(name, value)
            message["headers"] = headers.raw
        await send(message)

    return send_with_headers
