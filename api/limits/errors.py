"""429 Too Many Requests: which limit, and when to try again."""

from __future__ import annotations

from fastapi import FastAPI, status
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from api.limits.rates import LimitName, Verdict
from api.observability.metrics import rate_limited
from api.security.authentication import close_websocket

CLOSE_TOO_MANY_REQUESTS = 4429  # 4000 + the HTTP status, as 4401 and 4403


class LimitExceededError(Exception):
    def __init__(
        self, limit: LimitName, detail: str, retry_after_s: int, verdict: Verdict | None = None
    ) -> None:
        super().__init__(detail)
        self.limit, self.detail = limit, detail
        self.retry_after_s = max(1, retry_after_s)
        self.verdict = verdict  # for RateLimit-* headers; None for a cap on concurrency

    @classmethod
    def over_rate(cls, verdict: Verdict, who: str) -> LimitExceededError:
        detail = (
            f"rate limit reached for {who} ({verdict.rate.describe()}); "
            f"retry in {verdict.retry_after_s} s"
        )
        return cls(verdict.rate.name, detail, verdict.retry_after_s, verdict)

    def headers(self) -> dict[str, str]:
        own = self.verdict.headers() if self.verdict is not None else {}
        return {"Retry-After": str(self.retry_after_s), **own}

    def response(self) -> JSONResponse:
        return JSONResponse(
            status_code=status.HTTP_429_TOO_MANY_REQUESTS,
            content={"detail": self.detail, "limit": self.limit.value,
                     "retry_after_s": self.retry_after_s},
            headers=self.headers(),
        )  # fmt: skip


async def refuse(conn: HTTPConnection, exc: LimitExceededError) -> JSONResponse | None:
    """The 429 answer; a WebSocket is accepted and closed with 4429 and the detail."""
    rate_limited(getattr(conn.state, "identified", None), exc.limit)  # by principal class
    if isinstance(conn, WebSocket):
        await close_websocket(conn, CLOSE_TOO_MANY_REQUESTS, exc.detail)
        return None
    return exc.response()


async def _limit_exceeded(conn: HTTPConnection, exc: Exception) -> JSONResponse | None:
    assert isinstance(exc, LimitExceededError)
    return await refuse(conn, exc)


def install_limit_error_handler(app: FastAPI) -> None:
    app.add_exception_handler(LimitExceededError, _limit_exceeded)
