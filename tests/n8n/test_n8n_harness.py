"""The harness itself: n8n runs headless, imports and runs a webhook workflow, and an
HTTP Request node reaches the real service with the key from an n8n credential."""

from __future__ import annotations

from importlib.metadata import version

import httpx

from tests.n8n.conftest import TEST_WORKFLOWS, Workflow
from tests.n8n.n8n_client import N8nClient
from tests.n8n.n8n_server import N8nServer


def test_n8n_answers_healthz_on_loopback(n8n: N8nServer) -> None:
    reply = httpx.get(f"{n8n.url}/healthz", timeout=10)
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}
    assert n8n.url.startswith("http://127.0.0.1:")


def test_a_webhook_workflow_runs_and_returns_its_data(
    n8n_client: N8nClient, workflow: Workflow
) -> None:
    echo = workflow(TEST_WORKFLOWS / "echo.json")
    reply, execution = n8n_client.run(echo, "zyra-tests-echo", json={"message": "hello"})
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"echo": "hello", "seen_by": "n8n"}
    assert execution.status == "success"
    assert execution.nodes_run == {"Webhook", "Set", "Respond"}
    assert execution.json("Set") == {"echo": "hello", "seen_by": "n8n"}


def test_an_http_request_node_reads_the_service_version(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client
) -> None:
    listed = workflow(TEST_WORKFLOWS / "zyra-version.json")
    reply, execution = n8n_client.run(listed, "zyra-tests-version")
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["zyra_version"] == version("zyra")
    assert answer["zyra_version"] == zyra.get("/cli/commands").json()["zyra_version"]
    assert "visualize" in answer["stages"]
    assert execution.status == "success"
    # The node sent the credential's header: the service saw the test key.
    assert execution.json("List commands")["zyra_version"] == version("zyra")
