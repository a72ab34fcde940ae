"""The community node (n8n-nodes-zyra/, built and loaded by the session's n8n from
N8N_CUSTOM_EXTENSIONS) in workflows run by a real n8n against the real service: upload, run
and wait, download; a failing run with and without Continue On Fail; a refused argument;
submit, list and cancel a job; and n8n's own test of the node's credential.

The workflows are built here (Webhook-triggered, like docs/n8n/), with the node's own
parameter names (n8n-nodes-zyra/nodes/Zyra/descriptions.ts). Loaded from a custom folder
the node's type is `CUSTOM.zyra`.
"""

from __future__ import annotations

import hashlib
import itertools
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import API_KEY, ApiServer
from tests.e2e.jobs_client import wait_finished
from tests.n8n.n8n_client import OWNER, N8nClient

NODE_TYPE = "CUSTOM.zyra"
CREDENTIAL_TYPE = "zyraApi"
CREDENTIAL = "Zyra API (community node)"
WRONG_KEY_CREDENTIAL = "Zyra API (wrong key)"
HEATMAP_FLAGS = ("no_coastline", "no_borders", "no_gridlines")
Node = dict[str, Any]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- building workflows -----------------------------------------------------------------


def webhook(path: str, respond: str = "responseNode") -> Node:
    """A POST Webhook trigger. respond: `responseNode` (a Respond node answers) or
    `lastNode` (n8n answers with the last node's first item, or 500 if the run failed)."""
    return {
        "name": "Webhook",
        "type": "n8n-nodes-base.webhook",
        "typeVersion": 2.1,
        "parameters": {"httpMethod": "POST", "path": path, "responseMode": respond, "options": {}},
        "webhookId": str(uuid.uuid4()),
    }


def zyra(
    name: str,
    resource: str,
    operation: str,
    credential: str = CREDENTIAL,
    settings: dict[str, Any] | None = None,
    **parameters: Any,
) -> Node:
    """A Zyra node; settings are n8n's node settings (e.g. onError)."""
    return {
        "name": name,
        "type": NODE_TYPE,
        "typeVersion": 1,
        "parameters": {"resource": resource, "operation": operation, **parameters},
        "credentials": {CREDENTIAL_TYPE: {"name": credential}},
        **(settings or {}),
    }


def set_fields(name: str, **fields: tuple[str, str]) -> Node:
    """A Set node giving each field (type, expression)."""
    assignments = [
        {"id": str(uuid.uuid4()), "name": key, "type": type_, "value": value}
        for key, (type_, value) in fields.items()
    ]
    return {
        "name": name,
        "type": "n8n-nodes-base.set",
        "typeVersion": 3.4,
        "parameters": {"assignments": {"assignments": assignments}, "options": {}},
    }


def respond() -> Node:
    return {
        "name": "Respond",
        "type": "n8n-nodes-base.respondToWebhook",
        "typeVersion": 1.5,
        "parameters": {"respondWith": "firstIncomingItem", "options": {}},
    }


def chain(name: str, *nodes: Node) -> dict[str, Any]:
    """A workflow of nodes run one after the other."""
    placed = [
        {"id": str(uuid.uuid4()), "position": [220 * i, 0], **node} for i, node in enumerate(nodes)
    ]
    connections = {
        a["name"]: {"main": [[{"node": b["name"], "type": "main", "index": 0}]]}
        for a, b in itertools.pairwise(placed)
    }
    return {
        "name": name,
        "nodes": placed,
        "connections": connections,
        "settings": {"executionOrder": "v1"},
    }


def upload_run_download() -> dict[str, Any]:
    """Upload the posted file, heatmap it (Run and Wait), download map.png, hash it."""
    return chain(
        "Zyra node: upload, run and wait, download",
        webhook("zyra-node-upload-run-download"),
        # Webhook 2.x puts a multipart field's file in the binary field of its name.
        zyra("Upload", "file", "upload", binaryPropertyName="file"),
        zyra(
            "Heatmap",
            "command",
            "runAndWait",
            stage="visualize",
            command="heatmap",
            # The input and output as JSON, the flags one by one (both ways of the node).
            argumentsJson='={"input": "file_id:{{ $json.file_id }}", "output": "map.png"}',
            argumentsUi={
                "argument": [
                    {"name": flag, "value": "true", "type": "boolean"} for flag in HEATMAP_FLAGS
                ]
            },
            metadata='={"n8n_execution": "{{ $execution.id }}"}',
            timeout=120,
            maxWait=150,
            waitOptions={"pollWait": 10},
        ),
        zyra(
            "Download",
            "job",
            "download",
            jobId="={{ $json.job_id }}",
            file="map.png",
            binaryPropertyName="png",
        ),
        {
            "name": "Hash PNG",
            "type": "n8n-nodes-base.crypto",
            "typeVersion": 1,
            "parameters": {
                "type": "SHA256",
                "binaryData": True,
                "binaryPropertyName": "png",
                "dataPropertyName": "png_sha256",
                "encoding": "hex",
            },
        },
        set_fields(
            "Result",
            job_id=("string", "={{ $('Heatmap').first().json.job_id }}"),
            status=("string", "={{ $('Heatmap').first().json.status }}"),
            uploaded_file_id=("string", "={{ $('Upload').first().json.file_id }}"),
            uploaded_sha256=("string", "={{ $('Upload').first().json.sha256 }}"),
            file_name=("string", "={{ $('Download').first().json.file_name }}"),
            mime_type=("string", "={{ $('Download').first().json.mime_type }}"),
            png_sha256=("string", "={{ $json.png_sha256 }}"),
            recorded_sha256=(
                "string",
                "={{ $('Heatmap').first().json.outputs.find(o => o.name === 'map.png').sha256 }}",
            ),
        ),
        respond(),
    )


def run_from_request(path: str, continue_on_fail: bool) -> dict[str, Any]:
    """A sync Run of the stage, command and args the request posts, with Fail on Non-Zero
    Exit; answered with the Run node's item (or n8n's 500 when the node failed)."""
    settings = {"onError": "continueRegularOutput"} if continue_on_fail else None
    return chain(
        f"Zyra node: run from the request ({'continue' if continue_on_fail else 'stop'} on fail)",
        webhook(path, respond="lastNode"),
        zyra(
            "Run",
            "command",
            "run",
            settings=settings,
            stage="={{ $json.body.stage }}",
            command="={{ $json.body.command }}",
            argumentsJson="={{ JSON.stringify($json.body.args) }}",
            timeout=60,
            failOnNonZeroExit=True,
        ),
    )


def submit_list_cancel() -> dict[str, Any]:
    """Submit a job that never ends by itself, find it with Get Many, cancel it, and read
    its status once it has ended."""
    submitted = "$('Submit').first().json.job_id"
    return chain(
        "Zyra node: submit, list, cancel",
        webhook("zyra-node-submit-list-cancel"),
        zyra(
            "Submit",
            "command",
            "submit",
            stage="acquire",
            command="http",
            argumentsJson='={"url": "{{ $json.body.url }}", "output": "never"}',
            timeout=300,
        ),
        zyra(
            "Get Many", "job", "getAll", limit=100, filters={"stage": "acquire", "command": "http"}
        ),
        {
            "name": "The submitted job",
            "type": "n8n-nodes-base.filter",
            "typeVersion": 2.2,
            "parameters": {
                "conditions": {
                    "options": {
                        "caseSensitive": True,
                        "leftValue": "",
                        "typeValidation": "strict",
                        "version": 2,
                    },
                    "conditions": [
                        {
                            "id": str(uuid.uuid4()),
                            "leftValue": "={{ $json.job_id }}",
                            "rightValue": f"={{{{ {submitted} }}}}",
                            "operator": {"type": "string", "operation": "equals"},
                        }
                    ],
                    "combinator": "and",
                },
                "options": {},
            },
        },
        zyra("Cancel", "job", "cancel", jobId="={{ $json.job_id }}"),
        zyra("Ended", "job", "get", jobId="={{ $json.job_id }}", wait=30),
        set_fields(
            "Result",
            job_id=("string", f"={{{{ {submitted} }}}}"),
            listed=("number", "={{ $('Get Many').all().length }}"),
            listed_status=("string", "={{ $('The submitted job').first().json.status }}"),
            cancel=("object", "={{ $('Cancel').first().json }}"),
            final_status=("string", "={{ $json.status }}"),
        ),
        respond(),
    )


# --- fixtures ----------------------------------------------------------------------------


def credential_data(url: str, key: str) -> dict[str, Any]:
    # n8n 1.123's public API checks the data against a JSON Schema it derives from the
    # credential's fields, keyed by the option's *name* only (n8n-io/n8n#10045): authType
    # "apiKey" then requires the bearer token field too (and "bearerToken" forbids it, so a
    # bearer credential cannot be made this way), and the domain restriction n8n adds to
    # credentials with `authenticate` must be given. So: an empty bearer token, and every
    # domain allowed (n8n's default).
    return {
        "url": url,
        "authType": "apiKey",
        "apiKey": key,
        "bearerToken": "",
        "allowedHttpRequestDomains": "all",
    }


@pytest.fixture(scope="module")
def credentials(
    community_node: Future[Path], n8n_client: N8nClient, zyra_api: ApiServer
) -> dict[str, str]:
    """The node's credential with the test key, and one with a wrong key: name -> id."""
    community_node.result()  # n8n started without the node if it did not build: say why
    return {
        name: n8n_client.create_credential(
            name, CREDENTIAL_TYPE, credential_data(zyra_api.url, key)
        )
        for name, key in ((CREDENTIAL, API_KEY), (WRONG_KEY_CREDENTIAL, "not-the-key"))
    }


@pytest.fixture(scope="module")
def flows(n8n_client: N8nClient, credentials: dict[str, str]) -> dict[str, str]:
    """The workflows, created and activated once: name -> id."""
    built = {
        "upload-run-download": upload_run_download(),
        "run": run_from_request("zyra-node-run", continue_on_fail=False),
        "run-continue": run_from_request("zyra-node-run-continue", continue_on_fail=True),
        "submit-list-cancel": submit_list_cancel(),
    }
    return {key: n8n_client.import_workflow(flow) for key, flow in built.items()}


@pytest.fixture
def nothing_left_running(zyra: httpx.Client) -> Iterator[None]:
    """Cancels what a test leaves queued or running: the key has one async slot."""
    yield
    for status in ("queued", "running"):
        for job in zyra.get("/jobs", params={"status": status}).json()["jobs"]:
            zyra.delete(f"/jobs/{job['job_id']}")
            wait_finished(zyra, job["job_id"])


def failing_convert(inputs: Path) -> dict[str, Any]:
    """A command that exits 1: tests/e2e/test_sync_runs.py."""
    return {
        "stage": "process",
        "command": "convert-format",
        "args": {
            "file_or_url": str(inputs / "garbage.grib2"),
            "format": "netcdf",
            "output": "x.nc",
        },
    }


# --- upload, run and wait, download ------------------------------------------------------


def test_upload_run_and_wait_download_answers_the_png_sha256_the_service_recorded(
    n8n_client: N8nClient,
    flows: dict[str, str],
    zyra: httpx.Client,
    field_npy: bytes,
    nothing_left_running: None,
) -> None:
    reply, execution = n8n_client.run(
        flows["upload-run-download"],
        "zyra-node-upload-run-download",
        files={"file": ("field.npy", field_npy, "application/octet-stream")},
    )
    assert reply.status_code == 200, reply.text
    assert execution.status == "success", execution.error
    answer = reply.json()
    assert answer["uploaded_sha256"] == sha256(field_npy)
    assert answer["status"] == "succeeded"
    assert answer["png_sha256"] == answer["recorded_sha256"]
    job = zyra.get(f"/jobs/{answer['job_id']}").json()
    [output] = job["outputs"]
    assert output["name"] == "map.png"
    assert answer["png_sha256"] == output["sha256"]
    png = zyra.get(f"/jobs/{answer['job_id']}/download", params={"file": "map.png"}).content
    assert answer["png_sha256"] == sha256(png)
    assert (answer["file_name"], answer["mime_type"]) == ("map.png", "image/png")
    # What the node sent: the uploaded file, the flags as booleans, async, the metadata.
    assert job["mode"] == "async"
    assert job["args"]["input"] == f"file_id:{answer['uploaded_file_id']}"
    assert all(job["args"][flag] is True for flag in HEATMAP_FLAGS), job["args"]
    assert job["metadata"] == {"n8n_execution": execution.id}
    assert zyra.get(f"/files/{answer['uploaded_file_id']}").json()["filename"] == "field.npy"


# --- failures ----------------------------------------------------------------------------


def test_a_failing_run_fails_the_node_with_its_exit_code(
    n8n_client: N8nClient, flows: dict[str, str], inputs: Path
) -> None:
    reply, execution = n8n_client.run(flows["run"], "zyra-node-run", json=failing_convert(inputs))
    assert reply.status_code == 500, reply.text
    assert execution.status == "error"
    error = execution.error
    assert error is not None
    assert error["node"]["name"] == "Run"
    assert "exit code 1" in error["message"], error
    assert error["message"].startswith("process convert-format failed"), error
    assert "no GRIB messages found" in error.get("description", ""), error


def test_a_failing_run_with_continue_on_fail_outputs_the_job_and_the_error(
    n8n_client: N8nClient, flows: dict[str, str], zyra: httpx.Client, inputs: Path
) -> None:
    reply, execution = n8n_client.run(
        flows["run-continue"], "zyra-node-run-continue", json=failing_convert(inputs)
    )
    assert reply.status_code == 200, reply.text
    assert execution.status == "success", execution.error
    item = execution.json("Run")
    assert reply.json() == item
    assert item["status"] == "failed" and item["exit_code"] == 1
    assert item["command"] == "convert-format" and item["mode"] == "sync"
    assert "no GRIB messages found" in item["stderr"]
    assert "exit code 1" in item["error"], item["error"]
    assert zyra.get(f"/jobs/{item['job_id']}").json()["status"] == "failed"


def test_a_refused_argument_fails_the_node_naming_it(
    n8n_client: N8nClient, flows: dict[str, str], uploaded_field: str
) -> None:
    request = {
        "stage": "visualize",
        "command": "heatmap",
        "args": {"input": f"file_id:{uploaded_field}", "output": "map.png", "width": "wide"},
    }
    reply, execution = n8n_client.run(flows["run"], "zyra-node-run", json=request)
    assert reply.status_code == 500, reply.text
    assert execution.status == "error"
    error = execution.error
    assert error is not None and error["node"]["name"] == "Run"
    assert error["message"].startswith("args.width: "), error
    assert "integer" in error["message"], error
    assert str(error.get("httpCode")) == "422", error


# --- submit, list, cancel ----------------------------------------------------------------


def test_submit_get_many_cancel_ends_the_job_cancelled(
    n8n_client: N8nClient,
    flows: dict[str, str],
    zyra: httpx.Client,
    silent_server: str,
    nothing_left_running: None,
) -> None:
    reply, execution = n8n_client.run(
        flows["submit-list-cancel"], "zyra-node-submit-list-cancel", json={"url": silent_server}
    )
    assert reply.status_code == 200, reply.text
    assert execution.status == "success", execution.error
    answer = reply.json()
    assert execution.json("Submit") == {"status": "accepted", "job_id": answer["job_id"]}
    assert answer["listed"] >= 1
    assert answer["listed_status"] in {"queued", "running"}
    assert answer["cancel"]["job_id"] == answer["job_id"]
    assert answer["cancel"]["cancelled"] is True, answer["cancel"]
    assert answer["final_status"] == "cancelled"
    job = zyra.get(f"/jobs/{answer['job_id']}").json()
    assert job["status"] == "cancelled"
    assert job["args"]["url"] == silent_server


# --- n8n's credential test ---------------------------------------------------------------


@pytest.fixture(scope="module")
def owner_session(n8n_client: N8nClient) -> Iterator[httpx.Client]:
    """The owner logged in to n8n's internal REST API (the public API tests no credential)."""
    with httpx.Client(base_url=n8n_client.url, timeout=60) as session:
        reply = session.post(
            "/rest/login",
            json={"emailOrLdapLoginId": OWNER["email"], "password": OWNER["password"]},
        )
        assert reply.status_code == 200, reply.text
        yield session


@pytest.mark.parametrize(
    ("name", "key", "status", "message"),
    [
        (CREDENTIAL, API_KEY, "OK", "Connection successful!"),
        (
            WRONG_KEY_CREDENTIAL,
            "not-the-key",
            "Error",
            "Authorization failed - please check your credentials",
        ),
    ],
)
def test_n8n_tests_the_credential(
    owner_session: httpx.Client,
    credentials: dict[str, str],
    zyra_api: ApiServer,
    name: str,
    key: str,
    status: str,
    message: str,
) -> None:
    # What the editor's "Test" button sends: the credential's id and its (unsaved) data.
    reply = owner_session.post(
        "/rest/credentials/test",
        json={
            "credentials": {
                "id": credentials[name],
                "name": name,
                "type": CREDENTIAL_TYPE,
                "data": credential_data(zyra_api.url, key),
            }
        },
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"] == {"status": status, "message": message}
