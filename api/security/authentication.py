"""From a connection to a `Principal`: API keys first, then OAuth2 JWTs; 401 and
403 answers (and WebSocket close codes) that say what is missing."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI, HTTPException, status
from fastapi.exception_handlers import http_exception_handler
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketState

from api.security.api_keys import ApiKeyRing
from api.security.credentials import (
    API_KEY_HEADER,
    Credential,
    Kind,
    MalformedCredentialError,
    accepted_subprotocol,
    presented_credential,
)
from api.security.jwks import UnknownKeyError
from api.security.oauth2 import TokenRejectedError, TokenVerifier
from api.security.principals import Principal, Scope, Source
from runner.dependencies import DependencyUnavailableError

REALM = "zyra-orchestrator"
CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
_MAX_CLOSE_REASON = 123  # bytes, RFC 6455


class AuthError(HTTPException):
    """401 or 403; a WebSocket is closed with 4401 or 4403 and the detail instead."""

    close_code = CLOSE_UNAUTHENTICATED


class NotAuthenticatedError(AuthError):
    def __init__(self, detail: str, invalid_token: bool = False) -> None:
        challenge = f'APIKey, Bearer realm="{REALM}"'
        if invalid_token:
            challenge += ', error="invalid_token"'
        super().__init__(status.HTTP_401_UNAUTHORIZED, detail, {"WWW-Authenticate": challenge})


class MissingScopeError(AuthError):
    close_code = CLOSE_FORBIDDEN

    def __init__(self, detail: str, missing: Sequence[str]) -> None:
        challenge = f'Bearer realm="{REALM}", error="insufficient_scope", '
        challenge += f'scope="{" ".join(missing)}"'
        super().__init__(status.HTTP_403_FORBIDDEN, detail, {"WWW-Authenticate": challenge})


def looks_like_jwt(token: str) -> bool:
    """header.payload.signature (the signature empty for `alg: none`, refused later)."""
    parts = token.split(".")
    return len(parts) == 3 and bool(parts[0] and parts[1])


class Authenticator:
    def __init__(self, keys: ApiKeyRing, tokens: TokenVerifier | None = None) -> None:
        self.keys, self.tokens = keys, tokens

    async def principal(self, conn: HTTPConnection) -> Principal:
        """The caller; NotAuthenticatedError, or DependencyUnavailableError while a
        token's key is not cached and the issuer's JWKS cannot be fetched."""
        try:
            credential = presented_credential(conn)
        except MalformedCredentialError as exc:
            raise NotAuthenticatedError(str(exc), invalid_token=True) from None
        if credential is None:
            raise NotAuthenticatedError(self._nothing_presented(conn))
        principal = self.keys.identify(credential.value)
        if principal is not None:
            return principal
        if credential.kind is Kind.BEARER and looks_like_jwt(credential.value):
            return await self._token_principal(credential)
        if not self.keys.configured:
            raise NotAuthenticatedError(
                "no API keys are configured on this server (set ZYRA_API_KEYS)"
            )
        raise NotAuthenticatedError(f"invalid API key in {credential.where}")

    async def identify(self, conn: HTTPConnection) -> Principal:
        """`principal`, worked out once per request: the rate limiter (api/limits) asks
        before the route's dependency does. A refusal is remembered and raised again."""
        outcome = getattr(conn.state, "identified", None)
        if outcome is None:
            try:
                outcome = await self.principal(conn)
            except (NotAuthenticatedError, DependencyUnavailableError) as exc:
                outcome = exc
            conn.state.identified = outcome
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    async def _token_principal(self, credential: Credential) -> Principal:
        if self.tokens is None:
            raise NotAuthenticatedError(
                f"{credential.where} holds a JWT, but this server accepts no OAuth2 tokens "
                "(ZYRA_OAUTH2_ISSUER is not set); send an API key",
                invalid_token=True,
            )
        try:
            return await self.tokens.principal(credential.value)
        except (TokenRejectedError, UnknownKeyError) as exc:
            raise NotAuthenticatedError(
                f"invalid bearer token in {credential.where}: {exc}", invalid_token=True
            ) from None

    def _nothing_presented(self, conn: HTTPConnection) -> str:
        if not self.keys.configured and self.tokens is None:
            return (
                "no API keys or OAuth2 issuer are configured on this server (set "
                "ZYRA_API_KEYS or ZYRA_OAUTH2_ISSUER)"
            )
        ways = f"an {API_KEY_HEADER} header or `Authorization: Bearer <token>`"
        if conn.scope["type"] == "websocket":
            ways += ", a `bearer.<token>` or `apikey.<key>` subprotocol, or ?api_key="
        return f"missing credentials: send {ways}"

    def require(self, principal: Principal, needed: Sequence[str]) -> None:
        """MissingScopeError naming the scopes `principal` lacks."""
        missing = principal.missing(needed)
        if not missing:
            return
        has = ", ".join(sorted(principal.scopes)) or "none"
        what = "API key" if principal.source is Source.API_KEY else "token"
        detail = f"missing scope {', '.join(missing)}: this {what} has {has}"
        if principal.source is Source.OAUTH2 and self.tokens is not None:
            config = self.tokens.config
            names = ", ".join(f"{config.scope_prefix}{s.value}" for s in Scope)
            detail += f" (scopes come from the {config.scope_claim!r} claim: {names})"
        raise MissingScopeError(detail, missing)


async def close_websocket(websocket: WebSocket, code: int, reason: str) -> None:
    """Accept (a browser then sees the code and reason) and close at once."""
    if websocket.client_state is WebSocketState.CONNECTING:
        await websocket.accept(subprotocol=accepted_subprotocol(websocket))
    reason = reason.encode()[:_MAX_CLOSE_REASON].decode(errors="ignore")
    await websocket.close(code, reason)


async def _auth_error(conn: HTTPConnection, exc: Exception) -> Response | None:
    assert isinstance(exc, AuthError)
    if isinstance(conn, WebSocket):
        await close_websocket(conn, exc.close_code, str(exc.detail))
        return None
    assert isinstance(conn, Request)
    return await http_exception_handler(conn, exc)


def install_auth_error_handler(app: FastAPI) -> None:
    app.add_exception_handler(AuthError, _auth_error)
