"""The OpenAPI security schemes `APIKeyHeader` and `HTTPBearer` (so `/docs` can
authorise with an API key or a JWT).

They only declare; `presented_credential` reads the credential, for HTTP and
WebSocket connections alike (FastAPI's own schemes take a `Request`, which a
WebSocket route does not have)."""

from __future__ import annotations

from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.requests import HTTPConnection

from api.security.credentials import API_KEY_HEADER


class ApiKeyScheme(APIKeyHeader):
    def __init__(self) -> None:
        super().__init__(
            name=API_KEY_HEADER,
            scheme_name="APIKeyHeader",
            description="An API key (ZYRA_API_KEYS, ZYRA_API_KEYS_FILE); also accepted as "
            "`Authorization: Bearer <key>`.",
            auto_error=False,
        )

    async def __call__(self, conn: HTTPConnection) -> None:  # type: ignore[override]
        return None


class BearerScheme(HTTPBearer):
    def __init__(self) -> None:
        super().__init__(
            bearerFormat="JWT",
            scheme_name="HTTPBearer",
            description="An access token (JWT) of the OAuth2 issuer ZYRA_OAUTH2_ISSUER, with "
            "scopes run, read or admin.",
            auto_error=False,
        )

    async def __call__(self, conn: HTTPConnection) -> None:  # type: ignore[override]
        return None
