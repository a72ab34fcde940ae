"""OAuth2 bearer tokens: JWTs signed by one issuer, checked against its JWKS.

The header's `alg` must be one of the configured asymmetric algorithms (never
`none`, never HS*: the issuer's public key is no secret) and fit the key it names;
then the signature, `iss`, `aud`, `exp`, `nbf` and `iat` (with the clock-skew
leeway) are checked by PyJWT.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from api.security.jwks import JwksKeySet
from api.security.principals import SCOPE_NAMES, Principal, Scope, with_implied

ASYMMETRIC_ALGORITHMS = (
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA",
)  # fmt: skip
_DECODE_OPTIONS: Any = {
    "require": ["exp", "iss", "aud", "sub"],
    "enforce_minimum_key_length": True,  # e.g. RSA below 2048 bits
}


class TokenRejectedError(Exception):
    """Why a token is not accepted, in words a client can act on."""


@dataclass(frozen=True)
class OAuth2Config:
    issuer: str
    audiences: tuple[str, ...]
    jwks_url: str | None = None
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    leeway_s: float = 30.0
    name_claim: str = "sub"
    scope_claim: str = "scope"
    scope_prefix: str = ""
    jwks_cache_s: float = 600.0
    jwks_refetch_interval_s: float = 30.0


def claim(claims: dict[str, Any], name: str) -> Any:
    """A claim by name; a dotted name not found as such is a path into nested
    claims (`realm_access.roles`), so namespaced claims such as
    `https://example.com/roles` still work."""
    if name in claims:
        return claims[name]
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def scopes_of(value: Any, prefix: str) -> frozenset[Scope]:
    """Our scopes among a claim's values (a space-separated string or a list); other
    values (`openid`, `email`, another API's scopes) are ignored."""
    if isinstance(value, str):
        items: Sequence[Any] = value.split()
    elif isinstance(value, list):
        items = value
    else:
        return frozenset()
    names = [i.removeprefix(prefix) for i in items if isinstance(i, str) and i.startswith(prefix)]
    return with_implied(Scope(n) for n in names if n in SCOPE_NAMES)


class TokenVerifier:
    def __init__(self, config: OAuth2Config, keys: JwksKeySet | None = None) -> None:
        self.config = config
        self.keys = keys or JwksKeySet(
            config.issuer, config.jwks_url, config.jwks_cache_s, config.jwks_refetch_interval_s
        )

    async def principal(self, token: str) -> Principal:
        """The token's principal; TokenRejectedError, or DependencyUnavailableError when
        its key is not cached and the JWKS cannot be fetched."""
        config = self.config
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as exc:
            raise TokenRejectedError(f"not a JWT: {exc}") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in config.algorithms:
            raise TokenRejectedError(
                f"algorithm {alg!r} is not accepted; accepted: {', '.join(config.algorithms)}"
            )
        if kid is not None and not isinstance(kid, str):
            raise TokenRejectedError("the kid header must be a string")
        jwk = await self.keys.key(kid)
        if jwk.get("alg", alg) != alg:
            raise TokenRejectedError(f"key {kid!r} is for {jwk['alg']}, the token says {alg}")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            raise TokenRejectedError(f"key {kid!r} cannot verify {alg} signatures") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=list(config.audiences),
                issuer=config.issuer,
                leeway=config.leeway_s,
                options=_DECODE_OPTIONS,
            )
        except jwt.InvalidTokenError as exc:
            raise TokenRejectedError(_reason(exc)) from None
        return self._principal_of(claims)

    def _principal_of(self, claims: dict[str, Any]) -> Principal:
        config = self.config
        subject = claims["sub"]
        if not isinstance(subject, str) or not subject:
            raise TokenRejectedError("the sub claim must be a non-empty string")
        name = claim(claims, config.name_claim)
        if not isinstance(name, str) or not name:
            name = subject  # e.g. client-credentials tokens have no user name
        scopes = scopes_of(claim(claims, config.scope_claim), config.scope_prefix)
        return Principal.for_token(subject, name, scopes)


def _reason(exc: jwt.InvalidTokenError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"audience not accepted ({exc})"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"issuer not accepted ({exc})"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "the signature does not verify"
    return str(exc) or type(exc).__name__
