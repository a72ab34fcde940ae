"""`GET /metrics` on a real API: who may read it, what it says after real runs (a sync
run, an async run, a cancel, a 429), that callers cannot make up label values, and under
Gunicorn that the counts of runs served by different workers add up."""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.dockerfiles import DOCKERFILE_API, Dockerfile
from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api, unreachable_kubeconfig
from tests.e2e.gunicorn_server import base_env, start_gunicorn
from tests.e2e.jobs_client import submit, wait_finished, wait_status
from tests.services import RedisServer, S3Server

TOKEN = "scrape-" + "t0k3n" * 6
ADMIN_KEY, RUN_KEY, READ_KEY = "ops-admin-key-1", "runner-key-2", "reader-key-3"
KEYS = f"e2e:{API_KEY},ops:{ADMIN_KEY} admin,runner:{RUN_KEY} run,reader:{READ_KEY} read"
PER_ADDRESS = 5  # unauthenticated requests per window from one address
FAILED_AUTH = 3  # refused credentials per window from one address
HEATMAP = {"width": 60, "height": 30, "no_coastline": True, "no_borders": True,
           "no_gridlines": True, "output": "h.png"}  # fmt: skip
GUNICORN = Dockerfile.parse(DOCKERFILE_API).exec_form("production", "CMD")  # the image's CMD

Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Series:
    """Every sample, keyed by name and labels, read by Prometheus' own text parser."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def at(series: Series, name: str, **labels: str) -> float:
    """A sample's value; 0 for a counter not moved yet (absent)."""
    return series.get((name, tuple(sorted(labels.items()))), 0.0)


def total(series: Series, name: str) -> float:
    """A counter summed over all its labels."""
    return sum(value for (sample, _), value in series.items() if sample == name)


def source_client(url: str, source: str, **headers: str) -> httpx.Client:
    """From a loopback address of its own: per-address counts stay per test."""
    transport = httpx.HTTPTransport(local_address=source)
    return httpx.Client(base_url=url, headers=headers, transport=transport, timeout=120)


def scrape(url: str, source: str = "127.0.0.1") -> Series:
    with source_client(url, source, Authorization=f"Bearer {TOKEN}") as client:
        response = client.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(response.text)


@pytest.fixture(scope="module")
def metrics_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    server = start_api(
        tmp_path_factory.mktemp("metrics"), inputs,
        ZYRA_API_KEYS=KEYS, ZYRA_METRICS_TOKEN=TOKEN,
        ZYRA_RATE_LIMIT_PER_IP=str(PER_ADDRESS),
        ZYRA_RATE_LIMIT_FAILED_AUTH_PER_IP=str(FAILED_AUTH),
    )  # fmt: skip
    yield server
    stop_api(server)


# --- who may read it ---------------------------------------------------------------------


CALLERS = [
    ({}, 401),
    ({"Authorization": "Bearer " + "x" * len(TOKEN)}, 401),  # a wrong token
    ({"Authorization": f"Bearer {TOKEN[:-1]}"}, 401),  # all but its last character
    ({"X-API-Key": TOKEN}, 401),  # the token is no API key
    ({"Authorization": f"Basic {TOKEN}"}, 401),
    ({"X-API-Key": RUN_KEY}, 403),
    ({"X-API-Key": READ_KEY}, 403),
    ({"X-API-Key": API_KEY}, 403),  # run and read, not admin
    ({"X-API-Key": ADMIN_KEY}, 200),
    ({"Authorization": f"Bearer {TOKEN}"}, 200),
]


@pytest.mark.parametrize(("index", "headers", "status"),
                         [(i, h, s) for i, (h, s) in enumerate(CALLERS)])  # fmt: skip
def test_only_an_admin_or_the_scrape_token_reads_metrics(
    metrics_api: ApiServer, index: int, headers: dict[str, str], status: int
) -> None:
    source = f"127.0.1.{index + 1}"  # an address of its own: no rate limit of another case
    with source_client(metrics_api.url, source, **headers) as client:
        response = client.get("/metrics")
    assert response.status_code == status, response.text
    if status == 401:
        assert "WWW-Authenticate" in response.headers
        assert "zyra_" not in response.text
    if status == 403:
        assert response.json()["detail"].startswith("missing scope admin")
        assert "zyra_" not in response.text
    if status == 200:
        parse(response.text)


def test_the_scrape_token_is_never_counted_as_a_failed_authentication(
    metrics_api: ApiServer,
) -> None:
    """Prometheus scrapes for ever from one address: its token, not being an API key,
    must not lock that address out (ZYRA_RATE_LIMIT_FAILED_AUTH_PER_IP)."""
    for _ in range(FAILED_AUTH * 3):
        scrape(metrics_api.url, source="127.0.2.1")
    # A guess at the token is a refused credential like any other: the address is locked.
    with source_client(metrics_api.url, "127.0.2.2", Authorization="Bearer guess") as guesser:
        codes = [guesser.get("/metrics").status_code for _ in range(FAILED_AUTH + 1)]
    assert codes == [401] * FAILED_AUTH + [429]


def test_public_metrics_need_no_credential_and_still_count_as_requests(
    tmp_path: Path, inputs: Path
) -> None:
    """ZYRA_METRICS_PUBLIC: for a cluster where a NetworkPolicy guards the port. Each
    scrape is an unauthenticated request like any other (ZYRA_RATE_LIMIT_PER_IP). And
    a 429 of an API key's principal counts as class api_key, never by its name."""
    server = start_api(tmp_path, inputs, ZYRA_METRICS_PUBLIC="true",
                       ZYRA_RATE_LIMIT_PER_IP=str(PER_ADDRESS),
                       ZYRA_RATE_LIMIT_SYNC_RUNS_PER_PRINCIPAL="1")  # fmt: skip
    try:
        with source_client(server.url, "127.0.4.1") as anyone:
            codes = [anyone.get("/metrics").status_code for _ in range(PER_ADDRESS + 1)]
            assert codes == [200] * PER_ADDRESS + [429]
        with server.client() as client:  # the sync-run rate is counted before the body
            run = {"stage": "visualize", "command": "no-such-command", "args": {}}
            assert [client.post("/cli/run", json=run).status_code for _ in range(2)] == [
                404, 429]  # fmt: skip
        with source_client(server.url, "127.0.4.2") as anyone:
            assert anyone.get("/jobs").status_code == 401  # nothing else opened
            text = anyone.get("/metrics").text
        series = parse(text)
        assert at(series, "zyra_rate_limited_total", principal_class="api_key",
                  limit="sync_runs") == 1  # fmt: skip
        assert at(series, "zyra_rate_limited_total", principal_class="anonymous",
                  limit="address_requests") == 1  # fmt: skip
        assert "e2e" not in text and API_KEY not in text
    finally:
        stop_api(server)


def test_not_in_the_openapi_document(metrics_api: ApiServer) -> None:
    with metrics_api.client() as client:
        assert "/metrics" not in client.get("/openapi.json").json()["paths"]


# --- what it says ------------------------------------------------------------------------


def test_counters_move_by_exactly_a_sync_run_an_async_run_a_cancel_and_a_429(
    metrics_api: ApiServer, inputs: Path, silent_server: str
) -> None:
    before = scrape(metrics_api.url)
    heatmap = {**HEATMAP, "input": str(inputs / "field.npy")}
    with metrics_api.client() as client:
        sync = client.post("/cli/run", json={"stage": "visualize", "command": "heatmap",
                                             "args": heatmap})  # fmt: skip
        assert sync.status_code == 200 and sync.json()["status"] == "succeeded", sync.text
        job_id = submit(client, "visualize", "heatmap", heatmap)
        assert wait_finished(client, job_id)["status"] == "succeeded"

        stuck = submit(client, "acquire", "http", {"url": silent_server, "output": "x"})
        wait_status(client, stuck, "running")
        with client.stream("GET", f"/jobs/{stuck}/events") as events:  # one SSE stream open
            assert events.status_code == 200
            running = scrape(metrics_api.url)
        assert client.delete(f"/jobs/{stuck}").json()["cancelled"] is True
        assert wait_finished(client, stuck)["status"] == "cancelled"
    with source_client(metrics_api.url, "127.0.3.1") as anonymous:
        codes = [anonymous.get("/jobs").status_code for _ in range(PER_ADDRESS + 1)]
    assert codes == [401] * PER_ADDRESS + [429]
    after = scrape(metrics_api.url)

    def moved(name: str, **labels: str) -> float:
        return at(after, name, **labels) - at(before, name, **labels)

    heat = {"stage": "visualize", "command": "heatmap"}
    acquire = {"stage": "acquire", "command": "http", "mode": "async"}
    assert moved("zyra_jobs_submitted_total", **heat, mode="sync") == 1
    assert moved("zyra_jobs_submitted_total", **heat, mode="async") == 1
    assert moved("zyra_jobs_submitted_total", **acquire) == 1
    done = {"status": "succeeded", "reason": "Completed"}
    assert moved("zyra_jobs_finished_total", **heat, mode="sync", **done) == 1
    assert moved("zyra_jobs_finished_total", **heat, mode="async", **done) == 1
    assert moved("zyra_jobs_finished_total", **acquire, status="cancelled",
                 reason="Cancelled") == 1  # fmt: skip
    assert total(after, "zyra_jobs_finished_total") - total(before, "zyra_jobs_finished_total") == 3
    for mode in ("sync", "async"):
        assert moved("zyra_job_run_duration_seconds_count", stage="visualize", mode=mode,
                     status="succeeded") == 1  # fmt: skip
    assert moved("zyra_job_queue_wait_seconds_count", mode="sync") == 1
    assert moved("zyra_job_queue_wait_seconds_count", mode="async") == 2  # the cancelled ran
    assert moved("zyra_rate_limited_total", principal_class="anonymous",
                 limit="address_requests") == 1  # fmt: skip
    assert total(after, "zyra_rate_limited_total") - total(before, "zyra_rate_limited_total") == 1

    # While the cancelled job ran: one async job running on the local backend, one stream.
    assert at(running, "zyra_jobs_active", backend="local", mode="async", status="running") == 1
    assert at(running, "zyra_streams_open", kind="events") == 1
    assert at(after, "zyra_jobs_active", backend="local", mode="async", status="running") == 0
    assert at(after, "zyra_streams_open", kind="events") == 0
    assert at(after, "zyra_sync_slots_in_use") == 0
    assert at(after, "zyra_job_store_up") == 1


def test_the_sandbox_level_is_the_one_readyz_reports(metrics_api: ApiServer) -> None:
    sandbox = httpx.get(f"{metrics_api.url}/readyz").json()["sandbox"]
    series = scrape(metrics_api.url)
    levels = {dict(labels)["level"]: v for (name, labels), v in series.items()
              if name == "zyra_sandbox_level"}  # fmt: skip
    assert levels == {sandbox["level"]: {"none": 0, "partial": 1, "full": 2}[sandbox["level"]]}


def test_callers_cannot_create_label_values(metrics_api: ApiServer, inputs: Path) -> None:
    """Whatever a caller puts in a request, no new series appears: unknown stages and
    commands are refused before anything is counted, and nothing it sends is a label."""
    marker = uuid.uuid4().hex[:12]
    before = scrape(metrics_api.url)
    with metrics_api.client() as client:
        bodies = [
            {"stage": f"bogus{marker}", "command": "heatmap", "args": {}},
            {"stage": "visualize", "command": f"nope{marker}", "args": {}},
            {"stage": "visualize", "command": "heatmap", "args": {}, "mode": f"m{marker}"},
            {"stage": "visualize\n", "command": 'heatmap"}', "args": {f"x{marker}": 1}},
            {"stage": "visualize", "command": "heatmap", "args": {"input": f"/x/{marker}"},
             "metadata": {f"k{marker}": marker}},
        ]  # fmt: skip
        for body in bodies:
            for mode in ("sync", "async"):
                response = client.post("/cli/run", json={"mode": mode, **body})
                assert 400 <= response.status_code < 500, response.text
        client.get(f"/jobs/{marker}", headers={"X-Request-Id": marker})
        client.get(f"/{marker}")
    after_text = httpx.get(f"{metrics_api.url}/metrics",
                           headers={"Authorization": f"Bearer {TOKEN}"}).text  # fmt: skip
    assert marker not in after_text
    after = parse(after_text)
    assert set(after) == set(before), set(after) ^ set(before)


# --- Gunicorn: several workers -----------------------------------------------------------


def _metrics_dir(stderr: str) -> Path:
    match = re.search(r"metrics of every worker are gathered in (/\S*zyra-metrics-\w+)", stderr)
    assert match, stderr
    return Path(match.group(1))


def _finished_by_worker(folder: Path) -> dict[int, float]:
    """Runs each worker counted, from its own file (counter_<pid>.db)."""
    counts = {}
    for path in folder.glob("counter_*.db"):
        pid = int(path.stem.removeprefix("counter_"))
        counts[pid] = sum(
            sample.value
            for metric in MultiProcessCollector.merge([str(path)], accumulate=True)
            if metric.name == "zyra_jobs_finished"
            for sample in metric.samples
            if sample.name == "zyra_jobs_finished_total"
        )
    return counts


def test_under_gunicorn_the_workers_counts_add_up(
    tmp_path: Path, inputs: Path, redis_server: RedisServer, s3_server: S3Server
) -> None:
    """Two workers (the Kubernetes backend, its Redis store; the kubeconfig names a port
    nothing listens on, so each worker's pod watcher keeps retrying): sync runs over fresh
    connections land on both, and /metrics, whichever worker answers, counts them all."""
    kubeconfig = unreachable_kubeconfig(tmp_path / "kubeconfig")
    env = base_env(
        tmp_path / "data",
        PATH=f"{Path(sys.executable).parent}:/usr/bin:/bin",
        ZYRA_BACKEND="kubernetes",
        ZYRA_REDIS_URL=redis_server.url[:-1] + "11",
        ZYRA_K8S__KUBECONFIG=str(kubeconfig),
        ZYRA_GUNICORN_WORKERS="2",
        ZYRA_METRICS_TOKEN=TOKEN,
        ZYRA_ALLOWED_PATH_PREFIXES=str(inputs),
        ZYRA_MAX_SYNC_RUNS_PER_PRINCIPAL="0",
        **s3_server.api_env("metrics-workers"),
    )
    server = start_gunicorn(GUNICORN, env, tmp_path)
    try:
        server.wait_for_workers(2)
        folder = _metrics_dir(server.stderr)
        workers = set(server.workers())
        assert len(workers) == 2
        heatmap = {**HEATMAP, "input": str(inputs / "field.npy")}
        runs = 0
        while len([n for n in _finished_by_worker(folder).values() if n]) < 2:
            assert runs < 16, f"16 runs, all served by one worker: {_finished_by_worker(folder)}"
            with server.client() as client:  # a fresh connection: any worker may take it
                response = client.post(
                    "/cli/run", json={"stage": "visualize", "command": "heatmap", "args": heatmap}
                )
            assert response.status_code == 200 and response.json()["status"] == "succeeded"
            runs += 1
        by_worker = _finished_by_worker(folder)
        assert set(by_worker) <= workers and sum(by_worker.values()) == runs
        for _ in range(4):  # whichever worker answers the scrape
            series = scrape(server.url)
            done = {"stage": "visualize", "command": "heatmap", "mode": "sync",
                    "status": "succeeded", "reason": "Completed"}  # fmt: skip
            assert at(series, "zyra_jobs_finished_total", **done) == runs
            assert at(series, "zyra_jobs_submitted_total", stage="visualize",
                      command="heatmap", mode="sync") == runs  # fmt: skip
            assert at(series, "zyra_sync_slots") == 2 * 8  # two workers' ZYRA_SYNC_CONCURRENCY
            # Nothing listens at the kubeconfig's server: both watchers are down, retrying.
            assert at(series, "zyra_kubernetes_watch_up") == 0
            assert at(series, "zyra_kubernetes_watch_restarts_total", cause="interrupted") > 0
    finally:
        server.stop()
    assert not folder.exists(), "the master removes its metrics folder when it exits"
