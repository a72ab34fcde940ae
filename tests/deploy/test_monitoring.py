"""The chart's monitoring pieces: the ServiceMonitor scrapes with the token the API
reads, both it and the PrometheusRule are valid for the Prometheus Operator's CRDs, the
rules pass `promtool check rules` and fire (and do not fire) as
tests/deploy/prometheus/alerts.test.yaml says, and every metric the rules and the Grafana
dashboard name is one a real API serves at /metrics."""

from __future__ import annotations

import functools
import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from jsonschema import Draft7Validator
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.chart import CHART, VALUE_SETS, Rendered, render
from tests.e2e.conftest import API_KEY, start_api, stop_api, unreachable_kubeconfig
from tests.services import RedisServer, S3Server, tool_binary

HERE = Path(__file__).parent
ALERT_TESTS = HERE / "prometheus" / "alerts.test.yaml"
DASHBOARD = CHART / "files" / "grafana-dashboard.json"
MONITORING = {"metrics.serviceMonitor.enabled": True, "metrics.prometheusRule.enabled": True,
              "metrics.grafanaDashboard.enabled": True}  # fmt: skip
METRIC = re.compile(r"\bzyra_[a-z0-9_]+")


@functools.cache
def promtool() -> str:
    """promtool built from the Go module proxy (tools/prometheus/build-promtool.sh)."""
    return tool_binary("prometheus/build-promtool.sh", "ZYRA_PROMTOOL_BIN")


@pytest.fixture(scope="module")
def monitored() -> Rendered:
    return render(sets=MONITORING)


def rule_groups(rendered: Rendered) -> list[dict[str, Any]]:
    [rule] = rendered.of_kind("PrometheusRule")
    return rule["spec"]["groups"]


def alerts(rendered: Rendered) -> dict[str, dict[str, Any]]:
    return {r["alert"]: r for g in rule_groups(rendered) for r in g["rules"] if "alert" in r}


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    return queries + [v["definition"] for v in dashboard["templating"]["list"]
                      if "definition" in v]  # fmt: skip


@functools.cache
def operator_schema(kind: str) -> dict[str, Any]:
    """The v1 schema of a Prometheus Operator CRD (tools/prometheus/fetch-operator-crds.sh),
    strict as `kubernetes-validate --strict` is: an unknown field is an error, not pruned."""
    folder = Path(tool_binary("prometheus/fetch-operator-crds.sh", "ZYRA_OPERATOR_CRDS"))
    crd = yaml.safe_load((folder / f"monitoring.coreos.com_{kind.lower()}s.yaml").read_text())
    [version] = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return _strict(version["schema"]["openAPIV3Schema"])


def _strict(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_strict(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {k: _strict(v) for k, v in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):  # fmt: skip
        strict["additionalProperties"] = False
        strict["properties"].setdefault("apiVersion", {}).setdefault("type", "string")
        strict["properties"].setdefault("kind", {}).setdefault("type", "string")
    return strict


# --- rendering ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_off_by_default_in_every_value_set(name: str) -> None:
    rendered = render(VALUE_SETS[name])
    assert not rendered.of_kind("ServiceMonitor") and not rendered.of_kind("PrometheusRule")
    assert not [c for c in rendered.of_kind("ConfigMap") if c["metadata"]["name"].endswith(
        "-dashboard")]  # fmt: skip


@pytest.mark.parametrize("kind", ["ServiceMonitor", "PrometheusRule"])
def test_resources_are_valid_for_the_prometheus_operators_crds(
    monitored: Rendered, kind: str
) -> None:
    [resource] = monitored.of_kind(kind)
    assert resource["apiVersion"] == "monitoring.coreos.com/v1"
    errors = [f"{list(e.absolute_path)}: {e.message}"
              for e in Draft7Validator(operator_schema(kind)).iter_errors(resource)]  # fmt: skip
    assert not errors
    # The check is a real one: a misspelt field is an error.
    typo = json.loads(json.dumps(resource))
    typo["spec"]["groups" if kind == "PrometheusRule" else "endpoints"][0]["intervall"] = "1m"
    assert list(Draft7Validator(operator_schema(kind)).iter_errors(typo))


def test_the_service_monitor_sends_the_token_the_api_reads(monitored: Rendered) -> None:
    [monitor] = monitored.of_kind("ServiceMonitor")
    api_service = monitored.get("Service", "zyra-zyra-orchestrator")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= api_service["metadata"]["labels"].items()
    assert selector.items() <= api_service["spec"]["selector"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["zyra"]}
    [endpoint] = monitor["spec"]["endpoints"]
    assert endpoint["port"] == api_service["spec"]["ports"][0]["name"]
    assert endpoint["path"] == "/metrics"
    assert endpoint["authorization"]["type"] == "Bearer"
    credentials = endpoint["authorization"]["credentials"]
    token = monitored.secret_data(credentials["name"])[credentials["key"]]
    assert len(token) >= 24
    assert monitored.api_env(lambda var: "x")["ZYRA_METRICS_TOKEN"] == token
    assert "ZYRA_METRICS_PUBLIC" not in monitored.api_env(lambda var: "x")


def test_an_operators_secret_and_public_metrics(monitored: Rendered) -> None:
    rendered = render(sets={**MONITORING, "metrics.existingSecret": "prom-scrape",
                            "metrics.existingSecretKey": "t", "metrics.public": True})  # fmt: skip
    assert not [s for s in rendered.of_kind("Secret") if s["metadata"]["name"].endswith("-metrics")]
    [monitor] = rendered.of_kind("ServiceMonitor")
    assert monitor["spec"]["endpoints"][0]["authorization"]["credentials"] == {
        "name": "prom-scrape", "key": "t"}  # fmt: skip
    [api] = [c for c in rendered.api_pod()["containers"] if c["name"] == "api"]
    [token] = [v for v in api["env"] if v["name"] == "ZYRA_METRICS_TOKEN"]
    assert token["valueFrom"]["secretKeyRef"] == {"name": "prom-scrape", "key": "t"}
    assert rendered.api_env(lambda var: "x")["ZYRA_METRICS_PUBLIC"] == "true"


def test_labels_reach_prometheus_and_grafana_selectors() -> None:
    rendered = render(sets={**MONITORING, "metrics.serviceMonitor.labels.release": "kps",
                            "metrics.prometheusRule.labels.release": "kps"})  # fmt: skip
    [monitor] = rendered.of_kind("ServiceMonitor")
    [rule] = rendered.of_kind("PrometheusRule")
    assert (
        monitor["metadata"]["labels"]["release"] == rule["metadata"]["labels"]["release"] == "kps"
    )


def test_the_dashboard_configmap_carries_the_json_file(monitored: Rendered) -> None:
    config = monitored.get("ConfigMap", "zyra-zyra-orchestrator-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(config["data"]["zyra-orchestrator.json"])
    assert shipped == json.loads(DASHBOARD.read_text())
    assert shipped["uid"] == "zyra-orchestrator"
    panels = [p for p in shipped["panels"] if p["type"] != "row"]
    assert len({p["id"] for p in shipped["panels"]}) == len(shipped["panels"])
    for panel in panels:
        assert panel["targets"] and panel["description"], panel["title"]
        for target in panel["targets"]:
            # Every query is of this release: the dashboard's namespace and job variables.
            for selector in re.findall(r"zyra_[a-z_]+\{([^}]*)\}", target["expr"]):
                assert 'namespace="$namespace"' in selector and 'job="$job"' in selector


def test_every_alert_says_what_it_means_and_what_to_do(monitored: Rendered) -> None:
    found = alerts(monitored)
    assert set(found) == {
        "ZyraJobsStuckQueued", "ZyraJobsQueuedLong", "ZyraJobErrorRatioHigh", "ZyraJobStoreDown",
        "ZyraKubernetesWatchDown", "ZyraKubernetesWatchStale", "ZyraKubernetesWatchRestarting",
        "ZyraCallbacksFailing",
    }  # fmt: skip
    for name, rule in found.items():
        assert rule["labels"]["severity"] in ("critical", "warning"), name
        assert rule["annotations"]["summary"] and len(rule["annotations"]["description"]) > 100
        # Only this release's series: its Service (the ServiceMonitor's job) and namespace.
        for selector in re.findall(r"zyra_[a-z_]+\{([^}]*)\}", rule["expr"]):
            assert 'job="zyra-zyra-orchestrator"' in selector and 'namespace="zyra"' in selector


def test_thresholds_are_values() -> None:
    rendered = render(sets={**MONITORING, "metrics.prometheusRule.stuckQueuedSeconds": 120},
                      extra=["--set-json", "metrics.prometheusRule.errorRatio=0.25"])  # fmt: skip
    found = alerts(rendered)
    assert "> 120\n" in found["ZyraJobsStuckQueued"]["expr"]
    assert ") > 0.25\n" in found["ZyraJobErrorRatioHigh"]["expr"]


# --- promtool -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rules_file(monitored: Rendered, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": rule_groups(monitored)}, sort_keys=False))
    return path


def test_promtool_check_rules_passes(rules_file: Path) -> None:
    done = subprocess.run([promtool(), "check", "rules", str(rules_file)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout, done.stdout


def test_promtool_check_rules_catches_a_broken_rule(rules_file: Path, tmp_path: Path) -> None:
    """The check is a real one: a typo in an expression fails it."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(rules_file.read_text().replace("max by (namespace, job) (", "max by (", 1))
    done = subprocess.run([promtool(), "check", "rules", str(broken)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode != 0
    assert "FAILED" in done.stdout + done.stderr


def test_each_alert_fires_and_stays_quiet_as_the_cases_say(
    monitored: Rendered, rules_file: Path
) -> None:
    cases = yaml.safe_load(ALERT_TESTS.read_text())
    found = alerts(monitored)
    fired, quiet = set(), set()
    for group in cases["tests"]:
        for case in group["alert_rule_test"]:
            name = case["alertname"]
            assert name in found, name
            (fired if case["exp_alerts"] else quiet).add(name)
            for expected in case["exp_alerts"]:  # its description is the rule's own text
                expected["exp_annotations"]["description"] = found[name]["annotations"][
                    "description"]  # fmt: skip
    assert fired == quiet == set(found), "every alert needs a firing and a quiet case"
    test_file = rules_file.parent / "alerts.test.yaml"
    test_file.write_text(yaml.safe_dump(cases, sort_keys=False))
    done = subprocess.run([promtool(), "test", "rules", str(test_file)], capture_output=True,
                          text=True, timeout=300, cwd=rules_file.parent)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_dashboards_queries_are_valid_promql(tmp_path: Path) -> None:
    """Each panel query, Grafana's variables filled in, as a recording rule promtool parses."""
    dashboard = json.loads(DASHBOARD.read_text())
    filled = {"$__rate_interval": "5m", "$namespace": "zyra", "$job": "zyra-zyra-orchestrator"}
    rules = []
    for i, panel in enumerate(p for p in dashboard["panels"] if p["type"] != "row"):
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in filled.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, expr
            rules.append({"record": f"dashboard:panel{i}:{target['refId'].lower()}", "expr": expr})
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool(), "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(rules)} rules found" in done.stdout


# --- the names exist ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def served_names(
    tmp_path_factory: pytest.TempPathFactory,
    inputs: Path,
    redis_server: RedisServer,
    s3_server: S3Server,
) -> Iterator[set[str]]:
    """Every sample name a real API serves at /metrics, with the Kubernetes backend (its
    kubeconfig names a port nothing listens on: the pod watcher retries, a Job create
    fails) after one sync run and one async submission."""
    tmp = tmp_path_factory.mktemp("metrics-names")
    kubeconfig = unreachable_kubeconfig(tmp / "kubeconfig")
    token = "names-" + "x" * 30
    server = start_api(tmp, inputs, ZYRA_BACKEND="kubernetes",
                       ZYRA_REDIS_URL=redis_server.url[:-1] + "12",
                       ZYRA_K8S__KUBECONFIG=str(kubeconfig), ZYRA_METRICS_TOKEN=token,
                       **s3_server.api_env("metrics-names"))  # fmt: skip
    try:
        flags = {"no_coastline": True, "no_borders": True, "no_gridlines": True}
        args = {"input": str(inputs / "field.npy"), "output": "h.png", "width": 40,
                "height": 20, **flags}  # fmt: skip
        with server.client(API_KEY) as client:
            run = {"stage": "visualize", "command": "heatmap", "args": args}
            assert client.post("/cli/run", json=run).json()["status"] == "succeeded"
            client.post("/cli/run", json={**run, "mode": "async"})
        auth = {"Authorization": f"Bearer {token}"}
        deadline = time.monotonic() + 60
        while True:  # until the Job create has been tried (and failed)
            text = httpx.get(f"{server.url}/metrics", headers=auth, timeout=30).text
            names = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
            if "zyra_kubernetes_job_create_duration_seconds_count" in names:
                break
            assert time.monotonic() < deadline, sorted(names)
            time.sleep(0.5)
        yield names
    finally:
        stop_api(server)


def test_every_metric_the_rules_and_dashboard_name_is_served(
    monitored: Rendered, served_names: set[str]
) -> None:
    used = {
        name
        for query in [r["expr"] for r in alerts(monitored).values()]
        + dashboard_queries(json.loads(DASHBOARD.read_text()))
        for name in METRIC.findall(query)
    }
    assert len(used) >= 15
    assert not used - served_names, f"not served at /metrics: {sorted(used - served_names)}"
    in_tests = set(METRIC.findall(ALERT_TESTS.read_text()))
    assert not in_tests - served_names, sorted(in_tests - served_names)
