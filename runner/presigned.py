"""A runner's storage with its per-job S3 grant: no AWS keys, only what the job needs.

`fetch` downloads an input with its presigned GET URL; `put_file` stores an
output with the presigned POST policy, which S3 itself limits to
`results/<job_id>/` (and to the job's disk quota). Files are streamed both ways,
never held in memory. Nothing else of `Storage` is offered: a runner does nothing else.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import urllib3

from runner.credentials import S3Grant
from runner.dependencies import DependencyUnavailableError
from runner.storage import CHUNK, check_key

_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")


class StorageRefusedError(PermissionError):
    """S3 refused a request of this runner (another job's key, an expired URL, …)."""

    def __init__(self, status: int, body: bytes) -> None:
        found = dict(_XML_FIELD.findall(body.decode("utf-8", "replace")))
        self.status, self.code = status, found.get("Code", "")
        super().__init__(f"S3 refused ({status} {self.code}): {found.get('Message', '')}".strip())


class PresignedStorage:
    def __init__(self, grant: S3Grant, timeout_s: float = 60.0) -> None:
        self.grant = grant
        self._http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=5.0, read=timeout_s),
            # Only failed connects are retried: a body already sent cannot be replayed.
            retries=urllib3.Retry(connect=3, read=0, status=0, redirect=0, backoff_factor=0.5),
        )

    def _request(self, method: str, url: str, **kwargs: object) -> urllib3.BaseHTTPResponse:
        try:
            return self._http.request(method, url, preload_content=False, **kwargs)  # type: ignore[arg-type]
        except urllib3.exceptions.HTTPError as exc:
            raise DependencyUnavailableError("S3", exc) from exc

    @staticmethod
    def _check(reply: urllib3.BaseHTTPResponse) -> None:
        if reply.status < 300:
            return
        body = reply.read()
        reply.release_conn()
        if reply.status >= 500:
            raise DependencyUnavailableError("S3", StorageRefusedError(reply.status, body))
        raise StorageRefusedError(reply.status, body)

    def fetch(self, key: str, target: Path) -> None:
        """Copy an input to a local file; KeyError if it is gone (or was never granted)."""
        url = self.grant.inputs.get(check_key(key))
        if url is None:
            raise KeyError(key)
        reply = self._request("GET", url)
        if reply.status == 404:
            reply.release_conn()
            raise KeyError(key)
        self._check(reply)
        try:
            with target.open("wb") as out:
                for chunk in reply.stream(CHUNK):
                    out.write(chunk)
        except urllib3.exceptions.HTTPError as exc:
            raise DependencyUnavailableError("S3", exc) from exc
        finally:
            reply.release_conn()

    def put_file(self, key: str, source: Path) -> None:
        """Store a local file under `key` (which must lie under the grant's prefix)."""
        policy = self.grant.upload
        if not check_key(key).startswith(policy.key_prefix):
            raise PermissionError(f"{key} is not under this job's prefix {policy.key_prefix}")
        boundary = secrets.token_hex(16)
        head, tail = _form(boundary, {**policy.fields, "key": key})
        size = source.stat().st_size
        reply = self._request(
            "POST",
            policy.url,
            body=_stream(head, source, tail),
            headers={
                "Content-Type": f"multipart/form-data; boundary={boundary}",
                "Content-Length": str(len(head) + size + len(tail)),
            },
        )
        self._check(reply)
        reply.drain_conn()
        reply.release_conn()
        source.unlink(missing_ok=True)


def _form(boundary: str, fields: dict[str, str]) -> tuple[bytes, bytes]:
    """The multipart body around the file: S3 wants the file as the last field."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="data"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    return "".join(parts).encode(), f"\r\n--{boundary}--\r\n".encode()


def _stream(head: bytes, source: Path, tail: bytes) -> Iterator[bytes]:
    yield head
    with source.open("rb") as f:
        while chunk := f.read(CHUNK):
            yield chunk
    yield tail
