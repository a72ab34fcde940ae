"""Request ids: the client's when well formed, else a new one; echoed; on every line
of the request, with the job its path names."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI, WebSocket
from fastapi.testclient import TestClient

from api.observability.log_context import (
    RequestIdMiddleware,
    bind_principal,
    handles_job,
    request_id_of,
)
from runner.log_format import context_fields

JOB = "0123456789abcdef0123456789abcdef"


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()

    @app.get("/context")
    async def context() -> dict:
        bind_principal("alice")
        return dict(context_fields())

    @app.get("/jobs/{job_id}/events")
    async def job_events(job_id: str) -> dict:
        return dict(context_fields())

    @app.websocket("/ws/jobs/{job_id}")
    async def follow(websocket: WebSocket, job_id: str) -> None:
        await websocket.accept()
        await websocket.send_json(dict(context_fields()))
        await websocket.close()

    app.add_middleware(RequestIdMiddleware)
    return TestClient(app)


def test_a_well_formed_id_is_kept_and_echoed(client: TestClient) -> None:
    answer = client.get("/context", headers={"X-Request-ID": "abc.DEF_1-2"})
    assert answer.headers["X-Request-ID"] == "abc.DEF_1-2"
    assert answer.json() == {"request_id": "abc.DEF_1-2", "principal": "alice"}


@pytest.mark.parametrize("sent", [None, "", "x" * 65, "has space", "semi;colon", "a/b", "é"])
def test_anything_else_gets_a_new_id(client: TestClient, sent: str | None) -> None:
    headers = {"X-Request-ID": sent.encode()} if sent is not None else {}
    answer = client.get("/context", headers=headers)
    made = answer.headers["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", made) and answer.json()["request_id"] == made


def test_the_parser_takes_the_first_header_only() -> None:
    headers = [(b"X-Request-ID", b"bad id"), (b"x-request-id", b"good")]
    assert re.fullmatch(r"[0-9a-f]{32}", request_id_of(headers))
    assert request_id_of([(b"x-request-id", b"line\nbreak")]) != "line\nbreak"


def test_sixty_four_characters_are_enough(client: TestClient) -> None:
    rid = "a" * 64
    assert client.get("/context", headers={"X-Request-ID": rid}).headers["X-Request-ID"] == rid


def test_a_job_path_names_the_job(client: TestClient) -> None:
    assert client.get(f"/jobs/{JOB}/events").json()["job_id"] == JOB
    assert "job_id" not in client.get("/jobs/not-a-job-id/events").json()


def test_a_websocket_gets_its_id_too(client: TestClient) -> None:
    with client.websocket_connect(f"/ws/jobs/{JOB}", headers={"X-Request-ID": "ws-1"}) as ws:
        assert ws.receive_json() == {"request_id": "ws-1", "job_id": JOB}


def test_handles_job_binds_the_job_for_the_call_only() -> None:
    class Service:
        @handles_job()
        def by_id(self, job_id: str) -> dict:
            return dict(context_fields())

        @handles_job("job.finalise")
        def by_record(self, record: object) -> dict:
            return dict(context_fields())

    class Record:
        job_id, traceparent = JOB, None

    assert Service().by_id("j1") == {"job_id": "j1"}
    assert Service().by_record(Record()) == {"job_id": JOB}
    assert "job_id" not in context_fields()
