"""Answers that are errors: 429 retried after Retry-After (bounded), nothing else retried."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from zyra_client import Client, RateLimited, ValidationFailed
from zyra_client.errors import retry_after_seconds

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api

PER_PRINCIPAL = 3
WINDOW_S = 2


class Recording(httpx.HTTPTransport):
    """Keeps the status of every answer the client got, retries included."""

    def __init__(self) -> None:
        super().__init__()
        self.statuses: list[int] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        self.statuses.append(response.status_code)
        return response


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(
        tmp_path_factory.mktemp("limited-api"), inputs,
        ZYRA_RATE_LIMIT_PER_PRINCIPAL=str(PER_PRINCIPAL),
        ZYRA_RATE_LIMIT_WINDOW_S=str(WINDOW_S),
    )  # fmt: skip
    yield server
    stop_api(server)


def test_429_is_retried_after_retry_after(limited: ApiServer) -> None:
    time.sleep(WINDOW_S)  # a fresh window
    transport = Recording()
    with Client(limited.url, api_key=API_KEY, transport=transport) as zyra:
        started = time.monotonic()
        pages = [list(zyra.jobs(limit=1)) for _ in range(PER_PRINCIPAL + 2)]
        took = time.monotonic() - started

    assert len(pages) == PER_PRINCIPAL + 2  # every call answered in the end
    assert 429 in transport.statuses
    assert transport.statuses[: PER_PRINCIPAL + 1] == [200] * PER_PRINCIPAL + [429]
    assert took >= 1  # it waited as told, not hammering


def test_without_retries_429_raises_with_retry_after(limited: ApiServer) -> None:
    time.sleep(WINDOW_S)
    with Client(limited.url, api_key=API_KEY, max_retries=0) as zyra:
        for _ in range(PER_PRINCIPAL):
            zyra.commands(refresh=True)
        with pytest.raises(RateLimited) as limited_error:
            zyra.commands(refresh=True)
    assert 1 <= (limited_error.value.retry_after or 0) <= WINDOW_S
    assert limited_error.value.limit == "requests per principal"


def test_a_retry_after_longer_than_allowed_is_not_waited(limited: ApiServer) -> None:
    time.sleep(WINDOW_S)
    with Client(limited.url, api_key=API_KEY, max_retry_wait=0.1) as zyra:
        for _ in range(PER_PRINCIPAL):
            zyra.commands(refresh=True)
        started = time.monotonic()
        with pytest.raises(RateLimited):
            zyra.commands(refresh=True)
        assert time.monotonic() - started < 1


def test_422_is_never_retried(limited: ApiServer) -> None:
    time.sleep(WINDOW_S)
    transport = Recording()
    with (
        Client(limited.url, api_key=API_KEY, transport=transport) as zyra,
        pytest.raises(ValidationFailed) as refused,
    ):
        zyra.run("visualize", "heatmap", {"nope": 1})
    assert transport.statuses == [422]
    assert refused.value.fields == ["args.nope"]
    assert refused.value.message.startswith("args.nope: unknown argument")


def test_retry_after_takes_seconds_and_dates() -> None:
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None
    in_a_minute = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))
    assert 55 <= (retry_after_seconds(in_a_minute) or 0) <= 60
