"""A multipart upload streamed to a file on disk as it arrives, hashed on the way.

FastAPI's `UploadFile` would parse the whole body before the handler runs; here
the body is fed chunk by chunk to python-multipart's push parser, so memory
stays flat whatever the size, and a body over the limit is refused as soon as
it crosses it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import BinaryIO

from python_multipart.multipart import MultipartParser, parse_options_header

FIELD = "file"


class UploadTooLargeError(ValueError):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"upload exceeds the limit of {limit} bytes")


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
