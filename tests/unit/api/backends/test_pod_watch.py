"""What the pod watcher reports of a runner pod, as the kubelet and the Job controller
leave it."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes import client

from api.backends.base import RunnerExit
from api.backends.pod_watch import PodWatcher, container_reason
from runner.lifecycle import ExitReason
from tests.unit.api.backends.reports import JOB_ID, Reports

NAMESPACE = "zyra"


class Batch:
    """The Job API: a Job that the controller may have failed, and deletions."""

    def __init__(self, failure: str | None = None) -> None:
        self.failure = failure
        self.deleted: list[str] = []

    def read_namespaced_job(self, name: str, namespace: str) -> client.V1Job:
        conditions = [client.V1JobCondition(type="Failed", status="True", reason=self.failure)]
        status = client.V1JobStatus(conditions=conditions if self.failure else None)
        return client.V1Job(metadata=client.V1ObjectMeta(name=name), status=status)

    def delete_namespaced_job(self, name: str, namespace: str, **_: Any) -> None:
        self.deleted.append(name)


def pod(state: client.V1ContainerState, deleting: bool = False) -> client.V1Pod:
    status = client.V1ContainerStatus(name="runner", image="runner", image_id="", ready=False,
                                      restart_count=0, state=state)  # fmt: skip
    meta = client.V1ObjectMeta(
        name=f"zyra-{JOB_ID}-x7k2p",
        namespace=NAMESPACE,
        labels={"zyra.job-id": JOB_ID},
        deletion_timestamp=datetime.now(UTC) if deleting else None,
    )
    return client.V1Pod(metadata=meta, status=client.V1PodStatus(container_statuses=[status]))


def running() -> client.V1ContainerState:
    return client.V1ContainerState(running=client.V1ContainerStateRunning())


def terminated(exit_code: int, reason: str | None = None) -> client.V1ContainerState:
    return client.V1ContainerState(
        terminated=client.V1ContainerStateTerminated(exit_code=exit_code, reason=reason)
    )


def waiting(reason: str) -> client.V1ContainerState:
    return client.V1ContainerState(waiting=client.V1ContainerStateWaiting(reason=reason))


def watcher(reports: Reports, batch: Batch, pull_failure_timeout_s: float = 120) -> PodWatcher:
    core = SimpleNamespace()  # observing a pod reads nothing more of it
    return PodWatcher(core, batch, NAMESPACE, reports,  # type: ignore[arg-type]
                      pull_failure_timeout_s=pull_failure_timeout_s)  # fmt: skip


def test_a_running_container_is_reported_started_with_its_pod() -> None:
    reports = Reports()
    watcher(reports, Batch()).observe(pod(running()), deleted=False)
    assert reports.started == [
        (JOB_ID, {"kind": "kubernetes", "namespace": NAMESPACE, "job": f"zyra-{JOB_ID}",
                  "pod": f"zyra-{JOB_ID}-x7k2p"})
    ]  # fmt: skip
    assert reports.exits == []


def test_a_terminated_container_is_reported_with_its_exit_code() -> None:
    reports = Reports()
    watcher(reports, Batch()).observe(pod(terminated(3, "Error")), deleted=False)
    assert reports.exits == [(JOB_ID, RunnerExit(3, ExitReason.ERROR))]


def test_out_of_memory_overrides_what_the_runner_reported() -> None:
    reports = Reports()
    watcher(reports, Batch()).observe(pod(terminated(137, "OOMKilled")), deleted=False)
    assert reports.exits == [(JOB_ID, RunnerExit(137, ExitReason.OOM_KILLED, True))]


def test_a_container_killed_at_the_jobs_deadline_ends_it_deadline_exceeded() -> None:
    reports = Reports()
    batch = Batch(failure="DeadlineExceeded")
    watcher(reports, batch).observe(pod(terminated(143), deleting=True), deleted=False)
    assert reports.exits == [(JOB_ID, RunnerExit(143, ExitReason.DEADLINE_EXCEEDED, True))]


def test_a_pod_gone_before_its_container_ended_is_lost() -> None:
    reports = Reports()
    watcher(reports, Batch()).observe(pod(running()), deleted=True)
    assert reports.exits == [(JOB_ID, RunnerExit(None, ExitReason.LOST))]


def test_a_container_stuck_on_its_image_past_the_timeout_fails_and_its_job_goes() -> None:
    reports, batch = Reports(), Batch()
    patient = watcher(reports, batch, pull_failure_timeout_s=120)
    patient.observe(pod(waiting("ImagePullBackOff")), deleted=False)
    patient.expire_stuck()
    assert (reports.exits, batch.deleted) == ([], [])  # not yet
    impatient = watcher(reports, batch, pull_failure_timeout_s=0)
    impatient.observe(pod(waiting("ErrImagePull")), deleted=False)
    impatient.expire_stuck()
    assert reports.exits == [(JOB_ID, RunnerExit(None, ExitReason.ERR_IMAGE_PULL, True))]
    assert batch.deleted == [f"zyra-{JOB_ID}"]


@pytest.mark.parametrize(
    ("kubelet_reason", "exit_code", "reason"),
    [
        (None, 0, ExitReason.COMPLETED),
        ("Completed", 0, ExitReason.COMPLETED),
        ("Error", 3, ExitReason.ERROR),
        ("Error", 137, ExitReason.SIGNALED),  # the runner itself was killed (128+N)
        ("OOMKilled", 137, ExitReason.OOM_KILLED),
        # The kubelet's own words outside ours: what the exit code says.
        ("StartError", 128, ExitReason.ERROR),
        ("ContainerStatusUnknown", 137, ExitReason.SIGNALED),
    ],
)
def test_a_terminated_container_ends_the_job_with_a_reason_of_ours(
    kubelet_reason: str | None, exit_code: int, reason: ExitReason
) -> None:
    assert container_reason(kubelet_reason, exit_code) is reason
