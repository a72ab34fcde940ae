"""Where a caller may present its credential, in the order they are looked at.

HTTP and WebSocket: `X-API-Key: <key>`, `Authorization: Bearer <JWT or API key>`.
WebSocket only (browsers cannot set headers there): a subprotocol `bearer.<token>`
or `apikey.<key>` offered next to `zyra`, or the query `?api_key=` (or
`?access_token=`), which the access logs never show (api/security/log_redaction.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from starlette.requests import HTTPConnection

API_KEY_HEADER = "X-API-Key"
WS_SUBPROTOCOL = "zyra"  # what the server accepts; the credential's subprotocol is never echoed
BEARER_SUBPROTOCOL = "bearer."
API_KEY_SUBPROTOCOL = "apikey."
API_KEY_QUERY = "api_key"
ACCESS_TOKEN_QUERY = "access_token"


class Kind(StrEnum):
    API_KEY = "api_key"  # only an API key
    BEARER = "bearer"  # an OAuth2 JWT or an API key (as n8n and curl users send them)


@dataclass(frozen=True)
class Credential:
    value: str
    kind: Kind
    where: str  # for messages: "the X-API-Key header", …


class MalformedCredentialError(ValueError):
    pass


def presented_credential(conn: HTTPConnection) -> Credential | None:
    """The first credential presented, or None; MalformedCredentialError for an
    Authorization header of another scheme."""
    key = conn.headers.get(API_KEY_HEADER)
    if key:
        return Credential(key, Kind.API_KEY, f"the {API_KEY_HEADER} header")
    authorization = conn.headers.get("authorization")
    if authorization:
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise MalformedCredentialError(
                f"Authorization scheme {scheme!r} is not accepted; send "
                f"`Authorization: Bearer <token>` or an {API_KEY_HEADER} header"
            )
        return Credential(token.strip(), Kind.BEARER, "the Authorization header")
    if conn.scope["type"] != "websocket":
        return None
    for protocol in conn.scope.get("subprotocols", []):
        if protocol.startswith(BEARER_SUBPROTOCOL):
            value = protocol.removeprefix(BEARER_SUBPROTOCOL)
            return Credential(value, Kind.BEARER, "the bearer.* subprotocol")
        if protocol.startswith(API_KEY_SUBPROTOCOL):
            value = protocol.removeprefix(API_KEY_SUBPROTOCOL)
            return Credential(value, Kind.API_KEY, "the apikey.* subprotocol")
    if value := conn.query_params.get(API_KEY_QUERY):
        return Credential(value, Kind.API_KEY, f"the {API_KEY_QUERY} query parameter")
    if value := conn.query_params.get(ACCESS_TOKEN_QUERY):
        return Credential(value, Kind.BEARER, f"the {ACCESS_TOKEN_QUERY} query parameter")
    return None


def accepted_subprotocol(conn: HTTPConnection) -> str | None:
    """`zyra` when the client offered it: a browser that offered subprotocols fails
    the connection unless the server picks one of them."""
    return WS_SUBPROTOCOL if WS_SUBPROTOCOL in conn.scope.get("subprotocols", []) else None
