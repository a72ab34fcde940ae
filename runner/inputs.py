"""Uploaded files referenced by args: `"file_id:<id>"` or `{"file_id": "<id>"}`.

The reference is replaced by a path inside the job's working directory
(`inputs/<id>/<sanitised name>`), and the file is fetched from storage there
before the command runs, for sync and async runs alike, so the command sees a
local path. A client's file name never decides where anything is stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, model_validator

from runner.argv import ArgProblem
from runner.catalog import CommandSpec, PathRole
from runner.storage import Storage

FILE_REF_PREFIX = "file_id:"
FILE_ID = re.compile(r"^[0-9a-f]{32}$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class UploadMeta(BaseModel):
    file_id: str
    filename: str
    size: int
    sha256: str
    created_at: datetime
    owner: str = Field(
        "",
        description="The uploader's principal id: only it (and admin) may read or use the "
        "upload. Empty for uploads from before owners: admin only.",
    )


class StagedInput(BaseModel):
    """A file written into the job's working directory before the command runs:
    an upload fetched from storage, or text carried inline (a checked pipeline)."""

    file_id: str | None = None
    key: str | None = None  # storage key of the upload's bytes
    path: str  # relative to the job's working directory
    content: str | None = None  # the file's text, when it comes with the job

    @model_validator(mode="after")
    def _one_source(self) -> StagedInput:
        if (self.key is None) == (self.content is None):
            raise ValueError("a staged input has either a storage key or inline content")
        return self


def upload_key(file_id: str) -> str:
    return f"uploads/{file_id}/data"


def upload_meta_key(file_id: str) -> str:
    return f"uploads/{file_id}/meta.json"


def safe_filename(name: str) -> str:
    """A name that can only be a plain file name: no folders, no leading dots."""
    base = _UNSAFE.sub("_", name.replace("\\", "/").rsplit("/", 1)[-1]).lstrip(".")
    return base[:128] or "upload"


def file_ref(value: Any) -> str | None:
    """The file id a value refers to, or None when it is not a reference."""
    if isinstance(value, str) and value.startswith(FILE_REF_PREFIX):
        return value[len(FILE_REF_PREFIX) :]
    if isinstance(value, dict) and set(value) == {"file_id"} and isinstance(value["file_id"], str):
        return value["file_id"]
    return None


def resolve_file_refs(
    command: CommandSpec, args: dict[str, Any], lookup: Callable[[str], UploadMeta | None]
) -> tuple[dict[str, Any], list[StagedInput], list[ArgProblem]]:
    """Args with references replaced by working-directory paths, what to stage, problems."""
    resolved: dict[str, Any] = {}
    staged: dict[str, StagedInput] = {}
    problems: list[ArgProblem] = []

    def replace(name: str, value: Any) -> Any:
        file_id = file_ref(value)
        if file_id is None:
            return value
        spec = command.args.get(name)
        if spec is None or spec.role is not PathRole.INPUT:
            problems.append(
                ArgProblem(name, "only input path arguments can name an uploaded file", "file_ref",
                           value)
            )  # fmt: skip
            return value
        meta = lookup(file_id) if FILE_ID.match(file_id) else None
        if meta is None:
            problems.append(
                ArgProblem(name, f"no uploaded file with id {file_id!r}; upload it with "
                                 "POST /upload first", "file_ref", value)
            )  # fmt: skip
            return value
        path = f"inputs/{file_id}/{safe_filename(meta.filename)}"
        staged[file_id] = StagedInput(file_id=file_id, key=upload_key(file_id), path=path)
        return path

    for name, value in args.items():
        resolved[name] = (
            [replace(name, v) for v in value] if isinstance(value, list) else replace(name, value)
        )
    return resolved, list(staged.values()), problems


def stage_inputs(storage: Storage, staged: list[StagedInput], workdir: Path) -> frozenset[str]:
    """Fetch each referenced upload (or write each inline file) into the working
    directory; the paths staged."""
    for item in staged:
        target = workdir / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.content is not None:
            target.write_text(item.content, encoding="utf-8")
        else:
            assert item.key is not None
            storage.fetch(item.key, target)
    return frozenset(item.path for item in staged)
