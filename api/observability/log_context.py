"""What the API's log lines are about: the request, its principal, the job.

`RequestIdMiddleware` (outermost) gives every HTTP request and WebSocket a request
id: the client's `X-Request-ID` when well formed, else a new one, echoed in the
response. The principal is bound once authenticated (api/deps.py) and the job where
one is handled (api/jobs/service.py, and here for `/jobs/{id}...` paths). The fields
live in a context variable (runner/log_format.py), so every line of the request's
task, uvicorn's access line included, and of threads it starts carries them.
"""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner import tracing
from runner.log_format import bind, bound

REQUEST_ID_HEADER = "X-Request-ID"
_HEADER = REQUEST_ID_HEADER.lower().encode()
_WELL_FORMED = re.compile(r"[A-Za-z0-9._-]{1,64}")
_JOB_PATH = re.compile(r"/(?:ws/)?jobs/([0-9a-f]{32})(?:/|$)")
Method = TypeVar("Method", bound=Callable[..., Any])


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's id if well formed (at most 64 of [A-Za-z0-9._-]), else a new one."""
    for name, value in headers:
        if name.lower() == _HEADER:
            text = value.decode("latin-1")
            if _WELL_FORMED.fullmatch(text):
                return text
            break
    return uuid.uuid4().hex


class RequestIdMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope.get("headers", []))
        job = _JOB_PATH.match(scope.get("path", ""))
        scope.setdefault("state", {})["request_id"] = request_id
        header = (_HEADER, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept"):
                headers = [h for h in message.get("headers", []) if h[0].lower() != _HEADER]
                message = {**message, "headers": [*headers, header]}
            await send(message)

        # Never reset: the server runs each request in a task of its own (a copy of its
        # context), and uvicorn's access line, written as the response starts, needs it.
        bind(request_id=request_id, job_id=job.group(1) if job else None)
        await self.app(scope, receive, send_with_id)


def bind_principal(name: str) -> None:
    """The authenticated principal's name (never its key) on the request's lines."""
    bind(principal=name)


def bind_job(job_id: str) -> None:
    """For the rest of the current context (the request's task): the job it made."""
    bind(job_id=job_id)


def job_context(job_id: str) -> AbstractContextManager[None]:
    """A block that handles one job (a service method, a backend's report)."""
    return bound(job_id=job_id)


def handles_job(span_name: str | None = None) -> Callable[[Method], Method]:
    """A method whose first argument is a job id or a job record: its lines carry the
    job's id; with `span_name`, a span in the job's own trace (the record's
    `traceparent`), whoever calls it (a watcher thread, another request)."""

    def decorate(method: Method) -> Method:
        @functools.wraps(method)
        def wrapper(self: object, job: Any, *args: Any, **kwargs: Any) -> Any:
            job_id = job if isinstance(job, str) else job.job_id
            traced = (
                tracing.span(span_name, {"zyra.job_id": job_id}, getattr(job, "traceparent", None))
                if span_name
                else nullcontext()
            )
            with job_context(job_id), traced:
                return method(self, job, *args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate
