"""Both storages behave the same; S3 against a real MinIO server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.storage import LocalStorage, S3Storage, Storage, check_key, delete_expired
from tests.services import S3Server


@pytest.fixture(params=["local", "s3"])
def storage(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Storage]:
    if request.param == "local":
        yield LocalStorage(tmp_path / "store")
        return
    server: S3Server = request.getfixturevalue("s3_server")
    for name, value in server.credentials().items():
        monkeypatch.setenv(name, value)
    s3 = S3Storage(f"unit-{time.time_ns()}", server.url)
    s3.ensure_bucket()
    yield s3


def test_round_trip_of_files_and_bytes(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "src.bin"
    data = bytes(range(256)) * 5000
    source.write_bytes(data)
    storage.put_file("results/j1/out/a.bin", source)
    storage.put_bytes("uploads/u1/meta.json", b'{"x": 1}')
    assert storage.get_bytes("uploads/u1/meta.json") == b'{"x": 1}'
    assert storage.get_bytes("uploads/none/meta.json") is None
    assert b"".join(storage.open_chunks("results/j1/out/a.bin")) == data
    target = tmp_path / "back.bin"
    storage.fetch("results/j1/out/a.bin", target)
    assert target.read_bytes() == data
    with pytest.raises(KeyError):
        storage.fetch("results/j1/missing", tmp_path / "x")
    stat = storage.stat("results/j1/out/a.bin")
    assert stat is not None and stat.size == len(data)
    assert [o.key for o in storage.list("results/")] == ["results/j1/out/a.bin"]


def test_delete_prefix_and_retention_sweep(storage: Storage) -> None:
    storage.put_bytes("uploads/old/data", b"1")
    storage.put_bytes("uploads/old/meta.json", b"{}")
    storage.put_bytes("results/j/a.png", b"2")
    now = time.time()
    assert delete_expired(storage, "uploads", ttl_s=3600, now=now) == []
    assert delete_expired(storage, "uploads", ttl_s=3600, now=now + 7200) == ["old"]
    assert storage.list("uploads/") == []
    assert [o.key for o in storage.list("results/")] == ["results/j/a.png"]


def test_reading_an_object_that_is_gone_is_a_key_error(storage: Storage) -> None:
    """Raised on the first chunk, before anything is sent: a download can say 410."""
    storage.put_bytes("results/j/a.png", b"2")
    storage.delete_prefix("results/j")
    with pytest.raises(KeyError):
        next(storage.open_chunks("results/j/a.png"))


@pytest.mark.parametrize("key", ["/etc/passwd", "uploads/../../x", "", "a\x00b"])
def test_keys_cannot_escape(key: str) -> None:
    with pytest.raises(ValueError):
        check_key(key)
