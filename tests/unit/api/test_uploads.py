"""`UploadService.receive`: a multipart body spooled to disk and stored (api/uploads.py)."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import anyio
import pytest

from api.security.principals import Principal, Scope
from api.uploads import (
    MalformedUploadError,
    MissingFileError,
    UploadService,
    UploadTooLargeError,
)
from runner.dependencies import DependencyUnavailableError
from runner.inputs import UploadMeta, upload_key, upload_meta_key
from runner.storage import LocalStorage

ALICE = Principal.for_api_key("alice", frozenset({Scope.RUN}))
BOUNDARY = "b0undary"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


def multipart(field: str, filename: str, data: bytes) -> bytes:
    return (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


async def chunks(body: bytes, size: int = 7) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):  # in pieces, as a network delivers it
        yield body[start : start + size]


async def never_read() -> AsyncIterator[bytes]:
    raise AssertionError("the body was read")
    yield b""  # pragma: no cover (makes this an async generator)


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "storage")


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    return tmp_path / "spool"


def receive(
    service: UploadService,
    body: bytes | AsyncIterator[bytes],
    content_type: str = MULTIPART,
    content_length: str | None = None,
) -> UploadMeta:
    stream = chunks(body) if isinstance(body, bytes) else body
    return anyio.run(service.receive, stream, content_type, content_length, ALICE)


def files_in(folder: Path) -> Iterable[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def test_the_file_is_stored_with_its_metadata_and_nothing_stays_spooled(
    storage: LocalStorage, spool: Path
) -> None:
    data = bytes(range(256)) * 40
    meta = receive(UploadService(storage, spool, 1 << 20), multipart("file", "field.npy", data))
    assert (meta.filename, meta.size, meta.sha256, meta.owner) == (
        "field.npy", len(data), hashlib.sha256(data).hexdigest(), "key:alice",
    )  # fmt: skip
    assert storage.get_bytes(upload_key(meta.file_id)) == data
    stored = storage.get_bytes(upload_meta_key(meta.file_id))
    assert stored is not None and UploadMeta.model_validate_json(stored) == meta
    assert files_in(spool) == []


def test_a_file_over_the_limit_is_refused_as_it_crosses_it(
    storage: LocalStorage, spool: Path
) -> None:
    with pytest.raises(UploadTooLargeError, match="limit of 100 bytes"):
        receive(UploadService(storage, spool, 100), multipart("file", "big", b"x" * 101))
    assert files_in(spool) == [] and files_in(storage.root) == []


def test_a_declared_length_far_over_the_limit_is_refused_before_reading(
    storage: LocalStorage, spool: Path
) -> None:
    service = UploadService(storage, spool, 100)
    with pytest.raises(UploadTooLargeError, match="uploads are limited to 100 bytes"):
        receive(service, never_read(), content_length=str(100 + (1 << 20) + 1))


def test_a_body_that_is_not_multipart_is_a_missing_file(storage: LocalStorage, spool: Path) -> None:
    with pytest.raises(MissingFileError):
        receive(UploadService(storage, spool, 100), never_read(), content_type="text/plain")


def test_a_multipart_body_without_the_file_field_is_a_missing_file(
    storage: LocalStorage, spool: Path
) -> None:
    with pytest.raises(MissingFileError):
        receive(UploadService(storage, spool, 100), multipart("other", "a.txt", b"abc"))
    assert files_in(spool) == [] and files_in(storage.root) == []


def test_a_malformed_body_is_refused_and_leaves_nothing(storage: LocalStorage, spool: Path) -> None:
    body = multipart("file", "a", b"abc").replace(b"\r\n\r\n", b"\r\n\x00\r\n", 1)
    with pytest.raises(MalformedUploadError, match=r"^malformed multipart body: "):
        receive(UploadService(storage, spool, 100), body)
    assert files_in(spool) == [] and files_in(storage.root) == []


class DownStorage(LocalStorage):
    def put_file(self, key: str, source: Path) -> None:
        raise DependencyUnavailableError("S3", ConnectionError("refused"))


def test_storage_that_is_down_leaves_no_spool_file_behind(tmp_path: Path, spool: Path) -> None:
    with pytest.raises(DependencyUnavailableError):
        receive(
            UploadService(DownStorage(tmp_path / "s"), spool, 100), multipart("file", "a", b"x")
        )
    assert files_in(spool) == []
