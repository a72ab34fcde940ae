"""A method a path lacks: 405 whose `Allow` names every method that path has."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient


def allowed(answer_headers: dict[str, str]) -> set[str]:
    return {m.strip() for m in answer_headers["allow"].split(",")}


@pytest.mark.parametrize(
    ("method", "path", "methods"),
    [
        ("PUT", "/jobs/0123456789abcdef", {"GET", "DELETE"}),
        ("OPTIONS", "/jobs/0123456789abcdef", {"GET", "DELETE"}),
        ("DELETE", "/jobs", {"GET"}),
        ("GET", "/cli/run", {"POST"}),
        ("POST", "/jobs/0123456789abcdef/events", {"GET"}),
    ],
)
def test_allow_lists_every_method_of_the_path(
    app_client: TestClient, method: str, path: str, methods: set[str]
) -> None:
    r = app_client.request(method, path)
    assert r.status_code == 405
    assert allowed(dict(r.headers)) == methods
    assert r.json() == {"detail": "Method Not Allowed"}
