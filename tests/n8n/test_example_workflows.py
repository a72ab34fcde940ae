"""The example workflows of docs/n8n/, imported into n8n and run against the real service:
which branch each ends in, and with what data (PNG sha256 equal to the service's record).

The API lets the key run one async job at a time (tests/n8n/conftest.py), so a test can
hold that slot with a job that never ends (`slot_held`) and keep a workflow's job queued:
long enough to see a long-poll loop, a forged callback or the Wait node's time limit.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import API_KEY
from tests.e2e.jobs_client import wait_finished
from tests.n8n.conftest import EXAMPLES, Workflow, slot_held, upload
from tests.n8n.n8n_client import N8nClient
from tests.n8n.n8n_server import N8nServer


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def downloaded(zyra: httpx.Client, job_id: str, name: str) -> bytes:
    reply = zyra.get(f"/jobs/{job_id}/download", params={"file": name})
    assert reply.status_code == 200, reply.text
    return reply.content


def wait_queued(zyra: httpx.Client, command: str, timeout_s: float = 30) -> str:
    """The id of the queued job of `command` (once there is one)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        jobs = zyra.get("/jobs", params={"status": "queued", "command": command}).json()["jobs"]
        if jobs:
            return jobs[0]["job_id"]
        time.sleep(0.1)
    raise AssertionError(f"no queued {command} job in {timeout_s}s")


@pytest.fixture
def nothing_left_queued(zyra: httpx.Client) -> Iterator[None]:
    """Cancels what a test leaves queued or running, so the next one gets the slot."""
    yield
    for status in ("queued", "running"):
        for job in zyra.get("/jobs", params={"status": status}).json()["jobs"]:
            zyra.delete(f"/jobs/{job['job_id']}")
            wait_finished(zyra, job["job_id"])


# --- import ----------------------------------------------------------------------------


def test_every_example_imports_with_the_cli(
    n8n: N8nServer, n8n_client: N8nClient, tmp_path: Path
) -> None:
    """What builders do: `n8n import:credentials` of the credential template with their
    key, then `n8n import:workflow` of the folder (inactive copies here)."""
    template = json.loads((EXAMPLES / "credentials" / "zyra-api-key.json").read_text())
    template[0]["data"]["value"] = API_KEY
    (tmp_path / "credentials.json").write_text(json.dumps(template))
    n8n.cli("import:credentials", f"--input={tmp_path / 'credentials.json'}")
    examples = sorted(EXAMPLES.glob("*.json"))
    assert len(examples) == 5
    n8n.cli("import:workflow", "--separate", f"--input={EXAMPLES}")
    listed = n8n_client.workflow_names()
    for path in examples:
        assert json.loads(path.read_text())["name"] in listed, listed
    # Each HTTP Request node names the imported credential, by id and by name.
    for path in examples:
        for node in json.loads(path.read_text())["nodes"]:
            if node["type"] == "n8n-nodes-base.httpRequest":
                assert node["credentials"] == {"httpHeaderAuth": {
                    "id": template[0]["id"], "name": template[0]["name"]}}  # fmt: skip


# --- sync, IF on exit_code --------------------------------------------------------------


def test_sync_run_of_a_good_input_takes_the_succeeded_branch(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client, uploaded_field: str
) -> None:
    flow = workflow(EXAMPLES / "sync-run-if-exit-code.json")
    reply, execution = n8n_client.run(flow, "zyra-sync-run", json={"file_id": uploaded_field})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["outcome"] == "succeeded"
    assert answer["status"] == "succeeded" and answer["exit_code"] == 0
    assert [o["name"] for o in answer["outputs"]] == ["map.png"]
    assert "Succeeded" in execution.nodes_run and "Failed" not in execution.nodes_run
    png = downloaded(zyra, answer["job_id"], "map.png")
    assert sha256(png) == answer["outputs"][0]["sha256"]
    # NEW metadata: the workflow's name and execution id, echoed in the job view.
    job = zyra.get(f"/jobs/{answer['job_id']}").json()
    assert job["metadata"] == {"n8n_workflow": "Zyra: sync heatmap, branch on exit code",
                               "n8n_execution": execution.id}  # fmt: skip


def test_sync_run_of_a_broken_input_takes_the_failed_branch(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client
) -> None:
    broken = upload(zyra, "broken.npy", b"this is no numpy file\n")["file_id"]
    flow = workflow(EXAMPLES / "sync-run-if-exit-code.json")
    reply, execution = n8n_client.run(flow, "zyra-sync-run", json={"file_id": broken})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["outcome"] == "failed", answer
    assert answer["status"] == "failed" and answer["exit_code"] != 0
    assert answer["stderr"]
    assert "Failed" in execution.nodes_run and "Succeeded" not in execution.nodes_run


# --- upload, run, download ---------------------------------------------------------------


def test_upload_run_download_answers_the_png_sha256_the_service_recorded(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client, field_npy: bytes
) -> None:
    flow = workflow(EXAMPLES / "upload-run-download.json")
    reply, execution = n8n_client.run(
        flow, "zyra-upload-run-download",
        files={"file": ("field.npy", field_npy, "application/octet-stream")},
    )  # fmt: skip
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["uploaded_sha256"] == sha256(field_npy)
    job = zyra.get(f"/jobs/{answer['job_id']}").json()
    [output] = job["outputs"]
    assert answer["recorded_sha256"] == output["sha256"]
    assert answer["png_sha256"] == output["sha256"]
    assert answer["png_sha256"] == sha256(downloaded(zyra, answer["job_id"], "map.png"))
    assert answer["matches"] is True
    assert job["args"]["input"] == f"file_id:{answer['uploaded_file_id']}"
    assert execution.status == "success"


# --- async, Wait for the signed callback --------------------------------------------------


def test_async_callback_resumes_the_wait_and_takes_the_succeeded_branch(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client, uploaded_field: str
) -> None:
    workflow(EXAMPLES / "async-wait-callback.json")
    reply = n8n_client.webhook("zyra-async-callback", json={"file_id": uploaded_field})
    assert reply.status_code == 200, reply.text
    accepted = reply.json()
    execution = n8n_client.wait_execution(accepted["execution_id"])
    assert execution.status == "success", execution.error
    assert {"Verify signature", "Succeeded"} <= execution.nodes_run
    assert not {"Bad signature", "Did not succeed", "Timed out"} & execution.nodes_run
    verified = execution.json("Verify signature")
    assert verified["signature_valid"] is True
    result = execution.json("Succeeded")
    assert result["job_id"] == accepted["job_id"] and result["exit_code"] == 0
    [output] = result["outputs"]
    assert output["sha256"] == sha256(downloaded(zyra, accepted["job_id"], "map.png"))
    # The callback body is the job view: NEW metadata and callback delivery state.
    assert result["metadata"]["n8n_execution"] == execution.id
    job = zyra.get(f"/jobs/{accepted['job_id']}").json()
    assert job["callback"]["state"] == "delivered"


def test_a_forged_callback_takes_the_bad_signature_branch(
    n8n: N8nServer, n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client,
    uploaded_field: str, silent_server: str, nothing_left_queued: None,
) -> None:  # fmt: skip
    workflow(EXAMPLES / "async-wait-callback.json")
    with slot_held(zyra, silent_server):  # the real callback cannot come first
        reply = n8n_client.webhook("zyra-async-callback", json={"file_id": uploaded_field})
        assert reply.status_code == 200, reply.text
        accepted = reply.json()
        n8n_client.wait_execution(accepted["execution_id"], {"waiting"})
        forged = httpx.post(
            f"{n8n.url}/webhook-waiting/{accepted['execution_id']}",
            content=b'{"job_id": "x", "status": "succeeded"}',
            headers={"Content-Type": "application/json",
                     "Zyra-Signature": f"t={int(time.time())},v1={'0' * 64}"},
        )  # fmt: skip
        assert forged.status_code == 200, forged.text
        execution = n8n_client.wait_execution(accepted["execution_id"])
    assert execution.nodes_run >= {"Verify signature", "Bad signature"}
    assert "Succeeded" not in execution.nodes_run
    # Fresh, but not signed with the execution's secret.
    assert execution.json("Bad signature") == {"outcome": "bad signature",
                                               "signature_fresh": True}  # fmt: skip


def test_the_time_limit_takes_the_fallback_branch_and_cancels_the_job(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client, uploaded_field: str,
    silent_server: str, nothing_left_queued: None,
) -> None:  # fmt: skip
    """n8n resumes a timed-out Wait from its database, checked every 60 s: this waits up
    to a minute."""
    workflow(EXAMPLES / "async-wait-callback.json")
    with slot_held(zyra, silent_server):
        reply = n8n_client.webhook(
            "zyra-async-callback", json={"file_id": uploaded_field, "wait_limit_s": 1}
        )
        assert reply.status_code == 200, reply.text
        accepted = reply.json()
        execution = n8n_client.wait_execution(accepted["execution_id"], timeout=150)
    assert execution.status == "success", execution.error
    assert execution.nodes_run >= {"Job at time limit", "Cancel job", "Timed out"}
    assert "Verify signature" not in execution.nodes_run
    result = execution.json("Timed out")
    assert result["job_id"] == accepted["job_id"]
    assert result["status_at_time_limit"] == "queued" and result["cancelled"] is True
    assert wait_finished(zyra, accepted["job_id"])["status"] == "cancelled"


# --- async, long-poll ----------------------------------------------------------------------


def test_long_poll_asks_again_until_the_job_ends(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client, uploaded_field: str,
    silent_server: str, nothing_left_queued: None,
) -> None:  # fmt: skip
    flow = workflow(EXAMPLES / "long-poll.json")
    before = n8n_client.newest_execution_id(flow)
    with ThreadPoolExecutor(1) as pool:
        with slot_held(zyra, silent_server):
            # The webhook answers at the workflow's end; meanwhile its job waits queued
            # for a few of its 1 s polls.
            answering = pool.submit(
                n8n_client.webhook, "zyra-long-poll", json={"file_id": uploaded_field, "poll_s": 1}
            )
            queued = wait_queued(zyra, "heatmap")
            time.sleep(3)
            assert zyra.get(f"/jobs/{queued}").json()["status"] == "queued"
        reply = answering.result(timeout=180)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["outcome"] == "succeeded" and answer["exit_code"] == 0
    assert answer["job_id"] == queued
    execution = n8n_client.finished_after(flow, before)
    assert len(execution.run_data["Wait for end"]) >= 3  # 3 s queued, then its end
    assert "Succeeded" in execution.nodes_run and "Gave up" not in execution.nodes_run
    [output] = answer["outputs"]
    assert output["sha256"] == sha256(downloaded(zyra, answer["job_id"], "map.png"))


# --- several outputs ------------------------------------------------------------------------


def test_several_outputs_are_downloaded_each_by_name(
    n8n_client: N8nClient, workflow: Workflow, zyra: httpx.Client, uploaded_field: str
) -> None:
    flow = workflow(EXAMPLES / "several-outputs.json")
    reply, execution = n8n_client.run(flow, "zyra-several-outputs",
                                      json={"file_id": uploaded_field})  # fmt: skip
    assert reply.status_code == 200, reply.text
    items = reply.json()
    job_id = items[0]["job_id"]
    outputs = zyra.get(f"/jobs/{job_id}").json()["outputs"]
    assert [i["name"] for i in items] == [o["name"] for o in outputs]  # one item each
    recorded = {o["name"]: o["sha256"] for o in outputs}
    assert recorded.keys() == {"small.png", "large.png"}
    assert recorded["small.png"] != recorded["large.png"]
    for item in items:
        assert item["matches"] is True
        assert item["recorded_sha256"] == recorded[item["name"]]
        assert item["downloaded_sha256"] == sha256(downloaded(zyra, job_id, item["name"]))
    assert execution.status == "success"
