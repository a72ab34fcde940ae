"""docker-compose.yml: valid Compose, and what a developer running `docker compose up` relies on.

No Docker engine here. The file is loaded by Docker Compose's own loader (compose-go, built from
the Go module proxy by tools/compose/build-compose-check.sh and cached), checked against the
Compose specification's JSON schema (vendored from compose-go, see schemas/SOURCES.md) after
Compose-style interpolation, and by yamllint with the repository's .yamllint.yaml.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.deploy.envnames import REPO, is_known_env
from tests.services import tool_binary

COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, $VAR; $$ is
# a literal dollar.
INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def interpolate(text: str, env: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["plain"]
        op, arg = match["op"] or "", match["arg"] or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if value or (op == "-" and value is not None) else arg
        if op in (":?", "?"):
            if value is None or (op == ":?" and not value):
                raise KeyError(f"{name} is required: {arg}")
            return value
        if op == ":+":
            return arg if value else ""
        return value or ""

    return INTERPOLATION.sub(replace, text)


def variables(text: str) -> dict[str, bool]:
    """Each interpolated variable and whether every use of it has a default."""
    found: dict[str, bool] = {}
    for match in INTERPOLATION.finditer(text):
        name = match["braced"] or match["plain"]
        if name:
            found[name] = found.get(name, True) and (match["op"] or "") in (":-", "-")
    return found


def load(env: dict[str, str]) -> dict[str, Any]:
    return yaml.safe_load(interpolate(COMPOSE.read_text(), env))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """As Compose sees it with a .env made from .env.example."""
    return load(read_env_file(ENV_EXAMPLE))


@pytest.fixture(scope="module")
def api(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]["api"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def published(service: dict[str, Any]) -> set[tuple[int, int]]:
    """(host port, container port) of each published port (host 0: an ephemeral one)."""
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            ports.add((int(port.get("published", 0)), int(port["target"])))
            continue
        spec = str(port).split("/")[0]  # [ip:][host:]container[/protocol]
        if spec.startswith("["):  # an IPv6 address
            spec = spec.partition("]:")[2]
        elif spec.count(":") == 2:
            spec = spec.partition(":")[2]
        host, _, container = spec.rpartition(":")
        ports.add((int(host or 0), int(container)))
    return ports


def compose_check_binary() -> str:
    """Docker Compose's loader as a small binary (tools/compose), cached by its sources."""
    return tool_binary("compose/build-compose-check.sh", "ZYRA_COMPOSE_CHECK_BIN")


@pytest.fixture(scope="module")
def compose_check() -> str:
    return compose_check_binary()


def docker_compose_config(
    binary: str, folder: Path, dotenv: Path | None, *profiles: str
) -> tuple[dict[str, Any], str]:
    """What `docker compose config --format json` says, in a copy of the project folder."""
    folder.mkdir()
    shutil.copy(COMPOSE, folder / COMPOSE.name)
    if dotenv is not None:
        shutil.copy(dotenv, folder / ".env")
    args = [arg for profile in profiles for arg in ("--profile", profile)]
    result = subprocess.run(
        [binary, *args, COMPOSE.name], cwd=folder, capture_output=True, text=True,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(folder)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), result.stderr


def test_docker_compose_loads_it_without_a_dot_env(compose_check: str, tmp_path: Path) -> None:
    project, warnings = docker_compose_config(compose_check, tmp_path / "p", None)
    assert warnings == ""  # e.g. no "variable is not set" warnings
    assert sorted(project["services"]) == ["api", "minio", "redis"]  # no dev tools by default
    api = project["services"]["api"]
    assert api["environment"]["ZYRA_API_KEYS"] == "dev:local-dev-key"  # as `make run`
    assert api["env_file"] == [{"path": str(tmp_path / "p" / ".env"), "required": False}]
    assert {name: d["condition"] for name, d in api["depends_on"].items()} == {
        "redis": "service_healthy",
        "minio": "service_healthy",
    }


def test_docker_compose_reads_secrets_from_dot_env(compose_check: str, tmp_path: Path) -> None:
    dotenv = tmp_path / "dotenv"
    own = ENV_EXAMPLE.read_text().replace("dev:local-dev-key", "ops:own-key-123")
    dotenv.write_text(own.replace("MINIO_ROOT_USER=zyra-dev-admin", "MINIO_ROOT_USER=own-admin"))
    project, warnings = docker_compose_config(compose_check, tmp_path / "p", dotenv)
    assert warnings == ""
    example = read_env_file(dotenv)
    api, minio = project["services"]["api"], project["services"]["minio"]
    assert api["environment"]["ZYRA_API_KEYS"] == "ops:own-key-123"
    assert api["environment"]["AWS_ACCESS_KEY_ID"] == example["MINIO_ROOT_USER"] == "own-admin"
    assert minio["environment"]["MINIO_ROOT_PASSWORD"] == example["MINIO_ROOT_PASSWORD"]


def test_docker_compose_dev_profile_adds_only_tools(compose_check: str, tmp_path: Path) -> None:
    project, _ = docker_compose_config(compose_check, tmp_path / "p", None, "dev")
    assert sorted(project["services"]) == ["api", "mc", "minio", "redis"]


def test_valid_against_the_compose_specification() -> None:
    schema = json.loads(SCHEMA.read_text())
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    for env in (read_env_file(ENV_EXAMPLE), {}):  # with .env, and with none
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in validator.iter_errors(load(env))
        ]
        assert errors == []


def test_yamllint_with_the_repository_config() -> None:
    config = YamlLintConfig(file=str(REPO / ".yamllint.yaml"))
    for path in (COMPOSE, REPO / ".yamllint.yaml"):
        problems = [
            f"{path.name}:{p.line}:{p.column} {p.rule} {p.message}"
            for p in linter.run(path.read_text(), config, str(path))
        ]
        assert problems == []


def test_env_example_covers_every_interpolated_variable_and_each_has_a_default() -> None:
    used = variables(COMPOSE.read_text())
    assert used, "the compose file interpolates nothing?"
    assert sorted(set(used) - set(read_env_file(ENV_EXAMPLE))) == []
    # Without a .env file every value still resolves (a missing .env must not break `up`).
    assert [name for name, has_default in used.items() if not has_default] == []


def test_env_file_is_optional_everywhere(compose: dict[str, Any]) -> None:
    entries = {name: service.get("env_file", []) for name, service in compose["services"].items()}
    assert entries["api"], "the api's secrets come from .env"
    for name, files in entries.items():
        for entry in [files] if isinstance(files, str | dict) else files:
            assert isinstance(entry, dict) and entry.get("required") is False, (
                f"{name}: env_file {entry!r} must use the long form with required: false"
            )
            assert entry["path"] == ".env"


def test_api_waits_for_healthy_redis_and_minio(compose: dict[str, Any], api: dict) -> None:
    depends = api["depends_on"]
    for dependency in ("redis", "minio"):
        assert depends[dependency]["condition"] == "service_healthy"
        check = compose["services"][dependency]["healthcheck"]
        assert check.get("disable") is not True and check["test"]
    assert "redis-cli" in compose["services"]["redis"]["healthcheck"]["test"]


def test_services_the_api_needs_start_without_a_profile(compose: dict[str, Any], api) -> None:
    services = compose["services"]
    for name in ["api", *api["depends_on"]]:
        assert "profiles" not in services[name], f"`docker compose up` would not start {name}"
    profiled = {n: s["profiles"] for n, s in services.items() if "profiles" in s}
    assert profiled, "dev-only tools belong to the dev profile"
    assert all(profiles == ["dev"] for profiles in profiled.values())


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "build" in service:
            continue
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image.rpartition("/")[2] else ""
        assert "@sha256:" in image or (tag and tag != "latest"), f"{name}: {image} is not pinned"


def test_ports_8000_and_6379_are_published(compose: dict[str, Any], api: dict) -> None:
    assert (8000, 8000) in published(api)
    assert (6379, 6379) in published(compose["services"]["redis"])


def test_api_is_the_dev_stage_of_dockerfile_api_with_the_source_mounted(api: dict) -> None:
    build = api["build"]
    assert (build["context"], build["dockerfile"], build["target"]) == (
        ".",
        "Dockerfile.api",
        "dev",
    )
    dockerfile = REPO / build["context"] / build["dockerfile"]
    assert dockerfile.is_file(), "Dockerfile.api is missing"
    with dockerfile.open("rb") as f:
        instructions = DockerfileParser(fileobj=f).structure
    stages = [
        words[-1].lower()
        for words in (i["value"].split() for i in instructions if i["instruction"] == "FROM")
        if len(words) >= 3 and words[-2].lower() == "as"
    ]
    assert build["target"] in stages
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in api["volumes"]]
    assert any(m.split(":")[:2] == [".", "/app"] for m in mounts)


def test_api_environment_names_only_real_settings(api: dict) -> None:
    env = environment(api)
    unknown = sorted(name for name in env if not is_known_env(name))
    assert unknown == [], "not read by api.settings.Settings nor scripts/start-api.sh"
    example = read_env_file(ENV_EXAMPLE)
    assert sorted(n for n in example if n.startswith("ZYRA_") and not is_known_env(n)) == []


def test_api_is_wired_to_the_stack(compose: dict[str, Any], api: dict) -> None:
    env = environment(api)
    assert env["ZYRA_HOST"] == "0.0.0.0"  # reachable from outside its container
    assert env["ZYRA_PORT"] == "8000"
    assert env["ZYRA_BACKEND"] == "local"
    assert env["ZYRA_REDIS_URL"].startswith("redis://redis:6379/")
    assert env["ZYRA_STORAGE"] == "s3" and env["ZYRA_S3_BUCKET"]
    assert env["ZYRA_S3_ENDPOINT_URL"] == "http://minio:9000"
    test = " ".join(api["healthcheck"]["test"])
    assert "/healthz" in test and ":8000" in test


@pytest.mark.parametrize("dotenv", ["with .env.example", "without .env"])
def test_api_credentials_match_minios(dotenv: str) -> None:
    services = load(read_env_file(ENV_EXAMPLE) if dotenv == "with .env.example" else {})["services"]
    api_env, minio_env = environment(services["api"]), environment(services["minio"])
    assert api_env["AWS_ACCESS_KEY_ID"] == minio_env["MINIO_ROOT_USER"] != ""
    assert api_env["AWS_SECRET_ACCESS_KEY"] == minio_env["MINIO_ROOT_PASSWORD"]
    assert len(minio_env["MINIO_ROOT_PASSWORD"]) >= 8  # MinIO refuses shorter ones


def test_dot_env_is_git_ignored_and_the_example_is_not() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", ".env", ".env.example"],
        cwd=REPO, capture_output=True, text=True,
    )  # fmt: skip
    assert ignored.stdout.split() == [".env"]
