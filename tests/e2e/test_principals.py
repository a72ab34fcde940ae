"""Principals from API keys (with scopes) and from OAuth2 JWTs, on a real API process
with a real issuer on loopback (tests/oidc.py): HTTP, WebSocket, the OpenAPI document,
key rotation, JWKS refetch limits and outages, and what the logs never show."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished
from tests.oidc import AUDIENCE, JWKS_PATH, LoopbackIssuer, random_kid, tampered

READ_KEY = "e2e-read-only-key"
ADMIN_KEY = "e2e-admin-key"
BROWSER_KEY = f"e2e-browser-{uuid.uuid4().hex}"  # looked for in the log afterwards
REFETCH_S = 2.0
MAP_FLAGS = {"no_coastline": True, "no_borders": True, "no_gridlines": True}


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory, inputs: Path, issuer: LoopbackIssuer
) -> Iterator[ApiServer]:
    # The WebSocket tests follow alice's job (a token's): keys other than admin may not.
    keys = f"e2e:{API_KEY},reader:{READ_KEY} read,ops:{ADMIN_KEY} admin,browser:{BROWSER_KEY} admin"
    server = start_api(
        tmp_path_factory.mktemp("principals"),
        inputs,
        ZYRA_API_KEYS=keys,
        ZYRA_OAUTH2_ISSUER=issuer.issuer,
        ZYRA_OAUTH2_AUDIENCE=AUDIENCE,
        ZYRA_OAUTH2_NAME_CLAIM="preferred_username",
        ZYRA_OAUTH2_SCOPE_PREFIX="zyra:",
        ZYRA_OAUTH2_LEEWAY_S="30",
        ZYRA_OAUTH2_JWKS_REFETCH_INTERVAL_S=str(REFETCH_S),
    )
    yield server
    stop_api(server)


def bearer(api: ApiServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {token}"}, timeout=120)


def get(api: ApiServer, path: str, token: str) -> httpx.Response:
    with bearer(api, token) as client:
        return client.get(path)


@pytest.fixture(scope="module")
def finished_job(api: ApiServer, issuer: LoopbackIssuer, inputs: Path) -> str:
    """An async job submitted with a token, finished: its events are there to stream."""
    args = {"input": str(inputs / "field.npy"), "output": "heat.png", "width": 120,
            "height": 60, **MAP_FLAGS}  # fmt: skip
    with bearer(api, issuer.token("rsa-1")) as client:
        job_id = submit(client, "visualize", "heatmap", args)
        job = wait_finished(client, job_id)
    assert (job["status"], job["submitted_by"]) == ("succeeded", "alice"), job
    return job_id


def upload(client: httpx.Client) -> httpx.Response:
    return client.post("/upload", files={"file": ("note.txt", b"hello")})


# --- HTTP --------------------------------------------------------------------------------


@pytest.mark.parametrize("kid", ["rsa-1", "ec-1"])
def test_tokens_signed_by_the_issuers_rsa_and_ec_keys_are_accepted(
    api: ApiServer, issuer: LoopbackIssuer, kid: str
) -> None:
    with bearer(api, issuer.token(kid)) as client:
        assert client.get("/cli/commands").status_code == 200
        uploaded = upload(client)
        assert uploaded.status_code == 201, uploaded.text
        file_id = uploaded.json()["file_id"]
        assert client.get(f"/files/{file_id}").json()["filename"] == "note.txt"


def test_a_token_runs_commands_under_its_name_claim(api: ApiServer, finished_job: str) -> None:
    with api.client(key=ADMIN_KEY) as client:
        assert client.get(f"/jobs/{finished_job}").json()["submitted_by"] == "alice"
    with api.client() as client:  # another principal: the job is not there for it
        assert client.get(f"/jobs/{finished_job}").status_code == 404


def test_an_api_key_works_as_a_bearer_token(api: ApiServer) -> None:
    assert get(api, "/jobs", API_KEY).status_code == 200
    refused = get(api, "/jobs", "not-a-key")
    assert refused.status_code == 401
    assert refused.json()["detail"] == "invalid API key in the Authorization header"


def test_without_credentials_the_answer_says_what_to_send(api: ApiServer) -> None:
    with api.client(key=None) as client:
        response = client.get("/jobs")
    assert response.status_code == 401
    assert response.json()["detail"] == (
        "missing credentials: send an X-API-Key header or `Authorization: Bearer <token>`"
    )
    assert response.headers["WWW-Authenticate"] == 'APIKey, Bearer realm="zyra-orchestrator"'


def test_a_token_expired_by_less_than_the_leeway_passes(
    api: ApiServer, issuer: LoopbackIssuer
) -> None:
    token = issuer.token("rsa-1", exp=int(time.time()) - 10)
    assert get(api, "/jobs", token).status_code == 200


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda i: i.token("rsa-1", aud="another-api"), "audience not accepted"),
        (lambda i: i.token("ec-1", iss="https://evil.example/realms/zyra"),
         "issuer not accepted"),
        (lambda i: i.token("rsa-1", exp=int(time.time()) - 120), "the token has expired"),
        (lambda i: i.token("never-published", key=i.keys["rsa-1"]),
         "the issuer publishes no signing key with kid 'never-published'"),
        (lambda i: i.unsigned_token("rsa-1"), "algorithm 'none' is not accepted"),
        (lambda i: i.hs256_with_public_key("rsa-1"), "algorithm 'HS256' is not accepted"),
        (lambda i: tampered(i.token("rsa-1"), preferred_username="root"),
         "the signature does not verify"),
    ],
    ids=["audience", "issuer", "expired", "unknown-kid", "alg-none", "hs256-public-key",
         "tampered"],
)  # fmt: skip
def test_bad_tokens_are_401_saying_why(
    api: ApiServer, issuer: LoopbackIssuer, make: Callable[[LoopbackIssuer], str], reason: str
) -> None:
    response = get(api, "/jobs", make(issuer))
    assert response.status_code == 401
    detail = response.json()["detail"]
    assert detail.startswith("invalid bearer token in the Authorization header: ")
    assert reason in detail
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


# --- scopes ------------------------------------------------------------------------------


def test_a_read_only_key_reads_but_gets_403_naming_run(api: ApiServer) -> None:
    with api.client(key=READ_KEY) as client:
        assert client.get("/jobs").status_code == 200
        assert client.get("/cli/commands").status_code == 200
        for response in (
            client.post("/cli/run", json={"stage": "visualize", "command": "heatmap"}),
            upload(client),
            client.delete("/jobs/nope"),
        ):
            assert response.status_code == 403, response.request.url
            assert response.json()["detail"] == "missing scope run: this API key has read"
            assert (
                'error="insufficient_scope", scope="run"' in (response.headers["WWW-Authenticate"])
            )


def test_token_scopes_come_from_the_scope_claim(api: ApiServer, issuer: LoopbackIssuer) -> None:
    reader = issuer.token("rsa-1", scope="openid zyra:read")
    assert get(api, "/jobs", reader).status_code == 200
    with bearer(api, reader) as client:
        refused = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        "missing scope run: this token has read (scopes come from the 'scope' claim: "
        "zyra:run, zyra:read, zyra:admin)"
    )
    nothing = get(api, "/jobs", issuer.token("rsa-1", scope="openid email"))
    assert nothing.status_code == 403
    assert nothing.json()["detail"].startswith("missing scope read: this token has none")


@pytest.mark.parametrize("who", ["admin key", "admin token"])
def test_admin_works_everywhere(api: ApiServer, issuer: LoopbackIssuer, who: str) -> None:
    if who == "admin key":
        client = api.client(key=ADMIN_KEY)
    else:
        client = bearer(api, issuer.token("ec-1", scope="zyra:admin"))
    with client:
        assert client.get("/jobs").status_code == 200
        assert client.get("/cli/commands").status_code == 200
        assert upload(client).status_code == 201
        assert client.delete("/jobs/nope").status_code == 404  # past the scope check
        invalid = client.post("/cli/run", json={"stage": "nope", "command": "x"})
        assert invalid.status_code == 404  # past the scope check too


# --- WebSocket ---------------------------------------------------------------------------


@dataclass
class Stream:
    messages: list[dict]
    close_code: int | None
    close_reason: str
    subprotocol: str | None


def stream(
    api: ApiServer,
    job_id: str,
    query: str = "",
    headers: dict[str, str] | None = None,
    subprotocols: list[str] | None = None,
) -> Stream:
    url = api.url.replace("http://", "ws://") + f"/ws/jobs/{job_id}{query}"
    messages = []
    with connect(url, additional_headers=headers, subprotocols=subprotocols, open_timeout=30) as ws:
        try:
            while True:
                messages.append(json.loads(ws.recv(timeout=30)))
        except ConnectionClosed:
            pass
        return Stream(messages, ws.close_code, ws.close_reason or "", ws.subprotocol)


@pytest.mark.parametrize(
    "way",
    ["bearer header", "X-API-Key header", "bearer subprotocol", "apikey subprotocol",
     "api_key query", "access_token query"],
)  # fmt: skip
def test_websocket_credentials(
    api: ApiServer, issuer: LoopbackIssuer, finished_job: str, way: str
) -> None:
    token = issuer.token("ec-1")
    query, headers, protocols = "", None, None
    if way == "bearer header":
        headers = {"Authorization": f"Bearer {token}"}
    elif way == "X-API-Key header":
        headers = {"X-API-Key": ADMIN_KEY}
    elif way == "bearer subprotocol":
        protocols = ["zyra", f"bearer.{token}"]
    elif way == "apikey subprotocol":
        protocols = ["zyra", f"apikey.{ADMIN_KEY}"]
    elif way == "api_key query":
        query = f"?since=0&api_key={BROWSER_KEY}"
    else:
        query = f"?access_token={token}"
    events = stream(api, finished_job, query, headers, protocols)
    assert events.close_code == 1000, events.close_reason
    assert events.messages[-1]["status"] == "succeeded"
    assert events.subprotocol == ("zyra" if protocols else None)


def test_websocket_refusals_close_with_4401_and_4403(
    api: ApiServer, issuer: LoopbackIssuer, finished_job: str
) -> None:
    nothing = stream(api, finished_job, subprotocols=["zyra"])
    assert (nothing.close_code, nothing.subprotocol) == (4401, "zyra")
    assert nothing.close_reason.startswith("missing credentials")
    forged = tampered(issuer.token("rsa-1"), sub="someone-else")
    refused = stream(api, finished_job, subprotocols=["zyra", f"bearer.{forged}"])
    assert refused.close_code == 4401
    assert "the signature does not verify" in refused.close_reason
    no_scope = issuer.token("rsa-1", scope="openid")
    forbidden = stream(api, finished_job, headers={"Authorization": f"Bearer {no_scope}"})
    assert forbidden.close_code == 4403
    assert forbidden.close_reason.startswith("missing scope read")


# --- the issuer's keys -------------------------------------------------------------------


def test_a_key_rotation_is_picked_up_without_a_restart(
    api: ApiServer, issuer: LoopbackIssuer
) -> None:
    issuer.add_key("rotation-old")
    time.sleep(REFETCH_S)  # a refetch is allowed again, whatever ran before
    old_token = issuer.token("rotation-old")
    assert get(api, "/jobs", old_token).status_code == 200
    issuer.add_key("rotation-new", "ec")
    issuer.remove_key("rotation-old")
    time.sleep(REFETCH_S)
    assert get(api, "/jobs", issuer.token("rotation-new")).status_code == 200
    gone = get(api, "/jobs", old_token)
    assert gone.status_code == 401
    assert "no signing key with kid 'rotation-old'" in gone.json()["detail"]
    issuer.remove_key("rotation-new")


def test_a_flood_of_unknown_kids_refetches_at_most_once_per_interval(
    api: ApiServer, issuer: LoopbackIssuer
) -> None:
    time.sleep(REFETCH_S)
    key = issuer.keys["rsa-1"]
    forged = [issuer.token(random_kid(), key=key) for _ in range(60)]
    before, started = issuer.jwks_fetches, time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda t: get(api, "/jobs", t).status_code, forged))
    elapsed = time.monotonic() - started
    fetches = issuer.jwks_fetches - before
    assert statuses == [401] * len(forged)
    assert 1 <= fetches <= 1 + int(elapsed // REFETCH_S), (fetches, elapsed)


def test_jwks_down_is_503_naming_it_while_cached_keys_keep_working(
    api: ApiServer, issuer: LoopbackIssuer, finished_job: str
) -> None:
    assert get(api, "/jobs", issuer.token("rsa-1")).status_code == 200  # cached
    issuer.stop()
    try:
        issuer.add_key("published-while-down")
        time.sleep(REFETCH_S)
        token = issuer.token("published-while-down")
        response = get(api, "/jobs", token)
        assert response.status_code == 503
        body = response.json()
        assert body["dependency"] == "OAuth2 JWKS"
        assert body["detail"].startswith(f"OAuth2 JWKS is unavailable: GET {issuer.base}")
        assert JWKS_PATH in body["detail"]
        assert response.headers["Retry-After"]
        ws = stream(api, finished_job, headers={"Authorization": f"Bearer {token}"})
        assert ws.close_code == 1013 and ws.close_reason.startswith("OAuth2 JWKS")
        assert get(api, "/jobs", issuer.token("rsa-1")).status_code == 200
    finally:
        issuer.start()
        issuer.remove_key("published-while-down")


# --- the OpenAPI document and the logs ---------------------------------------------------


def test_openapi_declares_both_schemes(api: ApiServer) -> None:
    document = httpx.get(f"{api.url}/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] | {"description": ""} == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": ""
    }  # fmt: skip
    assert schemes["HTTPBearer"]["type"] == "http"
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    assert schemes["HTTPBearer"]["bearerFormat"] == "JWT"
    paths = document["paths"]
    assert paths["/cli/run"]["post"]["security"] == [
        {"APIKeyHeader": ["run"]},
        {"HTTPBearer": ["run"]},
    ]
    assert paths["/jobs"]["get"]["security"] == [
        {"APIKeyHeader": ["read"]},
        {"HTTPBearer": ["read"]},
    ]
    assert "security" not in paths["/healthz"]["get"]


def test_query_credentials_appear_in_no_log_line(api: ApiServer, finished_job: str) -> None:
    events = stream(api, finished_job, f"?api_key={BROWSER_KEY}")
    assert events.close_code == 1000
    refused = httpx.get(f"{api.url}/jobs?api_key={BROWSER_KEY}")  # headers only, for HTTP
    assert refused.status_code == 401
    time.sleep(0.5)
    log = api.log_path.read_text()
    assert f'"WebSocket /ws/jobs/{finished_job}?api_key=[redacted]" [accepted]' in log
    assert '"GET /jobs?api_key=[redacted] HTTP/1.1" 401' in log
    assert BROWSER_KEY not in log
