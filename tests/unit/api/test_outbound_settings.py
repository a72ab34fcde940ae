"""ZYRA_OUTBOUND_ALLOW as the service reads it: comma-separated, checked at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from api.settings import Settings


def test_entries_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZYRA_OUTBOUND_ALLOW", " n8n.automation.svc.cluster.local, *.corp.example,"
                       "10.42.0.0/16,,127.0.0.1 ")  # fmt: skip
    policy = Settings().outbound_policy
    assert policy.hosts == {"n8n.automation.svc.cluster.local"}
    assert policy.suffixes == (".corp.example",)
    assert [str(n) for n in policy.networks] == ["10.42.0.0/16", "127.0.0.1/32"]


def test_nothing_is_allowed_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZYRA_OUTBOUND_ALLOW", raising=False)
    assert Settings().outbound_policy.url_refusal("http://127.0.0.1/", {"http"}) is not None


def test_a_bad_entry_stops_the_start_naming_it() -> None:
    with pytest.raises(ValidationError, match="ZYRA_OUTBOUND_ALLOW entry 'http://x/'"):
        Settings(outbound_allow="10.0.0.0/8,http://x/")
