"""Driving a running n8n from tests: its public REST API (/api/v1) with an API key.

The key is made once per n8n: the owner account is set up through the internal REST
API (`/rest/owner/setup`, which answers only while there is no owner) and the owner's
session creates a public API key with every scope its role has. From then on workflows
and credentials are created and activated over /api/v1, which registers a Webhook
trigger at once: no CLI command (~3 s each) and no restart.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

OWNER = {
    "email": "owner@zyra-tests.example.org",
    "firstName": "Zyra",
    "lastName": "Tests",
    "password": "Zyra-tests-owner-1",  # n8n wants 8+ characters, a digit and a capital
}
# What /api/v1/workflows accepts (it refuses any other top-level property).
WORKFLOW_FIELDS = ("name", "nodes", "connections", "settings", "staticData")
FINISHED = {"success", "error", "crashed", "canceled"}


@dataclass
class Execution:
    """One execution as the public API shows it with includeData=true."""

    raw: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.raw["id"])

    @property
    def status(self) -> str:
        return self.raw["status"]

    @property
    def run_data(self) -> dict[str, Any]:
        return self.raw["data"]["resultData"]["runData"]

    @property
    def nodes_run(self) -> set[str]:
        """Names of the nodes that ran: which branch the workflow took."""
        return set(self.run_data)

    @property
    def error(self) -> dict[str, Any] | None:
        return self.raw["data"]["resultData"].get("error")

    def items(self, node: str, output: int = 0, run: int = -1) -> list[dict[str, Any]]:
        """The JSON of the items `node` put out on `output` in its last (or given) run."""
        task = self.run_data[node][run]
        outputs = task.get("data", {}).get("main", [])
        if output >= len(outputs) or outputs[output] is None:
            return []
        return [item["json"] for item in outputs[output]]

    def json(self, node: str) -> dict[str, Any]:
        """The only item `node` put out."""
        [item] = self.items(node)
        return item


def load_workflow(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class N8nClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=60)
        self.api: httpx.Client | None = None
        self.credential_ids: dict[str, str] = {}  # name -> id

    def close(self) -> None:
        self.http.close()
        if self.api is not None:
            self.api.close()

    # --- set-up --------------------------------------------------------------------------

    def set_up_owner_and_api_key(self) -> str:
        """Creates the owner and a public API key; returns the key."""
        with httpx.Client(base_url=self.url, timeout=60) as session:
            reply = session.post("/rest/owner/setup", json=OWNER)
            reply.raise_for_status()
            scopes = session.get("/rest/api-keys/scopes")
            scopes.raise_for_status()
            reply = session.post(
                "/rest/api-keys",
                json={"label": "zyra-tests", "expiresAt": None, "scopes": scopes.json()["data"]},
            )
            reply.raise_for_status()
            key = reply.json()["data"]["rawApiKey"]
        self.api = httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"X-N8N-API-KEY": key}, timeout=60
        )
        return key

    def _api(self) -> httpx.Client:
        assert self.api is not None, "call set_up_owner_and_api_key first"
        return self.api

    def create_credential(self, name: str, type_: str, data: dict[str, Any]) -> str:
        """A credential workflows can name; nodes naming it get its id on import."""
        reply = self._api().post("/credentials", json={"name": name, "type": type_, "data": data})
        assert reply.status_code == 200, reply.text
        self.credential_ids[name] = reply.json()["id"]
        return self.credential_ids[name]

    def import_workflow(self, workflow: dict[str, Any], activate: bool = True) -> str:
        """Creates the workflow (its credentials matched by name) and activates it: its
        Webhook triggers answer at once. Returns the workflow's id."""
        body = {k: copy.deepcopy(workflow[k]) for k in WORKFLOW_FIELDS if k in workflow}
        body.setdefault("settings", {"executionOrder": "v1"})
        for node in body["nodes"]:
            for ref in node.get("credentials", {}).values():
                if ref.get("name") in self.credential_ids:
                    ref["id"] = self.credential_ids[ref["name"]]
        reply = self._api().post("/workflows", json=body)
        assert reply.status_code == 200, reply.text
        workflow_id = reply.json()["id"]
        if activate:
            reply = self._api().post(f"/workflows/{workflow_id}/activate")
            assert reply.status_code == 200, reply.text
        return workflow_id

    def workflow_names(self) -> set[str]:
        reply = self._api().get("/workflows", params={"limit": 250})
        assert reply.status_code == 200, reply.text
        return {w["name"] for w in reply.json()["data"]}

    # --- running -------------------------------------------------------------------------

    def webhook(self, path: str, timeout: float = 180, **request: Any) -> httpx.Response:
        """POST to a production webhook (an active workflow's Webhook trigger)."""
        return self.http.post(f"/webhook/{path}", timeout=timeout, **request)

    def executions(self, workflow_id: str, limit: int = 20) -> list[dict[str, Any]]:
        reply = self._api().get("/executions", params={"workflowId": workflow_id, "limit": limit})
        assert reply.status_code == 200, reply.text
        return reply.json()["data"]

    def execution(self, execution_id: str) -> Execution:
        reply = self._api().get(f"/executions/{execution_id}", params={"includeData": "true"})
        assert reply.status_code == 200, reply.text
        return Execution(reply.json())

    def newest_execution_id(self, workflow_id: str) -> int:
        found = self.executions(workflow_id, limit=1)
        return int(found[0]["id"]) if found else 0

    def finished_after(self, workflow_id: str, after: int, timeout: float = 120) -> Execution:
        """The workflow's first execution with an id above `after`, once it has finished
        (one that waits, on a Wait node, finishes when resumed or timed out)."""
        deadline = time.monotonic() + timeout
        while True:
            newer = [e for e in self.executions(workflow_id) if int(e["id"]) > after]
            first = min(newer, key=lambda e: int(e["id"]), default=None)
            if first is not None and first["status"] in FINISHED:
                return self.execution(first["id"])
            if time.monotonic() > deadline:
                raise AssertionError(f"no finished execution of workflow {workflow_id} after "
                                     f"{after} in {timeout}s: {newer}")  # fmt: skip
            time.sleep(0.2)

    def run(
        self, workflow_id: str, path: str, timeout: float = 180, **request: Any
    ) -> tuple[httpx.Response, Execution]:
        """POST to the workflow's webhook; its answer and the execution it started."""
        before = self.newest_execution_id(workflow_id)
        reply = self.webhook(path, timeout=timeout, **request)
        return reply, self.finished_after(workflow_id, before, timeout)

    def wait_execution(
        self, execution_id: str, statuses: set[str] = FINISHED, timeout: float = 120
    ) -> Execution:
        """The execution once its status is one of `statuses` (by default: finished)."""
        deadline = time.monotonic() + timeout
        while True:
            execution = self.execution(execution_id)
            if execution.status in statuses:
                return execution
            if time.monotonic() > deadline:
                raise AssertionError(f"execution {execution_id} still {execution.status} "
                                     f"after {timeout}s")  # fmt: skip
            time.sleep(0.2)
