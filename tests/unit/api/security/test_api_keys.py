"""API keys from settings, a mounted file (plain or hashed) and ZYRA_API_KEY."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.security.api_keys import ApiKeyRing
from tests.unit.api.conftest import KEY


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": ""}, {"X-API-Key": "wrong"}])
def test_protected_routes_need_a_valid_key(app_client: TestClient, headers: dict) -> None:
    app_client.headers.pop("X-API-Key", None)
    try:
        for method, path in (("get", "/cli/commands"), ("post", "/cli/run"), ("get", "/jobs/x")):
            r = getattr(app_client, method)(path, headers=headers)
            assert r.status_code == 401, path
            assert r.headers["WWW-Authenticate"] == "APIKey"
    finally:
        app_client.headers["X-API-Key"] = KEY


def test_keys_from_a_file_plain_and_hashed(tmp_path: Path) -> None:
    digest = hashlib.sha256(b"hashed-secret").hexdigest()
    key_file = tmp_path / "keys"
    key_file.write_text(f"# operators\nalice:plain-secret\n\nbob:sha256:{digest}\n")
    ring = ApiKeyRing.from_sources(["carol:c-secret", "bare-key"], key_file, "single")
    assert ring.identify("plain-secret") == "alice"
    assert ring.identify("hashed-secret") == "bob"
    assert ring.identify("c-secret") == "carol"
    assert ring.identify("bare-key") == "key2"
    assert ring.identify("single") == "default"
    assert ring.identify(f"sha256:{digest}") is None
    assert ring.identify("") is None and ring.identify(None) is None


def test_no_keys_configured_means_no_access() -> None:
    ring = ApiKeyRing.from_sources([], None, None)
    assert not ring.configured
    assert ring.identify("anything") is None
