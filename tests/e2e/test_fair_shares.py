"""Fair shares: one principal cannot take every sync slot or every async runner.

Issue 12's scenario: bob holds his cap of slow sync runs; his next one is refused at
once (429), and alice's quick run is not kept waiting behind his. Async: bob's jobs
beyond his cap wait `queued` in submission order and start one by one as his earlier
ones end, while alice's job, submitted after all of his, starts at once. On the
embedded default and on two API processes sharing Redis; across an API restart.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import start_api, stop_api
from tests.e2e.deployments import (
    API_KEYS,
    KEYS,
    Deployment,
    deployment_fixture,
)
from tests.e2e.jobs_client import read_stream, submit, wait_finished, wait_status
from tests.services import RedisServer

BOB_RUN_S = 10  # each of bob's slow sync runs ends by its timeout
SHARES = {
    "ZYRA_MAX_SYNC_RUNS_PER_PRINCIPAL": "2",
    "ZYRA_SYNC_CONCURRENCY": "3",  # bob's two leave one slot per process
    "ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL": "2",
    "ZYRA_LOCAL_MAX_RUNNING": "3",
    "ZYRA_FAIR_SHARE_DISPATCH_INTERVAL_S": "0.5",
}
MAP = {"no_coastline": True, "no_borders": True, "no_gridlines": True, "width": 120,
       "height": 60}  # fmt: skip


deployment = deployment_fixture("shares", 8, **SHARES)


def sync_run(
    client: httpx.Client, stage: str, command: str, args: dict, **extra: object
) -> httpx.Response:
    body = {"stage": stage, "command": command, "args": args, "mode": "sync", **extra}
    return client.post("/cli/run", json=body)


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def wait_running_sync_runs(client: httpx.Client, count: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = client.get("/jobs", params={"status": "running"}).json()["jobs"]
        if len([j for j in jobs if j["mode"] == "sync"]) >= count:
            return
        time.sleep(0.05)
    raise AssertionError(f"{count} sync runs never ran at once")


def test_bob_holding_his_sync_cap_gets_429_at_once_and_alice_is_not_delayed(
    deployment: Deployment, inputs: Path, silent_server: str
) -> None:
    heatmap = {"input": str(inputs / "field.npy"), "output": "alice.png", **MAP}
    with (
        deployment.client(KEYS["alice"]) as alice,
        deployment.client(KEYS["bob"], api=0) as bob_a,
        deployment.client(KEYS["bob"], api=1) as bob_b,
        ThreadPoolExecutor(2) as pool,
    ):
        alone, alone_s = timed(lambda: sync_run(alice, "visualize", "heatmap", heatmap))
        assert alone.status_code == 200, alone.text

        slow = {"url": silent_server, "output": "never"}
        holding: list[Future[httpx.Response]] = [
            pool.submit(sync_run, client, "acquire", "http", slow, timeout_s=BOB_RUN_S)
            for client in (bob_a, bob_b)  # one in each API process, if there are two
        ]
        wait_running_sync_runs(bob_a, 2)

        for client in (bob_a, bob_b, bob_a):  # the bob tries more; each is refused
            refused, refused_s = timed(lambda c=client: sync_run(c, "acquire", "http", slow,
                                                                 timeout_s=BOB_RUN_S))  # fmt: skip
            assert refused.status_code == 429, refused.text
            assert refused_s < 2, f"the refusal took {refused_s:.2f} s"
            assert refused.json()["limit"] == "concurrent sync runs per principal"
            assert 1 <= int(refused.headers["Retry-After"]) <= BOB_RUN_S + 3

        answer, alice_s = timed(lambda: sync_run(alice, "visualize", "heatmap", heatmap))
        assert answer.status_code == 200, answer.text
        assert answer.json()["exit_code"] == 0
        assert not any(f.done() for f in holding), "alice waited for one of bob's runs to end"
        assert alice_s < BOB_RUN_S
        print(f"\n[{deployment.kind}] alice's heatmap: {alone_s:.2f} s alone, "
              f"{alice_s:.2f} s while bob holds his cap ({BOB_RUN_S} s runs)")  # fmt: skip

        ended = [f.result() for f in holding]
        assert [r.json()["exit_code"] for r in ended] == [124, 124]
        again = sync_run(bob_b, "visualize", "heatmap", {**heatmap, "output": "bob.png"})
        assert again.status_code == 200, "bob's slots are his again once his runs ended"


def statuses(client: httpx.Client, job_ids: list[str]) -> list[str]:
    return [client.get(f"/jobs/{job_id}").json()["status"] for job_id in job_ids]


def cancel(client: httpx.Client, job_id: str) -> dict:
    assert client.delete(f"/jobs/{job_id}").json()["cancelled"] is True
    return wait_finished(client, job_id, timeout_s=30)


def test_jobs_over_the_cap_wait_in_order_and_hold_back_no_one_else(
    deployment: Deployment, silent_server: str
) -> None:
    with (
        deployment.client(KEYS["bob"], api=0) as bob_a,
        deployment.client(KEYS["bob"], api=1) as bob_b,
        deployment.client(KEYS["alice"], api=1) as alice,
    ):
        bob = [bob_a, bob_b]
        jobs = [submit(bob[n % 2], "acquire", "http", {"url": silent_server, "output": f"b{n}"},
                       timeout_s=300) for n in range(5)]  # fmt: skip
        for job_id in jobs[:2]:
            wait_status(bob_a, job_id, "running")
        assert statuses(bob_a, jobs[2:]) == ["queued"] * 3

        started = time.monotonic()
        alice_job = submit(alice, "acquire", "http", {"url": silent_server, "output": "a"},
                           timeout_s=300)  # fmt: skip
        wait_status(alice, alice_job, "running")
        alice_wait_s = time.monotonic() - started
        assert statuses(bob_a, jobs[2:]) == ["queued"] * 3, "alice took no turn of bob's"
        print(f"\n[{deployment.kind}] alice's job ran {alice_wait_s:.2f} s after its "
              "submission, behind none of bob's 3 queued jobs")  # fmt: skip

        # A queued job cancelled leaves the queue at once; it never ran.
        gone = cancel(bob_b, jobs[4])
        assert (gone["status"], gone["started_at"]) == ("cancelled", None)
        assert [m.get("status") for m in read_stream(deployment.apis[0], jobs[4],
                                                     key=KEYS["bob"]).messages] == [
            "queued", "cancelled"]  # fmt: skip

        # As bob's earlier jobs end, his next one starts, and only that one.
        cancel(bob_a, jobs[0])
        wait_status(bob_a, jobs[2], "running")
        assert statuses(bob_a, jobs[3:4]) == ["queued"]
        cancel(bob_b, jobs[2])  # on two processes: its next one belongs to the other one
        wait_status(bob_a, jobs[3], "running")
        started_at = [bob_a.get(f"/jobs/{j}").json()["started_at"] for j in jobs[:4]]
        assert started_at[2] < started_at[3], "started in submission order"

        for job_id in (jobs[1], jobs[3], alice_job):
            cancel(bob_a if job_id != alice_job else alice, job_id)


@pytest.mark.parametrize("store", ["embedded", "redis"])
def test_queued_jobs_are_dispatched_after_an_api_restart(
    tmp_path: Path, inputs: Path, silent_server: str, redis_server: RedisServer, store: str
) -> None:
    env = {"ZYRA_API_KEYS": API_KEYS, **SHARES}
    if store == "redis":
        env["ZYRA_REDIS_URL"] = redis_server.url[:-1] + "4"
    api = start_api(tmp_path, inputs, **env)
    try:
        with api.client(KEYS["bob"]) as bob:
            jobs = [submit(bob, "acquire", "http", {"url": silent_server, "output": f"r{n}"},
                           timeout_s=300) for n in range(4)]  # fmt: skip
            for job_id in jobs[:2]:
                wait_status(bob, job_id, "running")
            assert statuses(bob, jobs[2:]) == ["queued", "queued"]
    finally:
        stop_api(api)  # its runners go on; its queue is in the store

    api = start_api(tmp_path, inputs, **env)
    try:
        with api.client(KEYS["bob"]) as bob:
            assert statuses(bob, jobs) == ["running", "running", "queued", "queued"]
            cancel(bob, jobs[0])
            wait_status(bob, jobs[2], "running")
            assert statuses(bob, jobs[3:]) == ["queued"]
            cancel(bob, jobs[1])
            wait_status(bob, jobs[3], "running")
            for job_id in jobs[2:]:
                assert cancel(bob, job_id)["status"] == "cancelled"
    finally:
        stop_api(api)
