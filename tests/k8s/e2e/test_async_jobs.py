"""Async runs: each one a Kubernetes Job running the runner image, followed and
collected through the API, and seen by an operator with kubectl."""

from __future__ import annotations

import hashlib
import json
import time

import pytest

from tests.k8s.e2e.fields import small_field
from tests.k8s.e2e.release import Release
from tests.k8s.e2e.slow_server import body_for
from tests.k8s.e2e.user import (
    NO_MAP_FEATURES,
    PNG_MAGIC,
    download,
    read_stream,
    submit,
    upload,
    wait_finished,
    wait_status,
)

pytestmark = pytest.mark.timeout(300, func_only=True)


def job_names(deployment: Release, job_id: str) -> list[str]:
    listed = deployment.kubectl.run("get", "jobs", "-l", f"zyra.job-id={job_id}", "-o", "name")
    return listed.split()


def test_an_async_heatmap_of_an_upload_is_a_job_and_its_png_downloads(
    deployment: Release,
) -> None:
    with deployment.client() as client:
        file_id = upload(client, "field.npy", small_field())
        args = {"input": f"file_id:{file_id}", "output": "async.png", "width": 240,
                "height": 120, **NO_MAP_FEATURES}  # fmt: skip
        job_id = submit(client, "visualize", "heatmap", args)
        deadline = time.monotonic() + 30
        while not (jobs := job_names(deployment, job_id)) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert jobs == [f"job.batch/zyra-{job_id}"]
        record = wait_finished(client, job_id)
        assert (record["status"], record["exit_code"], record["reason"]) == (
            "succeeded", 0, "Completed"
        ), record  # fmt: skip
        [output] = record["outputs"]
        png = download(client, job_id)
    assert output["name"] == "async.png"
    assert png.startswith(PNG_MAGIC)
    assert (len(png), hashlib.sha256(png).hexdigest()) == (output["size"], output["sha256"])
    # The API answers from the runner's own report; the Job controller counts the pod a
    # moment later.
    deadline = time.monotonic() + 30
    while not (job := deployment.kubectl.get(f"job/zyra-{job_id}"))["status"].get("succeeded"):
        assert time.monotonic() < deadline, job["status"]
        time.sleep(0.5)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["image"].split("/")[-1].startswith("zyra-orchestrator-runner:")


def test_the_websocket_follows_a_job_to_its_terminal_status(deployment: Release) -> None:
    with deployment.client() as client:
        job_id = submit(client, "acquire", "http",
                        {"url": deployment.slow_url(3), "output": "answer.txt"})  # fmt: skip
        messages, close_code = read_stream(deployment, job_id)
        answer = download(client, job_id)
    statuses = [m["status"] for m in messages if "status" in m]
    assert close_code == 1000
    assert "running" in statuses and statuses[-1] == "succeeded", messages
    assert statuses.index("running") < statuses.index("succeeded")
    last = messages[-1]
    assert (last["status"], last["exit_code"]) == ("succeeded", 0), last
    seqs = [m["seq"] for m in messages]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert answer == body_for(3)


def test_kubectl_logs_of_the_job_show_the_runners_output(deployment: Release) -> None:
    records = json.dumps([{"i": i, "name": f"line {i}"} for i in range(50)]).encode()
    with deployment.client() as client:
        file_id = upload(client, "records.json", records)
        job_id = submit(client, "process", "api-json",
                        {"file_or_url": f"file_id:{file_id}", "format": "csv"})  # fmt: skip
        record = wait_finished(client, job_id)
    assert (record["status"], record["exit_code"]) == ("succeeded", 0), record
    stdout = record["stdout"].splitlines()
    assert len(stdout) == 51 and "line 49" in stdout[-1], record["stdout"]
    logs = deployment.kubectl.run("logs", f"job/zyra-{job_id}").splitlines()
    # The chart's runners log JSON (config.logFormat): one object per line, each with
    # the job's id; the command's output is echoed as lines of their own, in order
    # (the runner's own lines and the command's stderr may come in between).
    lines = [json.loads(line) for line in logs]
    runner_lines = [line for line in lines if line["logger"].startswith("zyra.runner")]
    assert runner_lines and all(line["job_id"] == job_id for line in runner_lines), logs
    echoed = [line["message"] for line in lines if line.get("stream") == "stdout"]
    assert echoed == stdout, logs


# Run inside a live runner container: who it is, and where it can write.
WRITE_PROBE = """
import os
print("ids", os.getuid(), os.getgid())
for folder in ("/", "/opt/venv", "/work", "/tmp"):
    try:
        open(os.path.join(folder, ".probe"), "w").close()
        print(folder, "writable")
    except OSError as exc:
        print(folder, exc.strerror)
"""


def test_a_runner_container_is_uid_10001_on_a_read_only_root_writing_only_its_empty_dirs(
    deployment: Release,
) -> None:
    """The runner image in a Job the API made, as the node really runs it."""
    with deployment.client() as client:
        job_id = submit(client, "acquire", "http",
                        {"url": deployment.slow_url(30), "output": "slow.txt"})  # fmt: skip
        wait_status(client, job_id, "running")
        try:
            seen = deployment.kubectl.run("exec", f"job/zyra-{job_id}", "-c", "runner", "--",
                                          "python", "-c", WRITE_PROBE).splitlines()  # fmt: skip
        finally:
            client.delete(f"/jobs/{job_id}")
    read_only = "Read-only file system"
    assert seen == ["ids 10001 10001", f"/ {read_only}", f"/opt/venv {read_only}",
                    "/work writable", "/tmp writable"]  # fmt: skip
