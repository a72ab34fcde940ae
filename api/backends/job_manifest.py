"""The batch/v1 Job that runs one async job in a cluster.

Plain dicts in the API server's own JSON shape, so the manifest can be read,
tested and created as it is. No secret is ever written into the Job: the job
spec (argv, timeout, inputs) travels as an env value, and the job's own
credentials (runner/credentials.py) as a `secretKeyRef` to a Secret of that job
alone, which the Job owns (Kubernetes deletes it with the Job).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from api.resources import RunResources
from api.settings import KubernetesSettings
from runner.credentials import CREDENTIALS_ENV, CREDENTIALS_KEY, JobCredentials
from runner.spec import SPEC_ENV, JobSpec

SPEC_KEY = "spec"  # the job spec's key in the run's Secret
# Linux refuses to start a process with one environment string longer than this
# (MAX_ARG_STRLEN): a runner pod whose spec variable is longer never starts.
MAX_ENV_VALUE_BYTES = 128 * 1024


def spec_too_large(spec: JobSpec) -> str | None:
    """Why a runner pod could not be given this spec (its environment carries it)."""
    size = len(f"{SPEC_ENV}=".encode()) + len(json.dumps(spec.model_dump(mode="json")).encode())
    if size < MAX_ENV_VALUE_BYTES:
        return None
    return (
        f"the job spec is {size // 1024} KiB; a runner pod's environment carries at most "
        f"{MAX_ENV_VALUE_BYTES // 1024} KiB (run it with mode sync, or pass long values "
        "as an uploaded file)"
    )


MANAGED_BY = "zyra-orchestrator"
RUNNER_NAME = "zyra-runner"
_LABEL_VALUE = re.compile(r"[^A-Za-z0-9._-]")


def job_name(job_id: str) -> str:
    return f"zyra-{job_id}"


def label_value(value: str) -> str:
    """Label values: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric."""
    return _LABEL_VALUE.sub("_", value)[:63].strip("._-") or "none"


def labels_for(job_id: str, stage: str, command: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": RUNNER_NAME,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "zyra.job-id": job_id,
        "zyra.stage": label_value(stage),
        "zyra.command": label_value(command),
    }


def credentials_secret_name(job_id: str) -> str:
    return job_name(job_id)


def runner_env(
    spec: JobSpec,
    k8s: KubernetesSettings,
    with_credentials: bool = False,
    trace_env: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """`trace_env`: the job's TRACEPARENT and the exporter's OTEL_* settings
    (runner/tracing.py `runner_env`), when traces are exported."""
    if with_credentials:
        # The spec too: its argv may hold a caller's secret arguments, which anyone
        # allowed to read Jobs in the namespace would otherwise see.
        name = credentials_secret_name(spec.job_id)
        env = [
            {"name": variable, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}}
            for variable, key in ((SPEC_ENV, SPEC_KEY), (CREDENTIALS_ENV, CREDENTIALS_KEY))
        ]
    else:
        env = [{"name": SPEC_ENV, "value": json.dumps(spec.model_dump(mode="json"))}]
    plain = {**k8s.plain_env, **(trace_env or {})}
    return env + [{"name": k, "value": v} for k, v in sorted(plain.items())]


def credentials_secret(
    job: dict[str, Any], job_uid: str, credentials: JobCredentials, spec: JobSpec
) -> dict[str, Any]:
    """The Secret of one run's credentials and spec, owned by its Job (`job` as created,
    with the uid the API server gave it), so Kubernetes deletes it with the Job."""
    meta = job["metadata"]
    owner = {"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"], "uid": job_uid}
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": credentials_secret_name(meta["labels"]["zyra.job-id"]),
            "namespace": meta["namespace"],
            "labels": dict(meta["labels"]),
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "stringData": {
            CREDENTIALS_KEY: credentials.model_dump_json(),
            SPEC_KEY: json.dumps(spec.model_dump(mode="json")),
        },
    }


def job_manifest(
    spec: JobSpec,
    stage: str,
    command: str,
    k8s: KubernetesSettings,
    resources: RunResources | None = None,
    with_credentials: bool = False,
    trace_env: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The Job for one run. `spec.work_root` must lie under `k8s.work_mount`; a run's
    own resources (already checked against the limits) are its request and limit;
    `with_credentials`: its pod reads them from the run's Secret."""
    labels = labels_for(spec.job_id, stage, command)
    requests, limits = dict(k8s.requests), dict(k8s.limits)
    for name, value in (resources.model_dump(exclude_none=True) if resources else {}).items():
        requests[name] = limits[name] = value
    container = {
        "name": "runner",
        "image": k8s.image,
        "imagePullPolicy": k8s.image_pull_policy,
        "command": list(k8s.runner_command),
        "env": runner_env(spec, k8s, with_credentials, trace_env),
        "resources": {"requests": requests, "limits": limits},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": [
            {"name": "work", "mountPath": k8s.work_mount},
            {"name": "tmp", "mountPath": "/tmp"},
            # Data the allowed path prefixes name; read-only, so no run alters another's input.
            *({**mount, "readOnly": True} for mount in k8s.volume_mounts),
        ],
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": k8s.run_as_user,
            "runAsGroup": k8s.run_as_user,
            "fsGroup": k8s.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            {"name": "work", "emptyDir": {"sizeLimit": k8s.work_size_limit}},
            {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}},
            *k8s.volumes,
        ],
    }
    if k8s.service_account:
        pod_spec["serviceAccountName"] = k8s.service_account
    if k8s.node_selector:
        pod_spec["nodeSelector"] = dict(k8s.node_selector)
    if k8s.tolerations:
        pod_spec["tolerations"] = list(k8s.tolerations)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": job_name(spec.job_id), "namespace": k8s.namespace, "labels": labels},
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": math.ceil(spec.timeout_s) + k8s.deadline_margin_s,
            "ttlSecondsAfterFinished": k8s.ttl_after_finished_s,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }
