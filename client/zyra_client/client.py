"""The synchronous client: `Client` and the `Job` it hands out."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

from zyra_client import _protocol as proto
from zyra_client.errors import ConnectionFailed, error_for
from zyra_client.models import Accepted, CancelResult, Catalog, Event, JobList, JobView, Upload


class Client:
    """A zyra-orchestrator service. `api_key` goes as `X-API-Key`, `token` as a bearer.

    Requests refused with 429 or 503 are retried after their `Retry-After` (at most
    `max_retries` times, never waiting more than `max_retry_wait` seconds at once);
    every other error raises at once (zyra_client.errors).
    """

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.retry = proto.RetryPolicy(max_retries, max_retry_wait)
        self._auth = proto.auth_headers(api_key, token)
        self._http = httpx.Client(
            base_url=self.url, headers=self._auth, timeout=timeout, transport=transport
        )
        self._catalog: Catalog | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- requests ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        stream: bool = False,
        prepare: Callable[[], dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send, retrying 429/503 as the policy allows; any other error raises.
        `prepare` builds fresh keyword arguments per attempt (e.g. a reopened file)."""
        attempt = 0
        while True:
            request = self._http.build_request(method, path, **(prepare() if prepare else {}),
                                               **kwargs)  # fmt: skip
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                raise ConnectionFailed(f"{method} {request.url}: {exc}") from exc
            if response.is_success or response.is_redirect:
                return response
            response.read()
            response.close()
            error = error_for(response)
            wait = self.retry.delay(error, attempt)
            if wait is None:
                raise error
            time.sleep(wait)
            attempt += 1

    # -- the API ---------------------------------------------------------------------

    def commands(self, *, refresh: bool = False) -> Catalog:
        """The command catalog, fetched once per client (a server answers one per
        Zyra version; `refresh=True` asks again, e.g. after the server was upgraded)."""
        if self._catalog is None or refresh:
            self._catalog = Catalog.model_validate(self.request("GET", "/cli/commands").json())
        return self._catalog

    def run(
        self, stage: str, command: str | None, args: dict[str, Any] | None = None, **options: Any
    ) -> JobView:
        """Run a command and answer when it has ended (`POST /cli/run`, mode sync).
        `options`: the other body fields (timeout_s, metadata, fail_on_nonzero_exit, …)."""
        body = proto.run_body(stage, command, args, "sync", options)
        timeout = proto.sync_run_timeout(options, self.timeout)
        return JobView.model_validate(
            self.request("POST", "/cli/run", json=body, timeout=timeout).json()
        )

    def submit(
        self, stage: str, command: str | None, args: dict[str, Any] | None = None, **options: Any
    ) -> Job:
        """Start a command as an async job (`POST /cli/run`, mode async)."""
        body = proto.run_body(stage, command, args, "async", options)
        accepted = Accepted.model_validate(self.request("POST", "/cli/run", json=body).json())
        return self.job(accepted.job_id)

    def job(self, job_id: str) -> Job:
        return Job(self, self._get_view(job_id))

    def jobs(self, **filters: Any) -> Iterator[JobView]:
        """Every job matching `filters` (status, stage, command, owner; limit is the
        page size), newest first, page after page."""
        params = {k: v for k, v in filters.items() if v is not None}
        while True:
            page = JobList.model_validate(self.request("GET", "/jobs", params=params).json())
            yield from page.jobs
            if not page.next_cursor:
                return
            params["cursor"] = page.next_cursor

    def upload(self, path: str | os.PathLike[str]) -> Upload:
        """Upload a file; pass `upload.ref` (`file_id:<id>`) as an argument."""
        file_path = Path(path)

        def fresh_file() -> dict[str, Any]:
            return {"files": {"file": (file_path.name, file_path.open("rb"))}}

        return Upload.model_validate(self.request("POST", "/upload", prepare=fresh_file).json())

    def _get_view(self, job_id: str, **params: Any) -> JobView:
        timeout = self.timeout + params.get("wait", 0)
        response = self.request("GET", f"/jobs/{job_id}", params=params, timeout=timeout)
        return JobView.model_validate(response.json())


class Job:
    """One job of the service: its latest view, and what can be done with it."""

    def __init__(self, client: Client, view: JobView) -> None:
        self._client = client
        self.view = view

    @property
    def id(self) -> str:
        return self.view.job_id

    def __repr__(self) -> str:
        return f"Job({self.id!r}, status={self.view.status!r})"

    def refresh(self) -> JobView:
        self.view = self._client._get_view(self.id)
        return self.view

    def wait(self, timeout: float | None = None) -> JobView:
        """Long-poll until the job has ended; TimeoutError after `timeout` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.view.done:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"job {self.id} is still {self.view.status}")
            self.view = self._client._get_view(self.id, wait=proto.wait_slice(left))
        return self.view

    def events(self, since: int = 0) -> Iterator[Event]:
        """The job's events over the WebSocket, history first, until the terminal one.
        A dropped connection is resumed after the last event seen: none is lost or
        repeated."""
        last, failures = since, 0
        while True:
            code: int | None = None
            reason = ""
            try:
                with connect(
                    proto.ws_url(self._client.url, self.id, last),
                    additional_headers=self._client._auth,
                    open_timeout=self._client.timeout,
                ) as ws:
                    for raw in ws:
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
                pass  # unreachable for now: try again
            if not proto.after_close(code, reason, self.id):
                return
            failures += 1
            if failures > proto.MAX_STREAM_FAILURES:
                raise ConnectionFailed(f"lost the event stream of job {self.id}")
            time.sleep(proto.stream_backoff(failures))

    def download(self, dest: str | os.PathLike[str], file: str | None = None) -> Path:
        """Write an output (`file`, or the only one; several: a zip) to `dest` (a file,
        or a directory to put it in under its own name); answers the path written."""
        params = {"file": file} if file else {}
        response = self._client.request(
            "GET", f"/jobs/{self.id}/download", params=params, stream=True
        )
        try:
            if response.is_redirect:  # a presigned URL: it must not get our credential
                location = response.headers["Location"]
                response.close()
                response = httpx.get(location, timeout=self._client.timeout)
                if not response.is_success:
                    raise error_for(response)
            target = proto.download_target(
                dest, response.headers.get("Content-Disposition"), self.id
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(target.name + ".part")
            with partial.open("wb") as out:
                for chunk in response.iter_bytes():
                    out.write(chunk)
            partial.replace(target)
            return target
        finally:
            response.close()

    def cancel(self) -> CancelResult:
        response = self._client.request("DELETE", f"/jobs/{self.id}")
        return CancelResult.model_validate(response.json())
