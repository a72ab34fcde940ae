"""One job, one shape, through the real API: the sync answer, `GET /jobs/{id}`, the job
list and the WebSocket's end agree; `metadata` comes back everywhere;
`fail_on_nonzero_exit` turns a failed run into a 422 carrying the job; and
`GET /jobs/{id}?wait=` answers as soon as the job has ended."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import ApiServer, start_api, stop_api
from tests.e2e.jobs_client import read_stream, submit

ALICE, BOB = "alice-key-of-the-answers-tests", "bob-key-of-the-answers-tests"


@pytest.fixture(scope="module")
def answers_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(
        tmp_path_factory.mktemp("answers"), inputs,
        ZYRA_API_KEYS=f"alice:{ALICE},bob:{BOB}",
        ZYRA_MAX_STREAMS_PER_PRINCIPAL="2", ZYRA_MAX_JOB_WAIT_S="30",
    )  # fmt: skip
    yield server
    stop_api(server)


@pytest.fixture
def alice(answers_api: ApiServer) -> Iterator[httpx.Client]:
    with answers_api.client(ALICE) as c:
        yield c


@pytest.fixture
def bob(answers_api: ApiServer) -> Iterator[httpx.Client]:
    with answers_api.client(BOB) as c:
        yield c


def heatmap(inputs: Path) -> dict[str, Any]:
    return {"input": str(inputs / "field.npy"), "output": "map.png", "no_coastline": True,
            "no_borders": True, "no_gridlines": True}  # fmt: skip


def failing(inputs: Path) -> dict[str, Any]:
    return {"file_or_url": str(inputs / "garbage.grib2"), "format": "netcdf", "output": "x.nc"}


def slow(silent_server: str) -> dict[str, Any]:
    """A fetch from a server that never answers: runs until its timeout or a cancel."""
    return {"url": silent_server, "output": "never.bin"}


def test_the_sync_answer_the_job_and_the_list_are_one_shape_with_metadata(
    alice: httpx.Client, answers_api: ApiServer, inputs: Path
) -> None:
    metadata = {"workflow": "daily-maps", "execution": 17, "tags": ["n8n"]}
    run = {"stage": "visualize", "command": "heatmap", "args": heatmap(inputs)}
    answer = alice.post("/cli/run", json={**run, "metadata": metadata})
    assert answer.status_code == 200, answer.text
    sync = answer.json()
    assert (sync["status"], sync["exit_code"], sync["reason"]) == ("succeeded", 0, "Completed")
    assert sync["metadata"] == metadata and sync["callback"] is None
    assert alice.get(f"/jobs/{sync['job_id']}").json() == sync
    [listed] = [j for j in alice.get("/jobs").json()["jobs"] if j["job_id"] == sync["job_id"]]
    assert listed == sync
    # The WebSocket's last message uses the same words for the same end.
    last = read_stream(answers_api, sync["job_id"], key=ALICE).messages[-1]
    assert {k: last[k] for k in ("status", "exit_code", "reason")} == {
        k: sync[k] for k in ("status", "exit_code", "reason")
    }


def test_a_failed_run_is_200_unless_the_client_asks_for_an_error_status(
    alice: httpx.Client, inputs: Path
) -> None:
    run = {"stage": "process", "command": "convert-format", "args": failing(inputs)}
    plain = alice.post("/cli/run", json=run)
    assert plain.status_code == 200
    assert (plain.json()["status"], plain.json()["exit_code"]) == ("failed", 1)
    strict = alice.post("/cli/run", json={**run, "fail_on_nonzero_exit": True})
    assert strict.status_code == 422
    body = strict.json()
    assert (body["status"], body["exit_code"], body["reason"]) == ("failed", 1, "Error")
    assert body["detail"].startswith("process convert-format failed: exit code 1 (Error): ")
    assert "no GRIB messages found" in body["detail"]
    job = alice.get(f"/jobs/{body['job_id']}").json()
    assert {k: v for k, v in body.items() if k != "detail"} == job
    # The line that says why, not the hint Zyra prints after it.
    colormap = {**heatmap(inputs), "cmap": "no-such-colormap"}
    bad = alice.post(
        "/cli/run",
        json={"stage": "visualize", "command": "heatmap", "args": colormap,
              "fail_on_nonzero_exit": True},
    )  # fmt: skip
    assert bad.status_code == 422
    assert bad.json()["stderr"].rstrip().splitlines()[-1].startswith("See `matplotlib")
    assert bad.json()["detail"].endswith(
        ": ERROR: 'no-such-colormap' is not a valid value for cmap."
    ), bad.json()["detail"]
    # A run that succeeds is 200 either way.
    works = {"stage": "visualize", "command": "heatmap", "args": heatmap(inputs)}
    ok = alice.post("/cli/run", json={**works, "fail_on_nonzero_exit": True})
    assert ok.status_code == 200 and ok.json()["status"] == "succeeded"


def test_a_long_poll_answers_as_soon_as_the_job_ends(alice: httpx.Client, inputs: Path) -> None:
    job_id = submit(alice, "visualize", "heatmap", heatmap(inputs))
    started = time.monotonic()
    job = alice.get(f"/jobs/{job_id}", params={"wait": 30}).json()
    took = time.monotonic() - started
    assert (job["status"], job["exit_code"]) == ("succeeded", 0)
    assert took < 15, took  # the job's own time, not the wait's
    # An ended job answers at once.
    started = time.monotonic()
    assert alice.get(f"/jobs/{job_id}", params={"wait": 30}).json() == job
    assert time.monotonic() - started < 1


def test_a_long_poll_on_a_job_still_running_answers_after_the_wait(
    alice: httpx.Client, silent_server: str
) -> None:
    job_id = submit(alice, "acquire", "http", slow(silent_server), timeout_s=60)
    try:
        started = time.monotonic()
        job = alice.get(f"/jobs/{job_id}", params={"wait": 1.5}).json()
        assert 1.4 <= time.monotonic() - started < 5
        assert job["status"] in ("queued", "running")
        # Cancelled meanwhile: the waiting poll answers with the end.
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(alice.get, f"/jobs/{job_id}", params={"wait": 25})
            time.sleep(0.5)
            assert alice.delete(f"/jobs/{job_id}").json()["cancelled"] is True
            ended = waiting.result(timeout=25).json()
        assert ended["status"] == "cancelled"
        strict = alice.get(f"/jobs/{job_id}", params={"wait": 1, "fail_on_nonzero_exit": True})
        assert strict.status_code == 422 and strict.json()["status"] == "cancelled"
    finally:
        alice.delete(f"/jobs/{job_id}")


def test_long_poll_abuse_is_refused(
    alice: httpx.Client, bob: httpx.Client, silent_server: str
) -> None:
    job_id = submit(alice, "acquire", "http", slow(silent_server), timeout_s=60)
    try:
        too_long = alice.get(f"/jobs/{job_id}", params={"wait": 31})
        assert too_long.status_code == 422
        [problem] = too_long.json()["detail"]
        assert problem["loc"] == ["query", "wait"] and "at most 30 seconds" in problem["msg"]
        for bad in ("-1", "nan", "soon"):
            refused = alice.get(f"/jobs/{job_id}", params={"wait": bad})
            assert refused.status_code == 422, bad
            assert refused.json()["detail"][0]["loc"] == ["query", "wait"]
        # Someone else's job: the same 404 as an unknown one, at once (no wait to time).
        started = time.monotonic()
        assert bob.get(f"/jobs/{job_id}", params={"wait": 20}).status_code == 404
        assert time.monotonic() - started < 2
        # Each waiting poll holds one of the caller's streams (2 here); a third is 503.
        with ThreadPoolExecutor(2) as pool:
            held = [pool.submit(alice.get, f"/jobs/{job_id}", params={"wait": 4}) for _ in "ab"]
            time.sleep(1)
            third = alice.get(f"/jobs/{job_id}", params={"wait": 4})
            assert third.status_code == 503
            assert third.json()["limit"] == "ZYRA_MAX_STREAMS_PER_PRINCIPAL"
            assert "retry-after" in third.headers
            assert [h.result().status_code for h in held] == [200, 200]
    finally:
        alice.delete(f"/jobs/{job_id}")
