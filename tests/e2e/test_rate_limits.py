"""Rate limits as a caller meets them: 429 with Retry-After and RateLimit-* headers,
counted across API processes through Redis; per address before authentication; wrong
keys lock an address out; X-Forwarded-For believed only from trusted proxies.

Each test speaks from a loopback address of its own (127.0.0.x): per-address counts of
one test never reach another.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx

from tests.e2e.conftest import start_api, stop_api
from tests.e2e.deployments import (
    API_KEYS,
    KEYS,
    Deployment,
    deployment_fixture,
)
from tests.services import RedisServer

WINDOW_S = 5
PER_PRINCIPAL = 20
PER_ADDRESS = 8
FAILED_AUTH = 4
SYNC_RUNS = 3
PROXY = "127.0.0.5"
LIMITS = {
    "ZYRA_RATE_LIMIT_WINDOW_S": str(WINDOW_S),
    "ZYRA_RATE_LIMIT_PER_PRINCIPAL": str(PER_PRINCIPAL),
    "ZYRA_RATE_LIMIT_PER_IP": str(PER_ADDRESS),
    "ZYRA_RATE_LIMIT_FAILED_AUTH_PER_IP": str(FAILED_AUTH),
    "ZYRA_RATE_LIMIT_SYNC_RUNS_PER_PRINCIPAL": str(SYNC_RUNS),
    "ZYRA_TRUSTED_PROXIES": f"{PROXY}/32",
}


deployment = deployment_fixture("rates", 7, **LIMITS)


def alternating(
    clients: list[httpx.Client], count: int, path: str = "/jobs"
) -> list[httpx.Response]:
    """`count` requests in a row, taking turns between `clients`; all within the window."""
    started = time.monotonic()
    responses = [clients[i % len(clients)].get(path) for i in range(count)]
    took = time.monotonic() - started
    assert took < WINDOW_S, f"{count} requests took {took:.1f} s: longer than the window"
    return responses


def test_a_burst_over_the_principal_rate_is_429_counted_across_processes(
    deployment: Deployment,
) -> None:
    bob = [deployment.client(KEYS["bob"], api=i, source="127.0.0.11") for i in (0, 1)]
    responses = alternating(bob, PER_PRINCIPAL + 10)  # half the burst to each process

    assert [r.status_code for r in responses] == [200] * PER_PRINCIPAL + [429] * 10
    remaining = [int(r.headers["RateLimit-Remaining"]) for r in responses[:PER_PRINCIPAL]]
    assert remaining == list(range(PER_PRINCIPAL - 1, -1, -1))
    assert {r.headers["RateLimit-Limit"] for r in responses} == {str(PER_PRINCIPAL)}
    assert responses[0].headers["RateLimit-Policy"] == f"{PER_PRINCIPAL};w={WINDOW_S}"
    refused = responses[-1]
    retry_after = int(refused.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW_S
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 0 <= int(refused.headers["RateLimit-Reset"]) <= WINDOW_S
    body = refused.json()
    assert body["limit"] == "requests per principal"
    assert body["detail"].startswith("rate limit reached for key:bob (requests per principal: 20")

    with deployment.client(KEYS["dave"], source="127.0.0.11") as dave:
        assert dave.get("/jobs").status_code == 200  # someone else's budget
    time.sleep(retry_after)  # as long as the answer said
    again = bob[1].get("/jobs")
    assert again.status_code == 200, again.text
    for client in bob:
        client.close()


def test_requests_without_a_valid_credential_count_per_address(deployment: Deployment) -> None:
    anonymous = [deployment.client(None, api=i, source="127.0.0.12") for i in (0, 1)]
    responses = alternating(anonymous, PER_ADDRESS + 2)
    # No credential at all is no failed authentication: 401 until the address's rate is spent.
    assert [r.status_code for r in responses] == [401] * PER_ADDRESS + [429] * 2
    assert responses[0].headers["RateLimit-Limit"] == str(PER_ADDRESS)
    assert responses[-1].json()["limit"] == "unauthenticated requests per address"
    assert anonymous[0].get("/openapi.json").status_code == 429  # the docs count too

    # From the same address an authenticated request counts against its principal.
    with deployment.client(KEYS["erin"], api=1, source="127.0.0.12") as erin:
        answer = erin.get("/jobs")
    assert answer.status_code == 200
    assert answer.headers["RateLimit-Limit"] == str(PER_PRINCIPAL)
    # Health probes are never limited.
    assert anonymous[0].get("/healthz").status_code == 200
    assert anonymous[1].get("/readyz").status_code == 200
    for client in anonymous:
        client.close()


def test_after_n_wrong_keys_even_the_right_key_waits_for_the_window(
    deployment: Deployment,
) -> None:
    source = "127.0.0.13"
    guesses = [deployment.client("guessed-key", api=i, source=source) for i in (0, 1)]
    alice = [deployment.client(KEYS["alice"], api=i, source=source) for i in (0, 1)]
    failed = alternating(guesses, FAILED_AUTH)
    assert [r.status_code for r in failed] == [401] * FAILED_AUTH

    locked = alice[0].get("/jobs")
    assert locked.status_code == 429, locked.text
    assert locked.json()["limit"] == "failed authentications per address"
    assert "every request from there is refused" in locked.json()["detail"]
    retry_after = int(locked.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW_S
    assert alice[1].get("/jobs").status_code == 429  # in every API process
    assert guesses[0].get("/jobs").status_code == 429  # a guess is not even looked at
    assert alice[0].get("/healthz").status_code == 200
    with deployment.client(KEYS["alice"], source="127.0.0.16") as elsewhere:
        assert elsewhere.get("/jobs").status_code == 200  # only that address is locked out

    time.sleep(retry_after)  # the first failure has left the window
    assert alice[1].get("/jobs").status_code == 200
    for client in (*guesses, *alice):
        client.close()


def test_forwarded_addresses_count_only_from_trusted_proxies(deployment: Deployment) -> None:
    def remaining(source: str, forwarded_for: str) -> int:
        """What is left of the per-address rate the request counted against."""
        with deployment.client(None, source=source) as client:
            answer = client.get("/openapi.json", headers={"X-Forwarded-For": forwarded_for})
        assert answer.status_code == 200, answer.text
        return int(answer.headers["RateLimit-Remaining"])

    # Through the trusted proxy each forwarded client has its own count.
    assert remaining(PROXY, "203.0.113.7") == PER_ADDRESS - 1
    assert remaining(PROXY, "203.0.113.8") == PER_ADDRESS - 1
    assert remaining(PROXY, "203.0.113.7") == PER_ADDRESS - 2
    # The right-most entry that is not a trusted proxy: what the client wrote before it
    # is not believed, trusted proxies after it are passed over.
    assert remaining(PROXY, "198.51.100.1, 203.0.113.7") == PER_ADDRESS - 3
    assert remaining(PROXY, f"203.0.113.7, {PROXY}") == PER_ADDRESS - 4
    # From a peer that is no trusted proxy the header means nothing: it counts as itself.
    assert remaining("127.0.0.14", "203.0.113.9") == PER_ADDRESS - 1
    assert remaining("127.0.0.14", "203.0.113.10") == PER_ADDRESS - 2
    # 127.0.0.1 too, which uvicorn itself would trust (FORWARDED_ALLOW_IPS): not here.
    assert remaining("127.0.0.1", "203.0.113.11") == PER_ADDRESS - 1
    assert remaining("127.0.0.1", "203.0.113.12") == PER_ADDRESS - 2


def test_sync_runs_have_their_own_stricter_rate(deployment: Deployment) -> None:
    carol = [deployment.client(KEYS["carol"], api=i, source="127.0.0.15") for i in (0, 1)]
    # Refused at once (422), but counted all the same.
    run = {"stage": "visualize", "command": "heatmap", "mode": "sync",
           "args": {"no_such_argument": 1}}  # fmt: skip
    answers = [carol[i % 2].post("/cli/run", json=run) for i in range(SYNC_RUNS + 1)]
    assert [a.status_code for a in answers] == [422] * SYNC_RUNS + [429]
    assert answers[0].headers["RateLimit-Limit"] == str(SYNC_RUNS)  # the stricter one applies
    assert answers[-1].json()["limit"] == "sync runs per principal"
    assert int(answers[-1].headers["Retry-After"]) <= WINDOW_S

    listing = carol[1].get("/jobs")  # other requests go on under the general rate
    assert listing.status_code == 200
    assert listing.headers["RateLimit-Limit"] == str(PER_PRINCIPAL)
    assert carol[0].post("/cli/run", json={**run, "mode": "async"}).status_code == 422
    for client in carol:
        client.close()


def test_redis_down_is_503_naming_redis_never_an_open_door(
    tmp_path: Path, inputs: Path, own_redis: RedisServer
) -> None:
    api = start_api(tmp_path / "api", inputs, ZYRA_REDIS_URL=own_redis.url,
                    ZYRA_API_KEYS=API_KEYS, **LIMITS)  # fmt: skip
    try:
        with api.client(KEYS["bob"]) as bob:
            assert bob.get("/cli/commands").headers["RateLimit-Limit"] == str(PER_PRINCIPAL)
            own_redis.stop()
            # The catalog needs no Redis: only the rate limiter does, and it answers 503.
            down = bob.get("/cli/commands")
            assert down.status_code == 503, down.text
            assert down.json()["dependency"] == "Redis"
            assert "Redis is unavailable" in down.json()["detail"]
            assert down.headers["Retry-After"] == "5"
            assert httpx.get(f"{api.url}/healthz").status_code == 200

            own_redis.start()
            back = bob.get("/cli/commands")
            assert back.status_code == 200
            assert back.headers["RateLimit-Limit"] == str(PER_PRINCIPAL)
    finally:
        stop_api(api)
