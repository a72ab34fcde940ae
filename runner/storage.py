"""Where files live between the API and the runners: a local directory or S3.

Keys are '/'-separated and chosen by this service, never by a client:
``uploads/<file_id>/data``, ``uploads/<file_id>/meta.json`` and
``results/<job_id>/<output name>``. Runner pods share nothing with the API pod
but this store, so every input and output goes through it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from runner.dependencies import DependencyUnavailableError

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    modified: float  # epoch seconds


def check_key(key: str) -> str:
    """Keys are made here, but a bug must never turn one into a path escape."""
    path = PurePosixPath(key)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\x00" in key:
        raise ValueError(f"invalid storage key {key!r}")
    return key


class RunnerStorage(Protocol):
    """What a runner does with storage: fetch its inputs, store its outputs."""

    def put_file(self, key: str, source: Path) -> None:
        """Store a local file under `key` (the source may be moved away)."""
        ...

    def fetch(self, key: str, target: Path) -> None:
        """Copy the object to a local file; KeyError if there is none."""
        ...


class Storage(RunnerStorage, Protocol):
    def put_bytes(self, key: str, data: bytes) -> None: ...
    def get_bytes(self, key: str) -> bytes | None: ...
    def open_chunks(self, key: str) -> Iterator[bytes]:
        """The object's bytes; KeyError at the first chunk if there is none."""
        ...

    def stat(self, key: str) -> StoredObject | None: ...
    def list(self, prefix: str) -> list[StoredObject]: ...
    def delete_prefix(self, prefix: str) -> int: ...
    def download_url(self, key: str, filename: str) -> str | None:
        """A URL the client can fetch directly (S3 presigned), or None."""
        ...


class LocalStorage:
    """The embedded default: a directory on this machine."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put_file(self, key: str, source: Path) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(source, target)

    def put_bytes(self, key: str, data: bytes) -> None:
        target = self._path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(target)

    def get_bytes(self, key: str) -> bytes | None:
        path = self._path(key)
        return path.read_bytes() if path.is_file() else None

    def fetch(self, key: str, target: Path) -> None:
        path = self._path(key)
        if not path.is_file():
            raise KeyError(key)
        shutil.copyfile(path, target)

    def open_chunks(self, key: str) -> Iterator[bytes]:
        try:
            f = self._path(key).open("rb")
        except FileNotFoundError:
            raise KeyError(key) from None
        with f:
            while chunk := f.read(CHUNK):
                yield chunk

    def stat(self, key: str) -> StoredObject | None:
        path = self._path(key)
        if not path.is_file():
            return None
        st = path.stat()
        return StoredObject(key, st.st_size, st.st_mtime)

    def list(self, prefix: str) -> list[StoredObject]:
        base = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        if not base.exists():
            return []
        found = []
        for path in sorted(base.rglob("*")):
            if path.is_file() and not path.is_symlink():
                st = path.stat()
                found.append(
                    StoredObject(path.relative_to(self.root).as_posix(), st.st_size, st.st_mtime)
                )
        return found

    def delete_prefix(self, prefix: str) -> int:
        objects = self.list(prefix)
        for obj in objects:
            self._path(obj.key).unlink(missing_ok=True)
        base = self._path(prefix.rstrip("/"))
        if base.is_dir():
            shutil.rmtree(base, ignore_errors=True)
        return len(objects)

    def download_url(self, key: str, filename: str) -> str | None:
        return None


class S3Storage:
    """S3 or MinIO (`endpoint_url`, path-style addressing); credentials from the environment."""

    def __init__(
        self,
        bucket: str,
        endpoint_url: str | None = None,
        public_endpoint_url: str | None = None,
        region: str | None = None,
        presign_ttl_s: int = 900,
    ) -> None:
        import boto3
        from botocore.config import Config

        config = Config(
            s3={"addressing_style": "path"},
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=60,
        )
        region = region or os.environ.get("AWS_REGION") or "us-east-1"
        self.bucket = bucket
        self.presign_ttl_s = presign_ttl_s
        self._s3 = boto3.client("s3", endpoint_url=endpoint_url, region_name=region, config=config)
        # Presigned URLs are signed for the host the client will use: in a cluster
        # the MinIO service name is not reachable from outside.
        self._public = boto3.client(
            "s3",
            endpoint_url=public_endpoint_url or endpoint_url,
            region_name=region,
            config=config,
        )
        from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError

        self._down = (EndpointConnectionError, BotoCoreError)
        self._client_error = ClientError

    def _call(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        try:
            return fn(*args, **kwargs)
        except self._client_error:
            raise
        except self._down as exc:
            raise DependencyUnavailableError("S3", exc) from exc

    def ensure_bucket(self) -> None:
        try:
            self._call(self._s3.head_bucket, Bucket=self.bucket)
        except self._client_error:
            self._call(self._s3.create_bucket, Bucket=self.bucket)

    def put_file(self, key: str, source: Path) -> None:
        self._call(self._s3.upload_file, str(source), self.bucket, check_key(key))
        source.unlink(missing_ok=True)

    def put_bytes(self, key: str, data: bytes) -> None:
        self._call(self._s3.put_object, Bucket=self.bucket, Key=check_key(key), Body=data)

    def get_bytes(self, key: str) -> bytes | None:
        try:
            reply = self._call(self._s3.get_object, Bucket=self.bucket, Key=check_key(key))
        except self._client_error as exc:
            if _not_found(exc):
                return None
            raise
        return reply["Body"].read()

    def fetch(self, key: str, target: Path) -> None:
        try:
            self._call(self._s3.download_file, self.bucket, check_key(key), str(target))
        except self._client_error as exc:
            if _not_found(exc):
                raise KeyError(key) from exc
            raise

    def open_chunks(self, key: str) -> Iterator[bytes]:
        try:
            reply = self._call(self._s3.get_object, Bucket=self.bucket, Key=check_key(key))
        except self._client_error as exc:
            if _not_found(exc):
                raise KeyError(key) from exc
            raise
        yield from reply["Body"].iter_chunks(CHUNK)

    def stat(self, key: str) -> StoredObject | None:
        try:
            head = self._call(self._s3.head_object, Bucket=self.bucket, Key=check_key(key))
        except self._client_error as exc:
            if _not_found(exc):
                return None
            raise
        return StoredObject(key, head["ContentLength"], head["LastModified"].timestamp())

    def list(self, prefix: str) -> list[StoredObject]:
        found = []
        paginator = self._s3.get_paginator("list_objects_v2")
        pages = self._call(lambda: list(paginator.paginate(Bucket=self.bucket, Prefix=prefix)))
        for page in pages:
            for item in page.get("Contents", []):
                found.append(
                    StoredObject(item["Key"], item["Size"], item["LastModified"].timestamp())
                )
        return found

    def delete_prefix(self, prefix: str) -> int:
        keys = [obj.key for obj in self.list(check_key(prefix.rstrip("/")) + "/")]
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            self._call(self._s3.delete_objects, Bucket=self.bucket, Delete={"Objects": batch})
        return len(keys)

    def presign_get(self, key: str, expires_s: int) -> str:
        """A GET URL for one object, signed for the endpoint runners reach."""
        return self._s3.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": check_key(key)},
            ExpiresIn=expires_s,
        )  # fmt: skip

    def presign_post(
        self, prefix: str, max_bytes: int | None, expires_s: int
    ) -> tuple[str, dict[str, str]]:
        """A POST policy for any key under `prefix` (each object up to `max_bytes`),
        signed for the endpoint runners reach: the URL and the form fields, `key` aside."""
        conditions: list[list[object]] = []
        if max_bytes is not None:
            conditions.append(["content-length-range", 0, max_bytes])
        # A key ending in ${filename} makes boto3 add ["starts-with", "$key", prefix].
        post = self._s3.generate_presigned_post(
            self.bucket, check_key(prefix) + "${filename}", Conditions=conditions,
            ExpiresIn=expires_s,
        )  # fmt: skip
        fields = {k: v for k, v in post["fields"].items() if k != "key"}
        return post["url"], fields

    def download_url(self, key: str, filename: str) -> str | None:
        return self._public.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": check_key(key),
                "ResponseContentDisposition": f'attachment; filename="{filename}"',
            },
            ExpiresIn=self.presign_ttl_s,
        )


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def delete_expired(storage: Storage, prefix: str, ttl_s: float, now: float) -> list[str]:
    """Delete each `prefix/<id>/` whose newest object is older than the TTL; the ids."""
    newest: dict[str, float] = {}
    for obj in storage.list(prefix + "/"):
        group = obj.key.split("/", 2)[1]
        newest[group] = max(newest.get(group, 0.0), obj.modified)
    expired = [group for group, modified in newest.items() if modified < now - ttl_s]
    for group in expired:
        storage.delete_prefix(f"{prefix}/{group}")
    return expired


def results_prefix(job_id: str) -> str:
    return f"results/{job_id}"


def make_storage(
    kind: str,
    local_root: Path,
    bucket: str | None = None,
    endpoint_url: str | None = None,
    public_endpoint_url: str | None = None,
) -> Storage:
    if kind == "local":
        return LocalStorage(local_root)
    if kind == "s3":
        if not bucket:
            raise ValueError("ZYRA_S3_BUCKET is required with ZYRA_STORAGE=s3")
        return S3Storage(bucket, endpoint_url, public_endpoint_url)
    raise ValueError(f"unknown storage {kind!r}; use local or s3")


def storage_from_env(env: dict[str, str] | None = None) -> Storage:
    """The runner's storage, from the same ZYRA_* variables the API reads."""
    env = dict(os.environ if env is None else env)
    return make_storage(
        env.get("ZYRA_STORAGE", "local"),
        Path(env.get("ZYRA_STORAGE_DIR", "/tmp/zyra-orchestrator/storage")),
        env.get("ZYRA_S3_BUCKET"),
        env.get("ZYRA_S3_ENDPOINT_URL"),
        env.get("ZYRA_S3_PUBLIC_ENDPOINT_URL"),
    )
