"""`POST /upload`: a multipart body streamed to a spool file as it arrives, hashed on
the way, then stored with its metadata (`UploadService.receive`).

FastAPI's `UploadFile` would parse the whole body before the handler runs; here
the body is fed chunk by chunk to python-multipart's push parser, so memory
stays flat whatever the size, and a body over the limit is refused as soon as
it crosses it.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import anyio
from python_multipart.multipart import MultipartParser, parse_options_header

from api.request_errors import FieldProblem, InvalidRequestError
from api.security.principals import Principal
from runner.inputs import UploadMeta, upload_key, upload_meta_key
from runner.quotas import MB
from runner.storage import Storage

FIELD = "file"
FRAMING_ALLOWANCE = MB  # a declared length may exceed the limit by the multipart framing


class UploadTooLargeError(ValueError):
    def __init__(self, limit: int, message: str | None = None) -> None:
        self.limit = limit
        super().__init__(message or f"upload exceeds the limit of {limit} bytes")

    @classmethod
    def declared(cls, limit: int) -> UploadTooLargeError:
        """Refused on its Content-Length, before any of it is read."""
        return cls(limit, f"uploads are limited to {limit} bytes")


class MalformedUploadError(ValueError):
    """A body the multipart parser could not read."""

    def __init__(self, cause: Exception) -> None:
        super().__init__(f"malformed multipart body: {cause}")


class MissingFileError(InvalidRequestError):
    """Not multipart/form-data, or without the field `file`."""

    def __init__(self) -> None:
        why = f"send the file as multipart/form-data in the field {FIELD!r}"
        super().__init__(why, [FieldProblem(loc=["body", FIELD], type="missing", msg=why)])


class UploadService:
    """Receives uploads into `spool` (a folder on this machine), then puts them in
    `storage` under their new file id, refusing those over `limit` bytes."""

    def __init__(self, storage: Storage, spool: Path, limit: int) -> None:
        self.storage, self.spool, self.limit = storage, spool, limit

    async def receive(
        self,
        body: AsyncIterable[bytes],
        content_type: str,
        content_length: str | None,
        principal: Principal,
    ) -> UploadMeta:
        """Store the part `file` of a multipart `body`, owned by `principal`. Raises
        MissingFileError, UploadTooLargeError (on the declared length before reading),
        MalformedUploadError, and DependencyUnavailableError while storage is down."""
        boundary = boundary_of(content_type)
        if boundary is None:
            raise MissingFileError()
        declared = int(content_length) if content_length and content_length.isdigit() else 0
        if declared > self.limit + FRAMING_ALLOWANCE:
            raise UploadTooLargeError.declared(self.limit)
        file_id = uuid.uuid4().hex
        self.spool.mkdir(parents=True, exist_ok=True)
        spooled = self.spool / file_id
        receiver = MultipartFileReceiver(boundary, spooled, self.limit)
        try:
            try:
                async for chunk in body:
                    receiver.feed(chunk)
                receiver.finish()
            except UploadTooLargeError:
                raise
            except Exception as exc:  # a malformed body is the client's problem
                raise MalformedUploadError(exc) from exc
            if not receiver.received_file:
                raise MissingFileError()
            meta = UploadMeta(
                file_id=file_id,
                filename=receiver.filename or "upload",
                size=receiver.size,
                sha256=receiver.sha256.hexdigest(),
                created_at=datetime.now(UTC),
                owner=principal.id,
            )
            await anyio.to_thread.run_sync(self.storage.put_file, upload_key(file_id), spooled)
            await anyio.to_thread.run_sync(
                self.storage.put_bytes, upload_meta_key(file_id), meta.model_dump_json().encode()
            )
            return meta
        finally:
            receiver.abort()  # the spool file goes, whatever happened (storage moved it)


class MultipartFileReceiver:
    """Writes the part named `file` to `target`; other parts are ignored."""

    def __init__(self, boundary: bytes, target: Path, limit: int) -> None:
        self.target, self.limit = target, limit
        self.filename: str | None = None
        self.size = 0
        self.sha256 = hashlib.sha256()
        self._out: BinaryIO | None = None
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._seen_file = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field_data,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
            },
        )

    @property
    def received_file(self) -> bool:
        return self._seen_file

    def feed(self, chunk: bytes) -> None:
        self._parser.write(chunk)

    def finish(self) -> None:
        self._parser.finalize()
        self._part_end()

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        if options.get(b"name", b"").decode("utf-8", "replace") == FIELD and not self._seen_file:
            self._seen_file = True
            self.filename = options.get(b"filename", b"upload").decode("utf-8", "replace")
            self._out = self.target.open("wb")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._out is None:
            return
        piece = data[start:end]
        self.size += len(piece)
        if self.size > self.limit:
            raise UploadTooLargeError(self.limit)
        self.sha256.update(piece)
        self._out.write(piece)

    def _part_end(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def abort(self) -> None:
        self._part_end()
        self.target.unlink(missing_ok=True)


def boundary_of(content_type: str) -> bytes | None:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        return None
    return options.get(b"boundary")
