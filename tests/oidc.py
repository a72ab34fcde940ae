"""An OAuth2 issuer on loopback, as the tests need one: it makes its own RSA and EC
keys, signs tokens with them, serves its discovery document and JWKS over HTTP
(counting requests), rotates keys, and can be taken down and brought back."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.services import free_port

AUDIENCE = "zyra-api"
DISCOVERY = "/realms/zyra/.well-known/openid-configuration"
JWKS_PATH = "/realms/zyra/protocol/openid-connect/certs"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any

    @classmethod
    def generate(cls, kid: str, kind: str = "rsa") -> SigningKey:
        if kind == "rsa":
            return cls(kid, "RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))
        return cls(kid, "ES256", ec.generate_private_key(ec.SECP256R1()))

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg.startswith("RS") else ECAlgorithm
        public = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "alg": self.alg, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class LoopbackIssuer:
    """`issuer` is `http://127.0.0.1:<port>/realms/zyra`, Keycloak-style."""

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.issuer = f"{self.base}/realms/zyra"
        self.keys: dict[str, SigningKey] = {}
        self.requests: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # --- the HTTP side ------------------------------------------------------------------
    def start(self) -> None:
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with issuer._lock:
                    issuer.requests[self.path] += 1
                    if self.path == DISCOVERY:
                        body = {"issuer": issuer.issuer, "jwks_uri": issuer.base + JWKS_PATH}
                    elif self.path == JWKS_PATH:
                        body = {"keys": [k.jwk() for k in issuer.keys.values()]}
                    else:
                        self.send_error(404)
                        return
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def jwks_fetches(self) -> int:
        with self._lock:
            return self.requests[JWKS_PATH]

    # --- keys and tokens ----------------------------------------------------------------
    def add_key(self, kid: str, kind: str = "rsa") -> SigningKey:
        key = SigningKey.generate(kid, kind)
        with self._lock:
            self.keys[kid] = key
        return key

    def remove_key(self, kid: str) -> None:
        with self._lock:
            del self.keys[kid]

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "f3c1d2e4-0000-4000-8000-000000000001",
            "preferred_username": "alice",
            "scope": "openid profile zyra:run zyra:read",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(self, kid: str, key: SigningKey | None = None, **overrides: Any) -> str:
        """Signed by `key` (default: the issuer's key `kid`), its header naming `kid`."""
        key = key or self.keys[kid]
        headers = {"kid": kid}
        return jwt.encode(self.claims(**overrides), key.private, key.alg, headers=headers)

    def unsigned_token(self, kid: str, **overrides: Any) -> str:
        """`alg: none`."""
        header = b64url(json.dumps({"alg": "none", "kid": kid, "typ": "JWT"}).encode())
        payload = b64url(json.dumps(self.claims(**overrides)).encode())
        return f"{header}.{payload}."

    def hs256_with_public_key(self, kid: str, **overrides: Any) -> str:
        """The classic confusion: HMAC-SHA256 keyed with the issuer's public key."""
        header = b64url(json.dumps({"alg": "HS256", "kid": kid, "typ": "JWT"}).encode())
        payload = b64url(json.dumps(self.claims(**overrides)).encode())
        signing_input = f"{header}.{payload}".encode()
        mac = hmac.new(self.keys[kid].public_pem(), signing_input, hashlib.sha256).digest()
        return f"{header}.{payload}.{b64url(mac)}"


def tampered(token: str, **changes: Any) -> str:
    """The token with claims changed and its original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims.update(changes)
    return f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"


def random_kid() -> str:
    return uuid.uuid4().hex
