"""OAuth2 bearer tokens checked against a real issuer on loopback (tests/oidc.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
from pydantic import ValidationError

from api.security.jwks import JWKS_DEPENDENCY, JwksKeySet, UnknownKeyError, signing_keys
from api.security.oauth2 import OAuth2Config, TokenRejectedError, TokenVerifier, scopes_of
from api.security.principals import Principal, Scope
from api.settings import Settings
from runner.dependencies import DependencyUnavailableError
from tests.oidc import AUDIENCE, JWKS_PATH, LoopbackIssuer, SigningKey, random_kid, tampered
from tests.services import free_port

T = TypeVar("T")
RUN_READ = frozenset({Scope.RUN, Scope.READ})


def config(issuer: LoopbackIssuer, **changes: Any) -> OAuth2Config:
    settings: dict[str, Any] = {"name_claim": "preferred_username", "scope_prefix": "zyra:"}
    return OAuth2Config(issuer.issuer, (AUDIENCE,), leeway_s=30, **{**settings, **changes})


def run(step: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(step())  # type: ignore[arg-type]


def verify(verifier: TokenVerifier, token: str) -> Principal:
    return run(lambda: verifier.principal(token))


def rejection(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises((TokenRejectedError, UnknownKeyError)) as caught:
        verify(verifier, token)
    return str(caught.value)


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_tokens_of_the_issuers_keys_give_principals(issuer: LoopbackIssuer, kid: str) -> None:
    verifier = TokenVerifier(config(issuer))
    principal = verify(verifier, issuer.token(kid))
    assert principal == Principal.for_token(issuer.claims()["sub"], "alice", RUN_READ)
    assert principal.id == f"oauth2:{issuer.claims()['sub']}"


def test_name_falls_back_to_sub_and_scopes_may_be_a_list_or_nested(
    issuer: LoopbackIssuer,
) -> None:
    nested = TokenVerifier(config(issuer, scope_claim="realm_access.roles", scope_prefix=""))
    token = issuer.token(
        "rsa-1", preferred_username=None, realm_access={"roles": ["admin", "offline_access"]}
    )
    principal = verify(nested, token)
    assert principal.name == issuer.claims()["sub"]
    assert principal.scopes == {Scope.ADMIN, Scope.RUN, Scope.READ}
    namespaced = TokenVerifier(config(issuer, scope_claim="https://zyra.example/scopes"))
    token = issuer.token("rsa-1", **{"https://zyra.example/scopes": ["zyra:read", "run"]})
    assert verify(namespaced, token).scopes == {Scope.READ}


def test_scopes_of_takes_ours_and_ignores_the_rest() -> None:
    assert scopes_of("openid zyra:run email zyra:write", "zyra:") == {Scope.RUN}
    assert scopes_of(["zyra:admin"], "zyra:") == frozenset(Scope)
    assert scopes_of("run read", "") == RUN_READ
    assert scopes_of(42, "") == frozenset() and scopes_of(None, "") == frozenset()


def test_leeway_lets_a_just_expired_token_pass(issuer: LoopbackIssuer) -> None:
    verifier = TokenVerifier(config(issuer))
    now = int(time.time())
    assert verify(verifier, issuer.token("rsa-1", exp=now - 10)).name == "alice"
    assert "expired" in rejection(verifier, issuer.token("rsa-1", exp=now - 60))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.token("rsa-1", aud="another-api"), "audience not accepted"),
        (lambda i: i.token("rsa-1", iss="https://evil.example/"), "issuer not accepted"),
        (lambda i: i.token("rsa-1", nbf=int(time.time()) + 120), "not yet valid"),
        (lambda i: i.token("rsa-1", iat=int(time.time()) + 120), "not yet valid (iat)"),
        (lambda i: i.token("rsa-1", exp=None), 'missing the "exp" claim'),
        (lambda i: i.token("rsa-1", sub=None), 'missing the "sub" claim'),
        (lambda i: i.unsigned_token("rsa-1"), "algorithm 'none' is not accepted"),
        (lambda i: i.hs256_with_public_key("rsa-1"), "algorithm 'HS256' is not accepted"),
        (lambda i: tampered(i.token("rsa-1"), scope="zyra:admin"), "signature does not verify"),
        (lambda i: i.token("ec-1", key=i.keys["rsa-1"]), "key 'ec-1' is for ES256"),
        (lambda i: "not.a.jwt", "not a JWT"),
    ],
)
def test_bad_tokens_are_rejected_saying_why(
    issuer: LoopbackIssuer, make: Callable[[LoopbackIssuer], str], reason: str
) -> None:
    assert reason in rejection(TokenVerifier(config(issuer)), make(issuer))


def test_algorithms_outside_the_configured_list_are_refused(issuer: LoopbackIssuer) -> None:
    verifier = TokenVerifier(config(issuer, algorithms=("RS256",)))
    assert verify(verifier, issuer.token("rsa-1")).name == "alice"
    assert "'ES256' is not accepted; accepted: RS256" in rejection(verifier, issuer.token("ec-1"))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_unknown_kids_refetch_at_most_once_per_interval(issuer: LoopbackIssuer) -> None:
    clock = Clock()
    keys = JwksKeySet(issuer.issuer, None, cache_s=600, refetch_s=30, clock=clock)
    verifier = TokenVerifier(config(issuer), keys)
    before = issuer.jwks_fetches

    async def flood() -> list[str]:
        await verifier.principal(issuer.token("rsa-1"))  # the first fetch
        clock.now += 30  # from now on, one refetch is allowed
        forged = [issuer.token(random_kid(), key=issuer.keys["rsa-1"]) for _ in range(50)]
        results = await asyncio.gather(
            *(verifier.principal(t) for t in forged), return_exceptions=True
        )
        return [str(r) for r in results]

    reasons = run(flood)
    assert all("publishes no signing key with kid" in r for r in reasons)
    assert issuer.jwks_fetches - before == 2  # the first fetch, then one refetch

    rotated = issuer.add_key("rsa-rotated")
    try:
        token = issuer.token("rsa-rotated")
        assert "no signing key with kid 'rsa-rotated'" in rejection(verifier, token)
        clock.now += 30  # the interval has passed: the new key is fetched
        assert verify(verifier, token).name == "alice"
        assert issuer.jwks_fetches - before == 3
    finally:
        issuer.remove_key(rotated.kid)


def test_cached_keys_outlive_an_unreachable_issuer_unknown_ones_are_503() -> None:
    issuer = LoopbackIssuer()
    issuer.add_key("rsa-1")
    issuer.start()
    clock = Clock()
    keys = JwksKeySet(issuer.issuer, None, cache_s=60, refetch_s=10, clock=clock)
    verifier = TokenVerifier(config(issuer), keys)
    assert verify(verifier, issuer.token("rsa-1")).name == "alice"
    issuer.stop()
    clock.now += 120  # the cache has expired; the refetch fails
    assert verify(verifier, issuer.token("rsa-1")).name == "alice"
    late = issuer.add_key("rsa-late")
    with pytest.raises(DependencyUnavailableError) as caught:
        verify(verifier, issuer.token(late.kid))
    assert caught.value.dependency == JWKS_DEPENDENCY
    assert f"GET {issuer.base}{JWKS_PATH}" in str(caught.value)


def test_an_issuer_that_never_answered_is_503_naming_its_discovery_document() -> None:
    nobody = f"http://127.0.0.1:{free_port()}/realms/zyra"
    verifier = TokenVerifier(OAuth2Config(issuer=nobody, audiences=(AUDIENCE,)))
    with pytest.raises(DependencyUnavailableError) as caught:
        verify(verifier, LoopbackIssuer().token("k", key=SigningKey.generate("k")))
    assert str(caught.value).startswith(
        f"OAuth2 JWKS is unavailable: GET {nobody}/.well-known/openid-configuration"
    )


def test_a_discovery_document_of_another_issuer_is_not_trusted(issuer: LoopbackIssuer) -> None:
    other = issuer.issuer.replace("127.0.0.1", "localhost")
    verifier = TokenVerifier(OAuth2Config(issuer=other, audiences=(AUDIENCE,)))
    with pytest.raises(DependencyUnavailableError) as caught:
        verify(verifier, issuer.token("rsa-1", iss=other))
    assert f"names the issuer {issuer.issuer!r}, not {other!r}" in str(caught.value)


def test_symmetric_and_encryption_keys_of_a_jwks_are_never_used() -> None:
    rsa = LoopbackIssuer().add_key("sig").jwk()
    document = {
        "keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hs"},
            {**rsa, "kid": "enc", "use": "enc"},
            rsa,
            {"kty": "RSA", "kid": "broken"},
        ]
    }
    assert [k["kid"] for k in signing_keys(document)] == ["sig"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"ZYRA_OAUTH2_ISSUER": "https://id.example.com/realms/zyra"},
         "ZYRA_OAUTH2_ISSUER needs ZYRA_OAUTH2_AUDIENCE"),
        ({"ZYRA_OAUTH2_AUDIENCE": "zyra-api"}, "set without ZYRA_OAUTH2_ISSUER"),
        ({"ZYRA_OAUTH2_ISSUER": "http://id.example.com/", "ZYRA_OAUTH2_AUDIENCE": "a"},
         "ZYRA_OAUTH2_ISSUER: http://id.example.com/ is plain HTTP; use https://"),
        ({"ZYRA_OAUTH2_ALGORITHMS": "RS256,HS256,none"},
         "algorithms ['HS256', 'none'] are not accepted; accepted: RS256,"),
    ],
)  # fmt: skip
def test_oauth2_settings_that_cannot_work_stop_the_start(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert message in str(caught.value)


def test_oauth2_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYRA_OAUTH2_ISSUER", "http://127.0.0.1:8080/realms/zyra")
    monkeypatch.setenv("ZYRA_OAUTH2_AUDIENCE", "zyra-api, account")
    monkeypatch.setenv("ZYRA_OAUTH2_ALGORITHMS", "RS256,ES256")
    monkeypatch.setenv("ZYRA_OAUTH2_SCOPE_PREFIX", "zyra:")
    oauth2 = Settings().oauth2
    assert oauth2 is not None
    assert oauth2.audiences == ("zyra-api", "account")
    assert oauth2.algorithms == ("RS256", "ES256")
    assert (oauth2.scope_claim, oauth2.scope_prefix, oauth2.name_claim) == ("scope", "zyra:", "sub")
    assert Settings(oauth2_issuer=None, oauth2_audience=[]).oauth2 is None
    monkeypatch.setenv("ZYRA_OAUTH2_ISSUER", "")
    monkeypatch.setenv("ZYRA_OAUTH2_AUDIENCE", "")
    assert Settings().oauth2 is None  # blank is unset
