"""An OAuth2 issuer's signing keys (JWKS), fetched without blocking the event loop.

Keys are cached for `cache_s`. A token whose `kid` is not cached makes the set
refetch (the issuer rotated its keys), but never more than once per `refetch_s`,
whatever the reason: a flood of forged kids costs the issuer one request per
interval. While the issuer cannot be reached, keys already fetched stay in use; a
key that is not cached then answers 503 naming the JWKS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from runner.dependencies import DependencyUnavailableError

log = logging.getLogger("zyra.security.jwks")

JWKS_DEPENDENCY = "OAuth2 JWKS"
FETCH_TIMEOUT_S = 5.0
MAX_DOCUMENT_BYTES = 1 << 20
DISCOVERY_PATH = "/.well-known/openid-configuration"

JWK = dict[str, Any]


class UnknownKeyError(Exception):
    """The token names a key the issuer does not publish."""


class JwksFetchError(Exception):
    """Why the issuer's keys could not be fetched."""


def insecure_url_problem(url: str) -> str | None:
    """Why `url` cannot be trusted to deliver keys: keys over plain HTTP could be
    swapped on the way, so only HTTPS, or HTTP to this machine's loopback."""
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return None
    if parts.scheme == "http" and parts.hostname:
        if parts.hostname == "localhost":
            return None
        try:
            if ipaddress.ip_address(parts.hostname).is_loopback:
                return None
        except ValueError:
            pass
        return f"{url} is plain HTTP; use https:// (http:// only to a loopback address)"
    return f"{url} is not an https:// URL"


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + DISCOVERY_PATH


def signing_keys(document: object) -> list[JWK]:
    """The keys of a JWKS document that can verify signatures. Symmetric (`oct`)
    keys are dropped: a token is never checked with a shared secret."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError('not a JWKS document: no "keys" list')
    keys = []
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") == "oct":
            continue
        if jwk.get("use", "sig") != "sig" or "verify" not in jwk.get("key_ops", ["verify"]):
            continue
        try:
            jwt.PyJWK(jwk)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("JWKS key %r ignored: %s", jwk.get("kid"), exc)
            continue
        keys.append(jwk)
    return keys


class JwksKeySet:
    def __init__(
        self,
        issuer: str,
        jwks_url: str | None,
        cache_s: float,
        refetch_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.jwks_url = jwks_url  # None: from the issuer's discovery document
        self.cache_s, self.refetch_s, self.clock = cache_s, refetch_s, clock
        self._keys: list[JWK] = []
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last fetch, successful or not
        self._error: str | None = None  # why the last fetch failed
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> JWK:
        """The key a token names; UnknownKeyError, or DependencyUnavailableError when the
        key is not cached and the issuer cannot be asked."""
        now = self.clock()
        expired = self._fetched_at is None or now - self._fetched_at >= self.cache_s
        if expired or self._find(kid) is None:
            await self._refresh()
        jwk = self._find(kid)
        if jwk is not None:
            return jwk
        if self._error is not None:
            raise DependencyUnavailableError(JWKS_DEPENDENCY, JwksFetchError(self._error))
        if kid is None:
            raise UnknownKeyError(
                f"the token names no key (kid) and the issuer publishes {len(self._keys)}"
            )
        raise UnknownKeyError(f"the issuer publishes no signing key with kid {kid!r}")

    def _find(self, kid: str | None) -> JWK | None:
        if kid is None:
            return self._keys[0] if len(self._keys) == 1 else None
        return next((k for k in self._keys if k.get("kid") == kid), None)

    async def _refresh(self) -> None:
        async with self._lock:
            now = self.clock()
            if self._attempted_at is not None and now - self._attempted_at < self.refetch_s:
                return  # fetched (or tried) a moment ago, maybe by a concurrent request
            self._attempted_at = now
            try:
                self._keys = await self._fetch()
            except JwksFetchError as exc:
                self._error = str(exc)
                log.warning("%s is unavailable: %s", JWKS_DEPENDENCY, exc)
                return
            self._fetched_at, self._error = now, None
            log.info("JWKS of %s: %d signing key(s)", self.issuer, len(self._keys))

    async def _fetch(self) -> list[JWK]:
        async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S) as client:
            if self.jwks_url is None:
                discovered = await self._get_json(client, discovery_url(self.issuer))
                self.jwks_url = self._jwks_uri_of(discovered)
            document = await self._get_json(client, self.jwks_url)
        try:
            return signing_keys(document)
        except ValueError as exc:
            raise JwksFetchError(f"{self.jwks_url}: {exc}") from exc

    def _jwks_uri_of(self, document: object) -> str:
        url = discovery_url(self.issuer)
        if not isinstance(document, dict) or not isinstance(document.get("jwks_uri"), str):
            raise JwksFetchError(f"{url}: no jwks_uri in the discovery document")
        problem = insecure_url_problem(document["jwks_uri"])
        if problem is not None:
            raise JwksFetchError(f"{url}: {problem}")
        if document.get("issuer") != self.issuer:
            # OpenID Connect Discovery 1.0, section 4.3: it must match exactly.
            raise JwksFetchError(
                f"{url} names the issuer {document.get('issuer')!r}, not {self.issuer!r} "
                "(ZYRA_OAUTH2_ISSUER must match it exactly)"
            )
        return document["jwks_uri"]

    @staticmethod
    async def _get_json(client: httpx.AsyncClient, url: str) -> object:
        try:
            async with client.stream("GET", url, headers={"Accept": "application/json"}) as r:
                r.raise_for_status()
                body = b""
                async for chunk in r.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise ValueError(f"larger than {MAX_DOCUMENT_BYTES} bytes")
            return json.loads(body)
        except (httpx.HTTPError, ValueError) as exc:
            raise JwksFetchError(f"GET {url}: {str(exc) or type(exc).__name__}") from exc
