"""skaffold.yaml: valid for its apiVersion's schema (vendored from Skaffold's module),
and each profile's pieces fit: Dockerfile targets exist, synced files land where the
dev image runs them, and the chart renders with the values Skaffold would set."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from typing import Any

import jsonschema
import pytest
import yaml

from tests.deploy.chart import render
from tests.deploy.dockerfiles import Dockerfile
from tests.services import REPO

SKAFFOLD = yaml.safe_load((REPO / "skaffold.yaml").read_text())
SCHEMA = json.loads((REPO / "tests/deploy/schemas/skaffold-v4beta13.json").read_text())
_TEMPLATE = re.compile(r"\{\{\s*\.IMAGE_(REPO|TAG)_(\w+)\s*\}\}")


def sections() -> dict[str, dict[str, Any]]:
    """build/deploy/portForward of the default config and of each profile."""
    found = {"default": SKAFFOLD}
    found |= {p["name"]: p for p in SKAFFOLD["profiles"]}
    return found


def template_values(release: dict[str, Any], artifacts: list[dict[str, Any]]) -> dict[str, str]:
    """setValueTemplates as Skaffold fills them: IMAGE_REPO_<image> and IMAGE_TAG_<image>
    (the image name with non-word characters as `_`)."""
    images = {re.sub(r"\W", "_", a["image"]): a["image"] for a in artifacts}

    def fill(match: re.Match[str]) -> str:
        assert match[2] in images, f"{match[0]} names no artifact of {list(images.values())}"
        return images[match[2]] if match[1] == "REPO" else "skaffold-test"

    return {k: _TEMPLATE.sub(fill, v) for k, v in release.get("setValueTemplates", {}).items()}


def test_skaffold_yaml_is_valid_for_its_schema() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta13"
    validator = jsonschema.validators.validator_for(SCHEMA)(SCHEMA)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(SKAFFOLD)]
    assert not errors
    # The schema is strict: a misspelt field fails, so the check above means something.
    typo = copy.deepcopy(SKAFFOLD)
    typo["deploy"]["helm"]["releases"][0]["chartPth"] = "charts/zyra-orchestrator"
    assert not validator.is_valid(typo)


@pytest.mark.parametrize("name", list(sections()))
def test_each_artifact_builds_a_stage_that_exists(name: str) -> None:
    for artifact in sections()[name]["build"]["artifacts"]:
        dockerfile = Dockerfile.parse(REPO / artifact["docker"]["dockerfile"])
        assert artifact["docker"]["target"] in dockerfile.stage_names, artifact


def test_dev_profile_syncs_python_files_into_the_reloading_dev_image() -> None:
    dev = sections()["dev"]
    assert {"command": "dev"} in dev["activation"]
    [api] = [a for a in dev["build"]["artifacts"] if a["image"] == "zyra-orchestrator-api"]
    dockerfile = Dockerfile.parse(REPO / api["docker"]["dockerfile"])
    stage = dockerfile.chain(api["docker"]["target"])
    workdir = [i for s in stage for i in s.all("WORKDIR")][-1].value
    env = dockerfile.stage_env(api["docker"]["target"], {}, {})
    assert env.get("ZYRA_RELOAD") == "true", "the dev image must run a reloading server"
    for rule in api["sync"]["manual"]:
        assert rule["dest"] == workdir
        matched = list(REPO.glob(rule["src"]))
        assert matched, f"{rule['src']} matches nothing"


@pytest.mark.parametrize("name", list(sections()))
def test_chart_renders_with_what_skaffold_sets_and_forwards_port_8000(name: str) -> None:
    section = sections()[name]
    [release] = section["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"]).is_dir()
    [values] = [REPO / v for v in release.get("valuesFiles", [])] or [None]
    assert values is None or values.is_file()
    rendered = render(values, sets=template_values(release, section["build"]["artifacts"]),
                      release=release["name"], namespace=release["namespace"])  # fmt: skip
    [deployment] = rendered.of_kind("Deployment")
    images = {c["name"]: c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]}
    # The sync executor beside the API runs the runner image skaffold built too.
    assert images == {"api": "zyra-orchestrator-api:skaffold-test",
                      "sync-executor": "zyra-orchestrator-runner:skaffold-test"}  # fmt: skip
    config = next(c for c in rendered.of_kind("ConfigMap") if "ZYRA_K8S__IMAGE" in c["data"])
    assert config["data"]["ZYRA_K8S__IMAGE"] == "zyra-orchestrator-runner:skaffold-test"
    forwards = section.get("portForward", SKAFFOLD["portForward"])
    for forward in forwards:
        service = rendered.get("Service", forward["resourceName"])
        assert forward["port"] in [p["port"] for p in service["spec"]["ports"]]
        assert forward["namespace"] == release["namespace"]
        assert forward["localPort"] == 8000


def test_prod_profile_pushes_and_uses_the_production_values() -> None:
    prod = sections()["prod"]
    assert prod["build"]["local"]["push"] is True
    targets = {a["image"]: a["docker"]["target"] for a in prod["build"]["artifacts"]}
    assert targets == {"zyra-orchestrator-api": "production", "zyra-orchestrator-runner": "runner"}
    [release] = prod["deploy"]["helm"]["releases"]
    assert release["valuesFiles"] == ["charts/zyra-orchestrator/examples/values-production.yaml"]
    assert not any("sync" in a for a in prod["build"]["artifacts"])


# --- skaffold itself (built by tools/skaffold/build-skaffold.sh) ---


@pytest.fixture(scope="module")
def skaffold_tools() -> dict[str, str]:
    """{"skaffold": path}, built from the Go module proxy (cached; .ci/run builds it)."""
    built = subprocess.run(["bash", str(REPO / "tools/skaffold/build-skaffold.sh")],
                           capture_output=True, text=True, timeout=3600)  # fmt: skip
    assert built.returncode == 0, built.stderr[-3000:]
    return dict(line.split("=", 1) for line in built.stdout.splitlines() if "=" in line)


def skaffold(tools: dict[str, str], *args: str) -> str:
    """skaffold in the repository (no cluster, no registry)."""
    env = {**os.environ, "SKAFFOLD_UPDATE_CHECK": "false", "SKAFFOLD_INTERACTIVE": "false"}
    done = subprocess.run([tools["skaffold"], *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


def profile_args(name: str) -> list[str]:
    return [] if name == "default" else ["-p", name]


@pytest.mark.parametrize("name", list(sections()))
def test_skaffold_reads_the_config_and_applies_the_profile(
    skaffold_tools: dict[str, str], name: str
) -> None:
    resolved = yaml.safe_load(
        skaffold(skaffold_tools, "diagnose", "--yaml-only", *profile_args(name))
    )
    artifacts = {a["image"]: a for a in resolved["build"]["artifacts"]}
    assert set(artifacts) == {"zyra-orchestrator-api", "zyra-orchestrator-runner"}
    [release] = resolved["deploy"]["helm"]["releases"]
    [wanted] = sections()[name]["deploy"]["helm"]["releases"]
    assert (release["namespace"], release.get("valuesFiles", [])) == (
        wanted["namespace"], [str(REPO / f) for f in wanted.get("valuesFiles", [])]
    )  # fmt: skip
    api = artifacts["zyra-orchestrator-api"]
    assert api["docker"]["target"] == ("dev" if name == "dev" else "production")
    synced = api.get("sync", {}).get("manual", [])
    assert [r["src"] for r in synced] == (
        ["api/**/*.py", "runner/**/*.py"] if name == "dev" else []
    )
