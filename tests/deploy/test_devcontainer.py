""".devcontainer/devcontainer.json: valid, and consistent with docker-compose.yml and the script.

devcontainer.json is JSONC (comments allowed, trailing commas not). The upstream schema
(devcontainers/spec, devContainer.base.schema.json) is used when vendored under schemas/
(see schemas/SOURCES.md for why it may not be); the properties this file uses are always
checked against DEVCONTAINER_SUBSET below, written from the same specification.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dockerfile_parse import DockerfileParser

from tests.deploy.envnames import REPO

DEVCONTAINER = REPO / ".devcontainer" / "devcontainer.json"

_COMMAND = {"type": ["string", "array", "object"]}
DEVCONTAINER_SUBSET: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "The Docker Compose flavour of devcontainer.json, the properties used here",
    "type": "object",
    "required": ["dockerComposeFile", "service", "workspaceFolder"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "name": {"type": "string"},
        "dockerComposeFile": {
            "oneOf": [
                {"type": "string"},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        },
        "service": {"type": "string"},
        "runServices": {"type": "array", "items": {"type": "string"}},
        "workspaceFolder": {"type": "string"},
        "overrideCommand": {"type": "boolean"},
        "shutdownAction": {"enum": ["none", "stopCompose"]},
        "remoteUser": {"type": "string"},
        "containerUser": {"type": "string"},
        "remoteEnv": {"type": "object", "additionalProperties": {"type": ["string", "null"]}},
        "containerEnv": {"type": "object", "additionalProperties": {"type": "string"}},
        "forwardPorts": {
            "type": "array",
            "items": {
                "oneOf": [
                    {"type": "integer", "minimum": 0, "maximum": 65535},
                    {"type": "string", "pattern": r"^([a-z0-9-]+):(\d{1,5})$"},
                ]
            },
        },
        "portsAttributes": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "label": {"type": "string"},
                    "onAutoForward": {
                        "enum": [
                            "notify",
                            "openBrowser",
                            "openBrowserOnce",
                            "openPreview",
                            "silent",
                            "ignore",
                        ]
                    },
                    "protocol": {"enum": ["http", "https"]},
                    "elevateIfNeeded": {"type": "boolean"},
                    "requireLocalPort": {"type": "boolean"},
                },
            },
        },
        "initializeCommand": _COMMAND,
        "onCreateCommand": _COMMAND,
        "updateContentCommand": _COMMAND,
        "postCreateCommand": _COMMAND,
        "postStartCommand": _COMMAND,
        "postAttachCommand": _COMMAND,
        "features": {"type": "object"},
        "customizations": {"type": "object"},
    },
}


def strip_jsonc_comments(text: str) -> str:
    """Drop // and /* */ comments outside strings (a string may well hold "http://…")."""
    out, i, in_string = [], 0, False
    while i < len(text):
        char = text[i]
        if in_string:
            out.append(char)
            if char == "\\":
                out.append(text[i + 1])
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
            out.append(char)
        elif text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            assert end >= 0, "unterminated /* comment"
            out.append(" ")
            i = end + 2
            continue
        else:
            out.append(char)
        i += 1
    return "".join(out)


def test_strip_jsonc_comments_keeps_strings() -> None:
    text = '// c\n{"a": "http://x//y", /* b */ "c": "/* not */"} // end'
    assert json.loads(strip_jsonc_comments(text)) == {"a": "http://x//y", "c": "/* not */"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    # json.loads rejects trailing commas, as the devcontainer schema does.
    return json.loads(strip_jsonc_comments(DEVCONTAINER.read_text()))


@pytest.fixture(scope="module")
def compose_file(config: dict[str, Any]) -> Path:
    files = config["dockerComposeFile"]
    files = [files] if isinstance(files, str) else files
    assert len(files) == 1
    return (DEVCONTAINER.parent / files[0]).resolve()


@pytest.fixture(scope="module")
def services(compose_file: Path) -> dict[str, Any]:
    return yaml.safe_load(compose_file.read_text())["services"]


def test_valid_against_the_devcontainer_properties_it_uses(config: dict[str, Any]) -> None:
    jsonschema.Draft202012Validator.check_schema(DEVCONTAINER_SUBSET)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(DEVCONTAINER_SUBSET).iter_errors(config)
    ]
    assert errors == []


def test_uses_the_repository_compose_file(compose_file: Path) -> None:
    assert compose_file == REPO / "docker-compose.yml"


def test_service_and_run_services_exist(config: dict[str, Any], services: dict) -> None:
    assert config["service"] in services
    run = config["runServices"]
    assert config["service"] in run
    assert set(run) <= set(services)
    assert set(services[config["service"]].get("depends_on", {})) <= set(run)


def test_workspace_folder_is_where_the_checkout_is_mounted(
    config: dict[str, Any], services: dict
) -> None:
    volumes = services[config["service"]]["volumes"]
    mounts = [v if isinstance(v, str) else f"{v['source']}:{v['target']}" for v in volumes]
    assert f".:{config['workspaceFolder']}" in [":".join(m.split(":")[:2]) for m in mounts]


def test_post_start_command_runs_the_start_script_in_the_background(
    config: dict[str, Any],
) -> None:
    command = config["postStartCommand"]
    argv = shlex.split(command) if isinstance(command, str) else command
    assert argv == ["scripts/start-api.sh", "--background"]
    # Run in workspaceFolder, i.e. this checkout.
    script = REPO / argv[0]
    assert script.is_file() and os.access(script, os.X_OK)
    # What a fresh clone gets is the mode git records, when the file is tracked.
    staged = subprocess.run(
        ["git", "ls-files", "-s", argv[0]], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    assert staged == "" or staged.startswith("100755 "), staged
    # The container's own command is replaced, so postStartCommand's server is the only one.
    assert config["overrideCommand"] is True


def test_forwards_the_api_and_redis(config: dict[str, Any], services: dict) -> None:
    ports = set()
    for port in config["forwardPorts"]:
        if isinstance(port, str):
            service, _, number = port.partition(":")
            assert service in services, port
            port = int(number)
        ports.add(port)
    assert {8000, 6379} <= ports


def _stage_instructions(dockerfile: Path, target: str) -> list[dict[str, Any]]:
    """The instructions of a stage and of the stages it is built FROM."""
    with dockerfile.open("rb") as f:
        instructions = DockerfileParser(fileobj=f).structure
    stages: dict[str, tuple[str, list[dict[str, Any]]]] = {}
    current: list[dict[str, Any]] = []
    for item in instructions:
        if item["instruction"] == "FROM":
            words = item["value"].split()
            current = []
            name = words[-1].lower() if len(words) >= 3 and words[-2].lower() == "as" else ""
            stages[name] = (words[0].lower(), current)
        else:
            current.append(item)
    chain: list[dict[str, Any]] = []
    while target in stages:
        parent, body = stages[target]
        chain = body + chain
        target = parent
    return chain


def test_remote_user_exists_in_the_dev_image(config: dict[str, Any], services: dict) -> None:
    build = services[config["service"]]["build"]
    dockerfile = REPO / build["context"] / build["dockerfile"]
    assert dockerfile.is_file(), f"{dockerfile.name} is missing"
    stage = _stage_instructions(dockerfile, build["target"])
    runs = " ".join(i["value"] for i in stage if i["instruction"] == "RUN")
    user = config["remoteUser"]
    creates = re.compile(rf"\b(useradd|adduser)\b[^;&|]*\s{re.escape(user)}(\s|$)")
    assert creates.search(runs), f"stage {build['target']!r} creates no user {user!r}"
