"""n8n (installed by tools/n8n/install-n8n.sh, or N8N_BIN) next to the real service.

One API server and one n8n per session: n8n reads the service's URL from its environment
(ZYRA_URL, as the example workflows in docs/n8n/ expect), so the API starts first. The
key is an n8n credential "Zyra API key" (Header Auth, X-API-Key), as builders set it up.
That n8n also loads the community node n8n-nodes-zyra (`community_node`), built once per
session by tests/n8n_node/package.py.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import API_KEY, ApiServer, start_api, stop_api
from tests.e2e.jobs_client import submit, wait_finished, wait_status
from tests.n8n.n8n_client import N8nClient, load_workflow
from tests.n8n.n8n_server import REPO, N8nServer, n8n_binary
from tests.n8n_node.package import copy_built_package

EXAMPLES = REPO / "docs" / "n8n"
TEST_WORKFLOWS = Path(__file__).parent / "workflows"
CREDENTIAL = "Zyra API key"  # the name the workflows' HTTP Request nodes give
# Measurements printed at the end of the run (start-up time, memory).
MEASURED: dict[str, str] = {}
Workflow = Callable[[Path], str]  # the `workflow` fixture: imports a file, gives its id


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if MEASURED:
        terminalreporter.section("n8n")
        for key, value in MEASURED.items():
            terminalreporter.write_line(f"{key}: {value}")


@pytest.fixture(scope="session")
def zyra_api(tmp_path_factory: pytest.TempPathFactory, inputs: Path) -> Iterator[ApiServer]:
    """The service. n8n's callbacks come back on loopback; one async job of the key at a
    time, so a test can hold the slot with a job that never ends (`slot_held`)."""
    server = start_api(
        tmp_path_factory.mktemp("n8n-api"),
        inputs,
        ZYRA_OUTBOUND_ALLOW="127.0.0.1",
        ZYRA_SYNC_TIMEOUT_MAX_S="120",
        ZYRA_MAX_RUNNING_JOBS_PER_PRINCIPAL="1",
        ZYRA_FAIR_SHARE_DISPATCH_INTERVAL_S="0.5",
    )
    yield server
    stop_api(server)


@pytest.fixture(scope="session")
def zyra(zyra_api: ApiServer) -> Iterator[httpx.Client]:
    with zyra_api.client() as client:
        yield client


@pytest.fixture(scope="session")
def community_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Future[Path]]:
    """The community node package (n8n-nodes-zyra/) built once per session, in the
    background: asked for before `zyra_api`, the build (~5 s) runs while the API starts.
    The result is the folder n8n loads it from (or the build's error)."""

    def build() -> Path:
        started = time.monotonic()
        folder = copy_built_package(tmp_path_factory.mktemp("n8n-custom"))
        MEASURED["n8n-nodes-zyra build + copy"] = f"{time.monotonic() - started:.1f} s"
        return folder

    with ThreadPoolExecutor(1, thread_name_prefix="n8n-nodes-zyra-build") as pool:
        yield pool.submit(build)


@pytest.fixture(scope="session")
def n8n(
    tmp_path_factory: pytest.TempPathFactory,
    community_node: Future[Path],
    zyra_api: ApiServer,
) -> Iterator[N8nServer]:
    started = time.monotonic()
    binary = n8n_binary()
    MEASURED["install-n8n.sh (or N8N_BIN)"] = f"{time.monotonic() - started:.1f} s"
    # n8n loads custom nodes at start-up only, from N8N_CUSTOM_EXTENSIONS (their type is
    # `CUSTOM.<name>`). A package that did not build fails only its own tests
    # (tests/n8n/test_community_node.py): the example workflows do not need it.
    started = time.monotonic()
    try:
        extensions = {"N8N_CUSTOM_EXTENSIONS": str(community_node.result())}
    except Exception:  # the future raises it again in the node's own tests
        extensions = {}
    MEASURED["n8n waited for n8n-nodes-zyra"] = f"{time.monotonic() - started:.1f} s"
    server = N8nServer(binary, tmp_path_factory.mktemp("n8n"), ZYRA_URL=zyra_api.url,
                       **extensions)  # fmt: skip
    server.start()
    MEASURED["n8n start-up (spawn to ready)"] = f"{server.startup_s:.1f} s"
    yield server
    server.stop()
    main, group = server.peak_rss_kib
    MEASURED["n8n peak RSS (VmHWM)"] = (f"{main / 1024:.0f} MiB main process, "
                                        f"{group / 1024:.0f} MiB with its task runner")  # fmt: skip
    MEASURED["n8n log"] = str(server.log_path)


@pytest.fixture(scope="session")
def n8n_client(n8n: N8nServer) -> Iterator[N8nClient]:
    client = N8nClient(n8n.url)
    started = time.monotonic()
    client.set_up_owner_and_api_key()
    client.create_credential(CREDENTIAL, "httpHeaderAuth", {"name": "X-API-Key",
                                                            "value": API_KEY})  # fmt: skip
    MEASURED["owner + API key + credential"] = f"{time.monotonic() - started:.2f} s"
    yield client
    client.close()


@pytest.fixture(scope="session")
def workflow(n8n_client: N8nClient) -> Workflow:
    """Imports and activates a workflow file once per session; returns its id."""
    imported: dict[Path, str] = {}

    def get(path: Path) -> str:
        if path not in imported:
            started = time.monotonic()
            imported[path] = n8n_client.import_workflow(load_workflow(path))
            MEASURED[f"import + activate {path.name}"] = f"{time.monotonic() - started:.2f} s"
        return imported[path]

    return get


@pytest.fixture(scope="session")
def field_npy(inputs: Path) -> bytes:
    return (inputs / "field.npy").read_bytes()


def upload(zyra: httpx.Client, name: str, data: bytes) -> dict[str, Any]:
    reply = zyra.post("/upload", files={"file": (name, data)})
    assert reply.status_code == 201, reply.text
    meta = reply.json()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    return meta


@pytest.fixture(scope="session")
def uploaded_field(zyra: httpx.Client, field_npy: bytes) -> str:
    """The id of field.npy uploaded to the service."""
    return upload(zyra, "field.npy", field_npy)["file_id"]


@contextmanager
def slot_held(zyra: httpx.Client, silent_server: str) -> Iterator[str]:
    """The key's only async slot, taken by a job that never ends until the block exits."""
    job_id = submit(zyra, "acquire", "http", {"url": silent_server, "output": "never"},
                    timeout_s=300)  # fmt: skip
    wait_status(zyra, job_id, "running")
    try:
        yield job_id
    finally:
        zyra.delete(f"/jobs/{job_id}")
        wait_finished(zyra, job_id)
