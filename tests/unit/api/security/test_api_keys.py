"""API keys from settings, a mounted file (plain or hashed) and ZYRA_API_KEY, with scopes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.security.api_keys import ApiKeyRing, KeyEntryError
from api.security.principals import Principal, Scope, Source
from tests.unit.api.conftest import KEY

RUN_READ = frozenset({Scope.RUN, Scope.READ})


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}])
def test_protected_routes_need_a_valid_key(app_client: TestClient, headers: dict) -> None:
    app_client.headers.pop("X-API-Key", None)
    try:
        for method, path in (("get", "/cli/commands"), ("post", "/cli/run"), ("get", "/jobs/x")):
            r = getattr(app_client, method)(path, headers=headers)
            assert r.status_code == 401, path
            challenges = r.headers["WWW-Authenticate"]
            assert challenges.startswith("APIKey, Bearer ")
            wrong = headers.get("X-API-Key")
            assert r.json()["detail"] == (
                "invalid API key in the X-API-Key header" if wrong else
                "missing credentials: send an X-API-Key header or `Authorization: Bearer <token>`"
            )  # fmt: skip
    finally:
        app_client.headers["X-API-Key"] = KEY


def test_an_api_key_works_as_a_bearer_token(app_client: TestClient) -> None:
    headers = {"X-API-Key": "", "Authorization": f"Bearer {KEY}"}
    assert app_client.get("/cli/commands", headers=headers).status_code == 200
    basic = {"X-API-Key": "", "Authorization": "Basic dXNlcjpwYXNz"}
    r = app_client.get("/cli/commands", headers=basic)
    assert r.status_code == 401
    assert "Authorization scheme 'Basic' is not accepted" in r.json()["detail"]


def test_a_jwt_is_refused_when_no_issuer_is_configured(app_client: TestClient) -> None:
    headers = {"X-API-Key": "", "Authorization": "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2ln"}
    r = app_client.get("/jobs", headers=headers)
    assert r.status_code == 401
    assert "ZYRA_OAUTH2_ISSUER is not set" in r.json()["detail"]
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_keys_from_a_file_plain_and_hashed(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"hashed-secret").hexdigest()
    key_file = tmp_path / "keys"
    key_file.write_text(f"# operators\nalice:plain-secret\n\nbob:sha256:{digest}\n")
    ring = ApiKeyRing.from_sources(["carol:c-secret", "bare-key"], key_file, "single")
    assert ring.identify("plain-secret") == Principal(
        "key:alice", "alice", Source.API_KEY, RUN_READ
    )
    assert ring.identify("hashed-secret") == Principal.for_api_key("bob", RUN_READ)
    assert ring.identify("c-secret") == Principal.for_api_key("carol", RUN_READ)
    assert ring.identify("bare-key") == Principal.for_api_key("key2", RUN_READ)
    assert ring.identify("single") == Principal.for_api_key("default", RUN_READ)
    assert ring.identify(f"sha256:{digest}") is None
    assert ring.identify("") is None and ring.identify(None) is None


def test_scopes_follow_the_key_and_admin_implies_the_others(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"ops-secret").hexdigest()
    key_file = tmp_path / "keys"
    key_file.write_text(
        f"ops:sha256:{digest}   admin\nviewer:v-secret read\nrunner:r-secret\trun,read\n"
    )
    ring = ApiKeyRing.from_sources(["ci:ci-secret run", "dash:d-secret read run"], key_file, None)
    ops = ring.identify("ops-secret")
    assert ops is not None and ops.scopes == {Scope.ADMIN, Scope.RUN, Scope.READ}
    assert ring.identify("v-secret") == Principal.for_api_key("viewer", frozenset({Scope.READ}))
    assert ring.identify("r-secret") == Principal.for_api_key("runner", RUN_READ)
    assert ring.identify("ci-secret") == Principal.for_api_key("ci", frozenset({Scope.RUN}))
    assert ring.identify("d-secret") == Principal.for_api_key("dash", RUN_READ)
    assert ring.identify("read") is None and ring.identify("v-secret read") is None


def test_principal_ids_keep_sources_apart() -> None:
    key = Principal.for_api_key("alice", RUN_READ)
    token = Principal.for_token("alice", "alice", RUN_READ)
    assert (key.id, token.id) == ("key:alice", "oauth2:alice")
    assert key != token and key.name == token.name == "alice"


@pytest.mark.parametrize(
    ("keys", "file_text", "message"),
    [
        (["alice:s3cr3t run", "read"], None,
         "ZYRA_API_KEYS entry 2: the key is the scope name 'read'"),
        (["alice:s3cr3t write"], None,
         "ZYRA_API_KEYS entry 1: what follows the key is not a list of scopes (run, read, admin"),
        ([], "ok:s3cr3t\nbob:sha256:abc123\n",
         "line 2: a `name:sha256:<hex>` entry needs 64 hexadecimal digits"),
        ([], "my s3cr3t with-spaces\n", "line 1: what follows the key is not a list of scopes"),
        ([":s3cr3t"], None, "ZYRA_API_KEYS entry 1: empty name before ':'"),
        (["alice:"], None, "ZYRA_API_KEYS entry 1: no key after 'alice':"),
    ],
)  # fmt: skip
def test_unreadable_entries_stop_the_start_naming_where_they_are(
    tmp_path: Path, keys: list[str], file_text: str | None, message: str
) -> None:
    key_file = None
    if file_text is not None:
        key_file = tmp_path / "keys"
        key_file.write_text(file_text)
    with pytest.raises(KeyEntryError) as caught:
        ApiKeyRing.from_sources(keys, key_file, None)
    assert message in str(caught.value)
    for secret in ("s3cr3t", "with-spaces", "abc123"):
        assert secret not in str(caught.value), "an error names no key"


def test_no_keys_configured_means_no_access() -> None:
    ring = ApiKeyRing.from_sources([], None, None)
    assert not ring.configured
    assert ring.identify("anything") is None
