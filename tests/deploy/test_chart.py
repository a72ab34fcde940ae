"""charts/zyra-orchestrator checked by real tools: helm lint and template, the
Kubernetes OpenAPI schemas (kubernetes-validate), yamllint, and the service's own
Settings. The chart on a real API server: tests/k8s/test_chart_on_cluster.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from api.backends.job_manifest import job_manifest, labels_for
from api.resources import RunResources
from api.security.oauth2 import ASYMMETRIC_ALGORITHMS
from api.settings import Settings
from runner.catalog import STAGE_SOURCES
from runner.spec import JobSpec
from tests.deploy.chart import (
    CHART,
    VALUE_SETS,
    Rendered,
    helm,
    kubernetes_version,
    render,
    value_args,
)
from tests.deploy.envnames import gunicorn_env, is_settings_env
from tests.services import REPO

VALUE_IDS = list(VALUE_SETS)


@pytest.fixture(scope="module", params=VALUE_IDS)
def value_set(request: pytest.FixtureRequest) -> tuple[str, Path | None, Rendered]:
    values = VALUE_SETS[request.param]
    return request.param, values, render(values)


@pytest.mark.parametrize("name", VALUE_IDS)
def test_helm_lint_strict_passes(name: str) -> None:
    done = helm("lint", "--strict", str(CHART), *value_args(VALUE_SETS[name]), check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_rendered_resources_are_valid_for_the_pinned_kubernetes(
    value_set: tuple[str, Path | None, Rendered], tmp_path: Path
) -> None:
    name, _, rendered = value_set
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(rendered.text)
    done = subprocess.run(
        [str(Path(sys.executable).parent / "kubernetes-validate"), "--strict",
         "-k", kubernetes_version(), str(manifest)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    passed = done.stdout.count(" passed for resource ")
    assert passed == len(rendered.resources), done.stdout


def chart_settings(
    rendered: Rendered, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, str], Settings]:
    """The API container's environment as the kubelet would give it (Secrets resolved to
    stand-ins), and the Settings the API reads from exactly that environment."""
    env = rendered.api_env(lambda var: "redis://existing" if "REDIS" in var else "existing")
    for name in [n for n in os.environ if n.startswith("ZYRA_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env, Settings()


def test_the_api_accepts_the_chart_settings(
    value_set: tuple[str, Path | None, Rendered], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every ZYRA_* name the chart sets is a real setting, with a value Settings takes."""
    _, _, rendered = value_set
    env, settings = chart_settings(rendered, monkeypatch)
    unknown = [k for k in env if k.startswith("ZYRA_")
               and not (is_settings_env(k) or k in gunicorn_env())]  # fmt: skip
    assert not unknown, f"not settings the API reads: {unknown}"
    assert settings.backend == "kubernetes" and settings.storage == "s3"
    assert settings.redis_url and settings.redis_url.startswith("redis")
    assert settings.k8s.namespace == "zyra"
    assert settings.k8s.image.startswith(("zyra-orchestrator-runner:", "registry.example.com/"))
    assert settings.api_keys_file is not None
    # The runner's default request fits under its limit, as the API checks a run's own.
    request = RunResources(**settings.k8s.requests)
    assert not request.over_limits(settings.k8s.limits)


def test_runner_pods_get_no_secret_of_the_service(
    value_set: tuple[str, Path | None, Rendered],
) -> None:
    """Each run gets credentials of its own (a Secret per run, made by the API): the
    settings name none of the chart's or the operator's Secrets for runners."""
    _, _, rendered = value_set
    config = next(c for c in rendered.of_kind("ConfigMap") if "ZYRA_BACKEND" in c["data"])
    assert not [k for k in config["data"] if k.startswith("ZYRA_K8S__") and "SECRET" in k]
    secrets = {s["metadata"]["name"] for s in rendered.of_kind("Secret")}
    assert not [name for name in secrets if name in json.dumps(config["data"])]


def test_default_install_generates_an_api_key_and_service_credentials() -> None:
    rendered = render()
    keys = rendered.secret_data("zyra-zyra-orchestrator-api-keys")
    [line] = keys["api-keys"].splitlines()
    name, key = line.split(":", 1)
    assert name == "default" and len(key) == 32 and keys["default-key"] == key
    redis = rendered.secret_data("zyra-zyra-orchestrator-redis")
    assert redis["redis-url"] == f"redis://:{redis['password']}@zyra-zyra-orchestrator-redis:6379/0"
    other = render().secret_data("zyra-zyra-orchestrator-redis")
    assert other["password"] != redis["password"], "passwords are generated, not fixed"


def test_role_grants_exactly_what_the_kubernetes_backend_uses() -> None:
    [role] = render().of_kind("Role")
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    expected = {("batch", "jobs", v) for v in ("create", "get", "list", "watch", "delete")}
    expected |= {("", "pods", v) for v in ("get", "list", "watch")} | {("", "pods/log", "get")}
    expected |= {("", "secrets", v) for v in ("create", "delete")}  # each run's own, no reads
    assert granted == expected
    [binding] = render().of_kind("RoleBinding")
    [subject] = binding["subjects"]
    assert subject["name"] == "zyra-zyra-orchestrator" and subject["namespace"] == "zyra"


def test_runner_network_policy_selects_the_pods_the_api_creates() -> None:
    policy = render().get("NetworkPolicy", "zyra-zyra-orchestrator-runner")
    runner_labels = labels_for("job1", "visualize", "heatmap")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= runner_labels.items()
    assert policy["spec"]["ingress"] == []
    public = [r for r in policy["spec"]["egress"] if r.get("to", [{}])[0].get("ipBlock")]
    assert "169.254.0.0/16" in public[0]["to"][0]["ipBlock"]["except"]


def test_pdb_only_with_more_than_one_replica() -> None:
    assert render().of_kind("PodDisruptionBudget")
    assert not render(sets={"replicaCount": 1}).of_kind("PodDisruptionBudget")


def test_ingress_with_tls_for_production() -> None:
    [ingress] = render(VALUE_SETS["values-production"]).of_kind("Ingress")
    assert ingress["spec"]["tls"][0]["hosts"] == ["zyra.example.com"]
    assert ingress["metadata"]["annotations"]["cert-manager.io/cluster-issuer"] == "letsencrypt"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "zyra-zyra-orchestrator", "port": {"name": "http"}}


def test_production_uses_the_operators_secrets_and_deploys_no_dev_services() -> None:
    rendered = render(VALUE_SETS["values-production"])
    assert not rendered.of_kind("StatefulSet")
    assert not rendered.of_kind("Secret"), "all credentials come from existing Secrets"
    [deployment] = rendered.of_kind("Deployment")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "zyra-api-keys"


def test_api_pod_runs_unprivileged_with_probes_and_rolls_without_downtime() -> None:
    rendered = render()
    [deployment] = rendered.of_kind("Deployment")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    container = rendered.container("api")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/var/lib/zyra", "/tmp"} <= mounts  # writable places under a read-only root


SYNC = "sync-executor"
TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"


def _secret_volumes(pod: dict[str, Any]) -> set[str]:
    """Volumes that hold a Secret or a ServiceAccount token."""

    def holds_one(volume: dict[str, Any]) -> bool:
        sources = volume.get("projected", {}).get("sources", [])
        return "secret" in volume or any("secret" in s or "serviceAccountToken" in s
                                         for s in sources)  # fmt: skip

    return {v["name"] for v in pod["volumes"] if holds_one(v)}


def _uid(pod: dict[str, Any], container: dict[str, Any]) -> int:
    own = container.get("securityContext", {}).get("runAsUser")
    return own if own is not None else pod["securityContext"]["runAsUser"]


def test_sync_executor_gets_no_secret_no_token_and_a_uid_of_its_own(
    value_set: tuple[str, Path | None, Rendered],
) -> None:
    _, _, rendered = value_set
    pod = rendered.api_pod()
    api, sync = rendered.container("api"), rendered.container(SYNC)
    assert "envFrom" not in sync
    assert all("value" in var for var in sync["env"]), "no secretKeyRef, no configMapKeyRef"
    secret_volumes = _secret_volumes(pod)
    assert secret_volumes, "the API's key file and token come from volumes"
    assert not {m["name"] for m in sync["volumeMounts"]} & secret_volumes
    # No token unless mounted: only the API container mounts it, where the in-cluster
    # config of the Kubernetes client looks for it.
    assert pod["automountServiceAccountToken"] is False
    [token] = [m for m in api["volumeMounts"] if m["mountPath"] == TOKEN_PATH]
    sources = next(v for v in pod["volumes"] if v["name"] == token["name"])["projected"]
    assert [next(iter(s)) for s in sources["sources"]] == [
        "serviceAccountToken", "configMap", "downwardAPI"]  # fmt: skip
    assert _uid(pod, sync) != _uid(pod, api) and pod["securityContext"]["fsGroup"]
    context = sync["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sync["image"] == rendered.api_env(lambda _: "x")["ZYRA_K8S__IMAGE"]  # the runner's


def test_the_api_and_its_sync_executor_meet_at_one_socket_and_one_work_dir(
    value_set: tuple[str, Path | None, Rendered],
) -> None:
    _, _, rendered = value_set
    api_env = rendered.api_env(lambda _: "existing")
    sync = rendered.container(SYNC)
    assert sync["command"] == ["python", "-m", "runner.zygote", "--listen",
                               api_env["ZYRA_SYNC_EXECUTOR_SOCKET"]]  # fmt: skip
    mounts = {c: {m["name"]: m["mountPath"] for m in rendered.container(c)["volumeMounts"]}
              for c in ("api", SYNC)}  # fmt: skip
    shared = {name: path for name, path in mounts[SYNC].items() if mounts["api"].get(name) == path}
    assert Path(api_env["ZYRA_SYNC_EXECUTOR_SOCKET"]).parent == Path(shared["sync-socket"])
    assert Path(shared["work"]) in Path(api_env["ZYRA_WORK_DIR"]).parents
    assert Path(api_env["ZYRA_DATA_DIR"]) not in Path(api_env["ZYRA_WORK_DIR"]).parents
    assert rendered.container_env(SYNC)["ZYRA_SANDBOX"] == api_env["ZYRA_SANDBOX"] == "required"


def test_the_api_pods_secrets_are_not_in_the_sync_executors_environment(
    value_set: tuple[str, Path | None, Rendered],
) -> None:
    """Every variable of both containers resolved as the kubelet would: what the API
    reads from Secrets (API keys, Redis URL, S3 keys) is nowhere in the other one."""
    _, _, rendered = value_set
    api = rendered.container("api")
    from_secrets = {v["name"] for v in api["env"] if "secretKeyRef" in v.get("valueFrom", {})}
    assert "ZYRA_REDIS_URL" in from_secrets
    api_env = rendered.api_env(lambda name: f"operator-secret-of-{name}")
    sync_env = rendered.container_env(SYNC)
    assert not from_secrets & sync_env.keys()
    assert not {"ZYRA_API_KEYS", "ZYRA_API_KEYS_FILE", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "ZYRA_REDIS_URL"} & sync_env.keys()  # fmt: skip
    secret_values = {api_env[name] for name in from_secrets}
    for secret in rendered.of_kind("Secret"):
        secret_values |= set(rendered.secret_data(secret["metadata"]["name"]).values())
    leaked = [n for n, v in sync_env.items() if any(s and s in v for s in secret_values)]
    assert not leaked


def test_input_data_is_one_read_only_volume_at_one_path_for_sync_and_async_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """What a command may name by path is readable where it runs: in the sync executor
    and in every runner pod the API creates, at the path the API allows, never writable."""
    claim = {"inputData.volume.persistentVolumeClaim.claimName": "grids"}
    rendered = render(sets={"inputData.mountPath": "/data", **claim})
    [volume] = [v for v in rendered.api_pod()["volumes"] if v["name"] == "input-data"]
    assert volume == {"name": "input-data", "persistentVolumeClaim": {"claimName": "grids"}}
    sync_mounts = [m for m in rendered.container(SYNC)["volumeMounts"] if m["name"] == "input-data"]
    assert sync_mounts == [{"name": "input-data", "mountPath": "/data", "readOnly": True}]
    assert "input-data" not in {m["name"] for m in rendered.container("api")["volumeMounts"]}
    _, settings = chart_settings(rendered, monkeypatch)
    assert settings.allowed_path_prefixes == ["/data"]
    run = JobSpec(job_id="j1", argv=["visualize", "heatmap", "--input=/data/t.npy"],
                  timeout_s=60, env={}, work_root="/work/j1")  # fmt: skip
    pod = job_manifest(run, "visualize", "heatmap", settings.k8s)["spec"]["template"]["spec"]
    assert {"name": "input-data", "persistentVolumeClaim": {"claimName": "grids"}} in pod["volumes"]
    [runner] = pod["containers"]
    assert {"name": "input-data", "mountPath": "/data", "readOnly": True} in runner["volumeMounts"]


def test_without_input_data_nothing_is_mounted_and_no_path_is_allowed() -> None:
    rendered = render()
    assert "input-data" not in {v["name"] for v in rendered.api_pod()["volumes"]}
    env = rendered.api_env(lambda _: "existing")
    assert "ZYRA_ALLOWED_PATH_PREFIXES" not in env and "ZYRA_K8S__VOLUMES" not in env


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        ({"inputData.mountPath": "data"}, "/inputData/mountPath"),
        ({"inputData.volume.name": "x"}, "/inputData/volume"),
        ({"replicaCont": 3}, "additional properties 'replicaCont' not allowed"),
        ({"runner.resources.limits.memory": "4 GB"}, "/runner/resources/limits/memory"),
        ({"apiKeys.keys.ops": "short"}, "/apiKeys/keys/ops"),
        ({"redis.deploy.enabled": False}, "Redis is required: set redis.url or redis.exist"),
        ({"oauth2.issuer": "https://id.example.com/"}, "oauth2.issuer needs oauth2.audience"),
        ({"oauth2.issuer": "http://id.example.com/"}, "/oauth2/issuer"),
        ({"oauth2.algorithms[0]": "HS256"}, "/oauth2/algorithms/0"),
        ({"sandbox.mode": "sometimes"}, "/sandbox/mode"),
        ({"syncExecutor.runAsUser": 10001}, "syncExecutor.runAsUser must not be the API's uid"),
        ({"podSecurityContext.fsGroup": 0}, "podSecurityContext.fsGroup is required"),
    ],
)  # fmt: skip
def test_bad_values_fail_with_a_message_naming_them(sets: dict[str, Any], message: str) -> None:
    done = helm("template", "zyra", str(CHART), *value_args(None, sets), check=False)
    assert done.returncode != 0
    assert message in done.stderr


def test_oauth2_settings_reach_the_api_only_with_an_issuer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert not [k for k in render().api_env() if k.startswith("ZYRA_OAUTH2_")]
    env = render(VALUE_SETS["values-production"]).api_env(lambda var: "redis://existing")
    for name in [n for n in os.environ if n.startswith("ZYRA_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    oauth2 = Settings().oauth2
    assert oauth2 is not None
    assert oauth2.issuer == "https://id.example.com/realms/zyra"
    assert oauth2.audiences == ("zyra-api",)
    assert (oauth2.name_claim, oauth2.scope_claim, oauth2.scope_prefix) == (
        "preferred_username", "scope", "zyra:"
    )  # fmt: skip
    schema = json.loads((CHART / "values.schema.json").read_text())
    algorithms = schema["properties"]["oauth2"]["properties"]["algorithms"]["items"]["enum"]
    assert algorithms == list(ASYMMETRIC_ALGORITHMS)


def test_schema_offers_exactly_the_stages_the_api_accepts() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    stages = schema["properties"]["config"]["properties"]["stages"]["items"]["enum"]
    assert stages == list(STAGE_SOURCES)


def test_smoke_test_hook_runs_the_script_in_the_chart() -> None:
    rendered = render()
    hooks = [r for r in rendered.resources
             if r["metadata"].get("annotations", {}).get("helm.sh/hook") == "test"]  # fmt: skip
    pod = next(r for r in hooks if r["kind"] == "Pod")
    config = next(r for r in hooks if r["kind"] == "ConfigMap")
    script = (CHART / "files" / "smoke_test.py").read_text()
    assert config["data"]["smoke_test.py"] == script
    command = pod["spec"]["containers"][0]["command"]
    assert command[:3] == ["python", "/smoke/smoke_test.py", "http://zyra-zyra-orchestrator:8000"]


def test_chart_and_manifest_yaml_files_pass_yamllint() -> None:
    files = [CHART / "Chart.yaml", CHART / "values.yaml", *VALUE_SETS.values(), REPO / "k8s"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "yamllint"), "--strict",
         "-c", str(REPO / ".yamllint.yaml"), *[str(f) for f in files if f]],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_request_stream_and_retention_limits_are_chart_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sets = {"config.maxRequestBodyMb": 2, "config.maxArgLength": 4096, "config.maxStreams": 40,
            "config.maxStreamsPerPrincipal": 4, "config.jobTtlSeconds": 1209600}  # fmt: skip
    env = render(sets=sets).api_env(lambda var: "redis://x" if "REDIS" in var else "x")
    for name in [n for n in os.environ if n.startswith("ZYRA_")]:
        monkeypatch.delenv(name)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    s = Settings()
    assert (s.max_request_body_mb, s.max_arg_length, s.max_streams,
            s.max_streams_per_principal, s.job_ttl_s) == (2, 4096, 40, 4, 1209600)  # fmt: skip
    assert "ZYRA_JOB_TTL_S" not in render().api_env(lambda var: "x"), "unset: as result ttl"
