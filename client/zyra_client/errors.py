"""One exception type per class of answer, built from the service's error bodies."""

from __future__ import annotations

import email.utils
import time
from typing import Any

import httpx

from zyra_client.models import JobView


class ZyraError(Exception):
    """An answer the client could not turn into a result."""

    def __init__(self, message: str, *, status_code: int | None = None, body: Any = None):
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.detail = body.get("detail") if isinstance(body, dict) else body


class ConnectionFailed(ZyraError):
    """The server could not be reached, or the connection broke."""


class AuthError(ZyraError):
    """401 (no or a refused credential) or 403 (a missing scope)."""


class NotFound(ZyraError):
    """404: an unknown (or someone else's) job, upload, output, stage or command."""


class OutputsGone(ZyraError):
    """410: the job's outputs left storage."""


class ValidationFailed(ZyraError):
    """422: a field or argument was refused. `message` names each (`args.width: …`),
    `detail` is the server's list of `{loc, msg, type}`."""

    @property
    def fields(self) -> list[str]:
        """Dotted names of the refused fields, e.g. `args.input`."""
        return [_dotted(item.get("loc", [])) for item in _detail_items(self.detail)]


class JobFailed(ZyraError):
    """422 with `fail_on_nonzero_exit`: the job ended without succeeding; `view` is it."""

    def __init__(self, message: str, *, status_code: int, body: dict[str, Any]):
        super().__init__(message, status_code=status_code, body=body)
        self.view = JobView.model_validate(body)


class Throttled(ZyraError):
    """429 or 503: try again after `retry_after` seconds (None: the server did not say)."""

    def __init__(self, message: str, *, status_code: int, body: Any, retry_after: float | None):
        super().__init__(message, status_code=status_code, body=body)
        self.retry_after = retry_after


class RateLimited(Throttled):
    """429: a rate or cap was reached (`limit` names it)."""

    @property
    def limit(self) -> str | None:
        return self.body.get("limit") if isinstance(self.body, dict) else None


class ServiceUnavailable(Throttled):
    """503: a dependency is down, too many streams are open, or the server is stopping."""


def retry_after_seconds(value: str | None) -> float | None:
    """A `Retry-After` header in seconds (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _dotted(loc: list[Any]) -> str:
    # "body"/"query"/"path" say where the field was sent, not what it is.
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path") else list(loc)
    return ".".join(str(p) for p in parts) or "request"


def _detail_items(detail: Any) -> list[dict[str, Any]]:
    return [d for d in detail if isinstance(d, dict)] if isinstance(detail, list) else []


def _one_line(body: Any, fallback: str) -> str:
    """The error in one line, naming the field(s) where the body says which."""
    if not isinstance(body, dict):
        return fallback
    if isinstance(body.get("message"), str):
        return body["message"]
    detail = body.get("detail")
    items = _detail_items(detail)
    if items:
        return "; ".join(f"{_dotted(i.get('loc', []))}: {i.get('msg', '')}" for i in items)
    if isinstance(detail, dict) and "msg" in detail:
        return str(detail["msg"])
    return str(detail) if detail is not None else fallback


def error_for(response: httpx.Response) -> ZyraError:
    """The exception for a response that is not a success."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    status = response.status_code
    message = _one_line(body, f"HTTP {status} from {response.request.url}")
    if status in (401, 403):
        return AuthError(message, status_code=status, body=body)
    if status == 404:
        return NotFound(message, status_code=status, body=body)
    if status == 410:
        return OutputsGone(message, status_code=status, body=body)
    if status == 422:
        if isinstance(body, dict) and "job_id" in body:
            return JobFailed(message, status_code=status, body=body)
        return ValidationFailed(message, status_code=status, body=body)
    if status in (429, 503):
        after = retry_after_seconds(response.headers.get("Retry-After"))
        kind = RateLimited if status == 429 else ServiceUnavailable
        return kind(message, status_code=status, body=body, retry_after=after)
    return ZyraError(message, status_code=status, body=body)
