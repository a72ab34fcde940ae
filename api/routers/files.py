"""`POST /upload` (multipart field `file`) and `GET /files/{id}`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import anyio
from fastapi import APIRouter, HTTPException, Request, status

from api.deps import JobServiceDep, ReadPrincipal, RunPrincipal
from api.uploads import FIELD, MultipartFileReceiver, UploadTooLargeError, boundary_of
from runner.inputs import UploadMeta, upload_key, upload_meta_key

router = APIRouter(tags=["files"])
MB = 1 << 20


def _missing_file() -> HTTPException:
    return HTTPException(
        status.HTTP_422_UNPROCESSABLE_CONTENT,
        detail=[{"loc": ["body", FIELD], "type": "missing",
                 "msg": "send the file as multipart/form-data in the field 'file'"}],
    )  # fmt: skip


@router.post(
    "/upload",
    response_model=UploadMeta,
    status_code=status.HTTP_201_CREATED,
    summary='Upload a file; reference it in args as "file_id:<id>"',
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [FIELD],
                        "properties": {FIELD: {"type": "string", "format": "binary"}},
                    }
                }
            },
        }
    },
    responses={413: {"description": "Larger than ZYRA_MAX_UPLOAD_MB"}},
)
async def upload(request: Request, service: JobServiceDep, principal: RunPrincipal) -> UploadMeta:
    limit = service.settings.max_upload_mb * MB
    boundary = boundary_of(request.headers.get("content-type", ""))
    if boundary is None:
        raise _missing_file()
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MB:
        raise HTTPException(
            status.HTTP_413_CONTENT_TOO_LARGE, detail=f"uploads are limited to {limit} bytes"
        )
    file_id = uuid.uuid4().hex
    spool = service.settings.data_dir / "spool"
    spool.mkdir(parents=True, exist_ok=True)
    receiver = MultipartFileReceiver(boundary, spool / file_id, limit)
    try:
        async for chunk in request.stream():
            receiver.feed(chunk)
        receiver.finish()
    except UploadTooLargeError as exc:
        receiver.abort()
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, detail=str(exc)) from exc
    except Exception as exc:  # a malformed body is the client's problem
        receiver.abort()
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"malformed multipart body: {exc}"
        ) from exc
    if not receiver.received_file:
        receiver.abort()
        raise _missing_file()
    meta = UploadMeta(
        file_id=file_id,
        filename=receiver.filename or "upload",
        size=receiver.size,
        sha256=receiver.sha256.hexdigest(),
        created_at=datetime.now(UTC),
        owner=principal.id,
    )
    storage = service.storage
    await anyio.to_thread.run_sync(storage.put_file, upload_key(file_id), spool / file_id)
    await anyio.to_thread.run_sync(
        storage.put_bytes, upload_meta_key(file_id), meta.model_dump_json().encode()
    )
    return meta


@router.get("/files/{file_id}", response_model=UploadMeta, summary="An upload's metadata")
async def file_meta(file_id: str, service: JobServiceDep, principal: ReadPrincipal) -> UploadMeta:
    meta = await anyio.to_thread.run_sync(service.upload, file_id, principal)
    if meta is None:  # someone else's too: ids do not leak
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no uploaded file {file_id!r}")
    return meta
