"""What the service sends to a `callback_url`, as an OpenAPI `callbacks` entry of
`POST /cli/run`: never served, only documented (`/docs`, `/openapi.json`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header

from api.jobs.callback_signing import HEADER
from api.schemas import JobView

receiver = APIRouter()


@receiver.post(
    "{$request.body#/callback_url}",
    summary="The job, when it has ended",
    description="Retried with backoff for ZYRA_CALLBACK_RETRY_WINDOW_S on network "
    "errors, 5xx, 408, 409, 425, 429, and on 404 for ZYRA_CALLBACK_NOT_FOUND_WINDOW_S; "
    "any 2xx ends delivery. At least once: a receiver may see one delivery twice "
    "(`Zyra-Job-Id` and the body's `job_id` tell). The request's `callback_headers` "
    "are sent too.",
    responses={200: {"description": "Any 2xx: delivered"}},
)
def job_ended(
    body: JobView,
    zyra_job_id: Annotated[str, Header(alias="Zyra-Job-Id", description="The job's id.")],
    zyra_delivery_attempt: Annotated[
        int, Header(alias="Zyra-Delivery-Attempt", description="1 for the first POST.")
    ],
    zyra_signature: Annotated[
        str | None,
        Header(
            alias=HEADER,
            description="With a `callback_secret`: `t=<unix time>,v1=<hex HMAC-SHA256 of "
            "'<t>.' + the raw body>` (docs/reference.md, Callbacks).",
        ),
    ] = None,
) -> None:
    """Never called: it documents the request."""


CALLBACKS = receiver.routes
