"""The runner Job's manifest: labels to find it, no secrets in it, a locked-down pod."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from api.backends.job_manifest import (
    credentials_secret,
    job_manifest,
    label_value,
    spec_too_large,
)
from api.resources import RunResources
from api.settings import KubernetesSettings
from runner.credentials import CREDENTIALS_ENV, JobCredentials
from runner.spec import SPEC_ENV, JobSpec

JOB_ID = "0123456789abcdef0123456789abcdef"


def spec(**kw) -> JobSpec:
    return JobSpec(job_id=JOB_ID, argv=["visualize", "heatmap", "--input=a.npy"], timeout_s=90.5,
                   env={"PATH": "/usr/bin"}, work_root=f"/work/{JOB_ID}", **kw)  # fmt: skip


def settings(**kw) -> KubernetesSettings:
    return KubernetesSettings(
        namespace="zyra",
        image="registry.example/zyra-runner:1.0",
        service_account="zyra-runner",
        node_selector={"pool": "batch"},
        tolerations=[{"key": "batch", "operator": "Exists", "effect": "NoSchedule"}],
        plain_env={"ZYRA_STORAGE": "s3", "ZYRA_S3_BUCKET": "zyra"},
        **kw,
    )


def test_job_is_found_by_labels_and_named_after_the_job() -> None:
    job = job_manifest(spec(), "visualize", "heatmap", settings())
    assert job["metadata"]["name"] == f"zyra-{JOB_ID}"
    assert job["metadata"]["namespace"] == "zyra"
    labels = job["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "zyra-runner",
        "app.kubernetes.io/managed-by": "zyra-orchestrator",
        "zyra.job-id": JOB_ID,
        "zyra.stage": "visualize",
        "zyra.command": "heatmap",
    }
    assert job["spec"]["template"]["metadata"]["labels"] == labels


def test_one_attempt_with_a_deadline_and_a_ttl() -> None:
    job = job_manifest(spec(), "visualize", "heatmap", settings(ttl_after_finished_s=600))
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["activeDeadlineSeconds"] == 91 + 60
    assert job["spec"]["ttlSecondsAfterFinished"] == 600
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_the_jobs_own_credentials_and_spec_only_as_references_to_its_secret() -> None:
    """Whoever may read Jobs in the namespace sees neither credentials nor the spec,
    whose argv may hold a caller's password."""
    secret_spec = spec(secrets=["hunter2"]).model_copy(
        update={"argv": ["acquire", "ftp", "--password=hunter2"]}
    )
    job = job_manifest(secret_spec, "acquire", "ftp", settings(), with_credentials=True)
    assert "hunter2" not in json.dumps(job)
    [container] = job["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env[SPEC_ENV]["valueFrom"] == {"secretKeyRef": {"name": f"zyra-{JOB_ID}", "key": "spec"}}
    assert env[CREDENTIALS_ENV] == {
        "name": CREDENTIALS_ENV,
        "valueFrom": {"secretKeyRef": {"name": f"zyra-{JOB_ID}", "key": "credentials"}},
    }
    assert env["ZYRA_S3_BUCKET"]["value"] == "zyra"
    assert not [name for name in env if name.startswith("AWS_") or name == "ZYRA_REDIS_URL"]
    plain = job_manifest(spec(), "visualize", "heatmap", settings())  # embedded stores
    assert CREDENTIALS_ENV not in json.dumps(plain)
    [container] = plain["spec"]["template"]["spec"]["containers"]
    [spec_value] = [e["value"] for e in container["env"] if e["name"] == SPEC_ENV]
    assert json.loads(spec_value)["argv"] == ["visualize", "heatmap", "--input=a.npy"]


def test_the_credentials_secret_is_owned_by_its_job() -> None:
    job = job_manifest(spec(), "visualize", "heatmap", settings(), with_credentials=True)
    credentials = JobCredentials(redis_url="redis://zyra-job-x:pw@redis:6379/0")
    secret = credentials_secret(job, "uid-1", credentials, spec())
    assert secret["metadata"]["name"] == f"zyra-{JOB_ID}"
    assert secret["metadata"]["namespace"] == "zyra"
    assert secret["metadata"]["ownerReferences"] == [
        {"apiVersion": "batch/v1", "kind": "Job", "name": f"zyra-{JOB_ID}", "uid": "uid-1"}
    ]
    stored = JobCredentials.model_validate_json(secret["stringData"]["credentials"])
    assert stored == credentials
    assert JobSpec.model_validate_json(secret["stringData"]["spec"]) == spec()


def test_pod_is_locked_down() -> None:
    pod = job_manifest(spec(), "visualize", "heatmap", settings())["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["automountServiceAccountToken"] is False
    assert {v["name"] for v in pod["volumes"]} == {"work", "tmp"}
    assert all("emptyDir" in v for v in pod["volumes"])
    assert pod["serviceAccountName"] == "zyra-runner"
    assert pod["nodeSelector"] == {"pool": "batch"}
    assert pod["tolerations"][0]["key"] == "batch"
    assert container["command"] == ["python", "-m", "runner"]


def test_a_data_volume_is_mounted_read_only_beside_the_runners_own() -> None:
    data = {"name": "data", "persistentVolumeClaim": {"claimName": "grids"}}
    mount = {"name": "data", "mountPath": "/data", "readOnly": False}
    k8s = settings(volumes=[data], volume_mounts=[mount])
    pod = job_manifest(spec(), "visualize", "heatmap", k8s)["spec"]["template"]["spec"]
    assert [v["name"] for v in pod["volumes"]] == ["work", "tmp", "data"]
    assert pod["volumes"][2] == data
    [container] = pod["containers"]
    assert [m["mountPath"] for m in container["volumeMounts"]] == ["/work", "/tmp", "/data"]
    # A run never writes into shared input data, whatever the operator wrote.
    assert container["volumeMounts"][2] == {"name": "data", "mountPath": "/data", "readOnly": True}


def test_a_data_volume_may_sit_inside_the_runners_scratch_tmp() -> None:
    # Where the sync executor sees it, e.g. a host folder under /tmp on one machine.
    mount = {"name": "data", "mountPath": "/tmp/shared/data"}
    k8s = settings(volumes=[{"name": "data", "emptyDir": {}}], volume_mounts=[mount])
    assert k8s.volume_mounts == [mount]


@pytest.mark.parametrize(
    ("volumes", "mounts", "named"),
    [
        ([{"name": "work", "emptyDir": {}}], [], "'work' is taken"),
        ([{"name": "d", "emptyDir": {}}, {"name": "d", "emptyDir": {}}], [], "'d' is taken"),
        ([{"emptyDir": {}}], [], "needs a `name`"),
        ([], [{"name": "data", "mountPath": "/data"}], "names no volume"),
        ([{"name": "data", "emptyDir": {}}], [{"name": "data", "mountPath": "data"}], "absolute"),
        (
            [{"name": "data", "emptyDir": {}}],
            [{"name": "data", "mountPath": "/work/in"}],
            "would hide",
        ),
        ([{"name": "data", "emptyDir": {}}], [{"name": "data", "mountPath": "/"}], "would hide"),
        ([{"name": "data", "emptyDir": {}}], [{"name": "data", "mountPath": "/tmp"}], "would hide"),
    ],
)
def test_a_data_volume_that_would_break_every_job_is_refused_at_start_up(
    volumes: list[dict], mounts: list[dict], named: str
) -> None:
    with pytest.raises(ValidationError, match=named):
        settings(volumes=volumes, volume_mounts=mounts)


def test_label_values_are_made_valid() -> None:
    assert label_value("convert-format") == "convert-format"
    assert label_value("a b/c") == "a_b_c"
    assert len(label_value("x" * 100)) == 63
    assert label_value("-") == "none"


def test_a_runs_own_resources_are_its_request_and_limit() -> None:
    own = RunResources(cpu="500m", memory="1Gi")
    job = job_manifest(spec(), "visualize", "heatmap", settings(), own)
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "500m", "memory": "1Gi"},
    }


def test_a_spec_over_the_environment_cap_is_named_too_large() -> None:
    small = JobSpec(job_id="j", argv=["visualize", "heatmap"], timeout_s=5, env={},
                    work_root="/work/j")  # fmt: skip
    large = small.model_copy(update={"argv": ["acquire", "http", "x" * 140_000]})
    assert spec_too_large(small) is None
    assert "137 KiB" in (spec_too_large(large) or "")
