"""`POST /upload` (multipart field `file`) and `GET /files/{id}`."""

from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Request, status

from api.deps import JobServiceDep, ReadPrincipal, RunPrincipal, UploadsDep
from api.responses import (
    AUTHENTICATED,
    UPLOAD_LINKS,
    VALIDATION_ERROR,
    ErrorResponse,
    not_found,
)
from api.uploads import FIELD
from runner.inputs import UploadMeta

router = APIRouter(tags=["files"], responses=AUTHENTICATED)


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
    responses={
        201: {"links": UPLOAD_LINKS},
        400: {"model": ErrorResponse, "description": "A malformed multipart body"},
        413: {"model": ErrorResponse, "description": "Larger than ZYRA_MAX_UPLOAD_MB"},
        422: {
            "description": "Not multipart/form-data, or without the field `file`",
            "content": {"application/json": {"schema": VALIDATION_ERROR}},
        },
    },
)
async def upload(request: Request, uploads: UploadsDep, principal: RunPrincipal) -> UploadMeta:
    headers = request.headers
    return await uploads.receive(
        request.stream(), headers.get("content-type", ""), headers.get("content-length"), principal
    )


@router.get(
    "/files/{file_id}",
    response_model=UploadMeta,
    summary="An upload's metadata",
    responses=not_found("No upload with that id (someone else's too: ids do not leak)"),
)
async def file_meta(file_id: str, service: JobServiceDep, principal: ReadPrincipal) -> UploadMeta:
    meta = await anyio.to_thread.run_sync(service.upload, file_id, principal)
    if meta is None:  # someone else's too: ids do not leak
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no uploaded file {file_id!r}")
    return meta
