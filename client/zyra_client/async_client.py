"""The asyncio client: `AsyncClient` and `AsyncJob`, the same calls as `Client` awaited."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from zyra_client import _protocol as proto
from zyra_client.errors import ConnectionFailed, error_for
from zyra_client.models import Accepted, CancelResult, Catalog, Event, JobList, JobView, Upload


class AsyncClient:
    """A zyra-orchestrator service, for asyncio code. See `Client` for the rules."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry = proto.RetryPolicy(max_retries, max_retry_wait)
        self._auth = proto.auth_headers(api_key, token)
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=self._auth, timeout=timeout, transport=transport
        )
        self._catalog: Catalog | None = None

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        prepare: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        attempt = 0
        while True:
            request = self._http.build_request(method, path, **(prepare() if prepare else {}),
                                               **kwargs)  # fmt: skip
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{method} {request.url}: {exc}") from exc
            if response.is_success or response.is_redirect:
                return response
            await response.aread()
            await response.aclose()
            error = error_for(response)
            wait = self.retry.delay(error, attempt)
            if wait is None:
                raise error
            await asyncio.sleep(wait)
            attempt += 1

    async def commands(self, *, refresh: bool = False) -> Catalog:
        if self._catalog is None or refresh:
            response = await self.request("GET", "/cli/commands")
            self._catalog = Catalog.model_validate(response.json())
        return self._catalog

    async def run(
        self, stage: str, command: str | None, args: dict[str, Any] | None = None, **options: Any
    ) -> JobView:
        body = proto.run_body(stage, command, args, "sync", options)
        timeout = proto.sync_run_timeout(options, self.timeout)
        response = await self.request("POST", "/cli/run", json=body, timeout=timeout)
        return JobView.model_validate(response.json())

    async def submit(
        self, stage: str, command: str | None, args: dict[str, Any] | None = None, **options: Any
    ) -> AsyncJob:
        body = proto.run_body(stage, command, args, "async", options)
        response = await self.request("POST", "/cli/run", json=body)
        return await self.job(Accepted.model_validate(response.json()).job_id)

    async def job(self, job_id: str) -> AsyncJob:
        return AsyncJob(self, await self._get_view(job_id))

    async def jobs(self, **filters: Any) -> AsyncIterator[JobView]:
        params = {k: v for k, v in filters.items() if v is not None}
        while True:
            response = await self.request("GET", "/jobs", params=params)
            page = JobList.model_validate(response.json())
            for view in page.jobs:
                yield view
            if not page.next_cursor:
                return
            params["cursor"] = page.next_cursor

    async def upload(self, path: str | os.PathLike[str]) -> Upload:
        file_path = Path(path)

        def fresh_file() -> dict[str, Any]:
            # httpx streams a multipart file object in chunks (sync reads, also here).
            return {"files": {"file": (file_path.name, file_path.open("rb"))}}

        response = await self.request("POST", "/upload", prepare=fresh_file)
        return Upload.model_validate(response.json())

    async def _get_view(self, job_id: str, **params: Any) -> JobView:
        timeout = self.timeout + params.get("wait", 0)
        response = await self.request("GET", f"/jobs/{job_id}", params=params, timeout=timeout)
        return JobView.model_validate(response.json())


class AsyncJob:
    """One job, for asyncio code: the same methods as `Job`, awaited."""

    def __init__(self, client: AsyncClient, view: JobView) -> None:
        self._client = client
        self.view = view

    @property
    def id(self) -> str:
        return self.view.job_id

    def __repr__(self) -> str:
        return f"AsyncJob({self.id!r}, status={self.view.status!r})"

    async def refresh(self) -> JobView:
        self.view = await self._client._get_view(self.id)
        return self.view

    async def wait(self, timeout: float | None = None) -> JobView:
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.view.done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {self.id} is still {self.view.status}")
            self.view = await self._client._get_view(self.id, wait=proto.wait_slice(left))
        return self.view

    async def events(self, since: int = 0) -> AsyncIterator[Event]:
        last, failures = since, 0
        while True:
            code: int | None = None
            reason = ""
            try:
                async with connect(
                    proto.ws_url(self._client.url, self.id, last),
                    additional_headers=self._client._auth,
                    open_timeout=self._client.timeout,
                ) as ws:
                    async for raw in ws:
                        event = Event.model_validate_json(raw)
                        if event.seq <= last:
                            continue
                        last, failures = event.seq, 0
                        yield event
                        if event.terminal:
                            return
                    code, reason = ws.close_code, ws.close_reason or ""
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status not in (429, 503):
                    raise proto.invalid_stream_answer(status, self.id) from exc
            except ConnectionClosed as exc:
                code = exc.rcvd.code if exc.rcvd else None
                reason = exc.rcvd.reason if exc.rcvd else ""
            except (OSError, InvalidHandshake, TimeoutError):
                pass
            if not proto.after_close(code, reason, self.id):
                return
            failures += 1
            if failures > proto.MAX_STREAM_FAILURES:
                raise ConnectionFailed(f"lost the event stream of job {self.id}")
            await asyncio.sleep(proto.stream_backoff(failures))

    async def download(self, dest: str | os.PathLike[str], file: str | None = None) -> Path:
        params = {"file": file} if file else {}
        response = await self._client.request(
            "GET", f"/jobs/{self.id}/download", params=params, stream=True
        )
        try:
            if response.is_redirect:  # a presigned URL: it must not get our credential
                location = response.headers["Location"]
                await response.aclose()
                async with httpx.AsyncClient(timeout=self._client.timeout) as bare:
                    response = await bare.get(location)
                if not response.is_success:
                    raise error_for(response)
            target = proto.download_target(
                dest, response.headers.get("Content-Disposition"), self.id
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as out:
                async for chunk in response.aiter_bytes():
                    out.write(chunk)
            partial.replace(target)
            return target
        finally:
            await response.aclose()

    async def cancel(self) -> CancelResult:
        response = await self._client.request("DELETE", f"/jobs/{self.id}")
        return CancelResult.model_validate(response.json())
