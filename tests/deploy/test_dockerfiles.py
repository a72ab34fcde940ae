"""Dockerfile.api, Dockerfile.runner and .dockerignore as files: parsed (dockerfile-parse)
and checked for what the cluster and the other deployment files rely on, and the Debian
packages they apt-get checked to exist in bookworm. The images built from them are
run in tests/deploy/test_images.py (podman) and tests/k8s/ (a real node)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import (
    DOCKERFILE_API,
    DOCKERFILE_RUNNER,
    REPO,
    Dockerfile,
    DockerIgnore,
    default_apt_packages,
    substitute,
)

API = Dockerfile.parse(DOCKERFILE_API)
RUNNER = Dockerfile.parse(DOCKERFILE_RUNNER)
FINAL_STAGES = [(API, "production"), (RUNNER, "runner")]
PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
UID = "10001"
WEB_STACK = ("fastapi", "starlette", "uvicorn", "gunicorn", "kubernetes")


def run_instructions(dockerfile: Dockerfile, stage: str) -> list[str]:
    """The commands of every RUN of a stage and the stages it is built on."""
    return [i.command for s in dockerfile.chain(stage) for i in s.all("RUN")]


def pip_installs(dockerfile: Dockerfile) -> list[str]:
    return [c for s in dockerfile.stages for i in s.all("RUN") if "pip install" in (c := i.command)]


def apt_packages(dockerfile: Dockerfile, stage: str) -> list[str]:
    """Debian packages the stage may install: the default, and the values the
    Dockerfile's comments suggest (`--build-arg RUNTIME_APT_PACKAGES=...`)."""
    found = default_apt_packages(dockerfile, stage)
    for line in dockerfile.path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            for value in re.findall(r"RUNTIME_APT_PACKAGES=(\S+)", line):
                found.update(value.split(","))
    return sorted(found)


# --- the files as text ------------------------------------------------------------------


def test_stages() -> None:
    assert API.stage_names == ["builder", "dev", "production"]
    assert API.stage("dev").base == "builder"
    assert RUNNER.stage_names == ["builder", "runner"]
    # Without --target, docker builds the last stage.
    assert (API.final.name, RUNNER.final.name) == ("production", "runner")


@pytest.mark.parametrize("dockerfile", [API, RUNNER], ids=["api", "runner"])
def test_every_image_starts_from_one_pinned_slim_python(dockerfile: Dockerfile) -> None:
    fresh = [s for s in dockerfile.stages if s.base not in dockerfile.stage_names]
    assert {s.base for s in fresh} == {"${PYTHON_IMAGE}"}  # overridable with --build-arg
    image = dockerfile.base_image(fresh[0])
    assert PINNED_PYTHON.fullmatch(image), f"{image}: not python:3.11.<patch>-slim-bookworm"
    assert "latest" not in image


@pytest.mark.parametrize("dockerfile", [API, RUNNER], ids=["api", "runner"])
def test_hadolint_finds_nothing(dockerfile: Dockerfile) -> None:
    """Hadolint (the Dockerfile linter, with ShellCheck for RUN lines); the two rules
    waived in the files say why at the line."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), "--no-color", str(dockerfile.path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_both_images_use_the_same_python() -> None:
    assert API.global_args["PYTHON_IMAGE"] == RUNNER.global_args["PYTHON_IMAGE"]


@pytest.mark.parametrize(("dockerfile", "stage"), FINAL_STAGES, ids=["api", "runner"])
def test_final_stages_run_as_uid_10001_from_the_builders_venv(
    dockerfile: Dockerfile, stage: str
) -> None:
    final = dockerfile.stage(stage)
    user = final.last("USER")
    assert user is not None and user.value.strip() == f"{UID}:{UID}"  # numeric: runAsNonRoot
    [useradd] = [i.command for i in final.all("RUN") if "useradd" in i.command]
    assert f"groupadd --gid {UID} zyra" in useradd
    assert f"useradd --uid {UID} --gid {UID}" in useradd
    [copy] = final.all("COPY")
    assert substitute(copy.value, dockerfile.global_args) == "--from=builder /opt/venv /opt/venv"
    env = dockerfile.stage_env(stage, {}, {"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert env["PATH"] == "/opt/venv/bin:/usr/local/bin:/usr/bin:/bin"
    assert env["PYTHONUNBUFFERED"] == "1"
    workdir = final.last("WORKDIR")
    assert workdir is not None and workdir.value == "/app"


def test_api_production_serves_with_gunicorn_on_8000_with_a_healthcheck() -> None:
    gunicorn = ["gunicorn", "-c", "python:api.gunicorn_conf", "api.server:create_app()"]
    assert API.exec_form("production", "CMD") == gunicorn
    expose = API.stage("production").last("EXPOSE")
    assert expose is not None and expose.value.strip() == "8000"
    env = API.stage_env("production", {}, {"PATH": "/usr/bin"})
    assert (env["ZYRA_HOST"], env["ZYRA_PORT"]) == ("0.0.0.0", "8000")
    assert env["ZYRA_DATA_DIR"] == "/var/lib/zyra"
    data_dir = f"install -d -o {UID} -g {UID} /var/lib/zyra"  # writable by the user
    assert any(data_dir in c for c in run_instructions(API, "production"))
    probe = API.exec_form("production", "HEALTHCHECK")
    assert probe[:2] == ["python", "-c"]  # no curl in a slim image
    assert "urllib.request" in probe[2] and "/healthz" in probe[2]
    healthcheck = API.stage("production").last("HEALTHCHECK")
    assert healthcheck is not None
    assert set(healthcheck.split_flags()[0]) == {"interval", "timeout", "start-period", "retries"}


def test_api_dev_stage_runs_the_start_script_with_reload_as_zyra() -> None:
    assert API.exec_form("dev", "CMD") == ["scripts/start-api.sh"]
    script = REPO / "scripts" / "start-api.sh"
    assert script.is_file() and script.stat().st_mode & 0o111, f"{script}: not executable"
    env = API.stage_env("dev", {}, {"PATH": "/usr/bin"})
    assert env["ZYRA_RELOAD"] == "true" and env["ZYRA_HOST"] == "0.0.0.0"
    assert env["PATH"].startswith("/opt/venv/bin:")
    # By name: a dev container (remoteUser "zyra") may give it the developer's uid.
    user = API.stage("dev").last("USER")
    assert user is not None and user.value.strip() == "zyra"
    [install] = [c for c in run_instructions(API, "dev") if "-e '.[api,dev]'" in c]
    assert "pip install -c constraints.txt" in install
    # Files synced into the running container are written as that user.
    assert any("install -d -o zyra -g zyra /app /app/api /app/runner" in c
               for c in run_instructions(API, "dev"))  # fmt: skip
    copies = {i.split_flags()[1]: i.split_flags()[0] for i in API.stage("dev").all("COPY")}
    for source in ("api/ api/", "runner/ runner/"):
        assert copies[source].get("chown") == "zyra:zyra", source


@pytest.mark.parametrize("dockerfile", [API, RUNNER], ids=["api", "runner"])
def test_every_pip_install_uses_the_constraints(dockerfile: Dockerfile) -> None:
    installs = pip_installs(dockerfile)
    assert installs
    for command in installs:
        assert "-c constraints.txt" in command, command


def test_the_runner_installs_no_web_stack_and_no_api_code() -> None:
    for command in pip_installs(RUNNER):
        words = command.split("pip install", 1)[1].split("&&")[0].split()
        targets = [w for w in words if not w.startswith("-") and w != "constraints.txt"]
        assert targets == ["."], command  # the project's base dependencies, no extra
    text = "\n".join(run_instructions(RUNNER, "runner"))
    for name in WEB_STACK:
        assert name not in text
    sources = [i.value for s in RUNNER.stages for i in s.all("COPY") if "--from" not in i.value]
    assert not any(re.search(r"(^|\s)api/?(\s|$)", v) for v in sources), sources


@pytest.mark.parametrize("dockerfile", [API, RUNNER], ids=["api", "runner"])
def test_every_copy_source_is_in_the_build_context(dockerfile: Dockerfile) -> None:
    ignore = DockerIgnore.of_repo()
    context = set(ignore.context_files())
    for stage in dockerfile.stages:
        for insn in stage.all("COPY"):
            flags, rest = insn.split_flags()
            if "from" in flags:
                assert flags["from"] in dockerfile.stage_names
                continue
            for source in rest.split()[:-1]:
                path = REPO / source
                assert path.exists(), f"line {insn.line}: COPY {source}: no such file"
                if path.is_dir():
                    inside = [f for f in context if f.startswith(source.rstrip("/") + "/")]
                    assert inside, f"line {insn.line}: COPY {source}: left out by .dockerignore"
                else:
                    assert source in context, f"line {insn.line}: COPY {source}: left out"


def test_dockerignore_keeps_the_context_small_and_without_secrets() -> None:
    ignore = DockerIgnore.of_repo()
    files = list(ignore.context_files())
    needed = {"pyproject.toml", "README.md", "constraints.txt", "api/server.py",
              "api/gunicorn_conf.py", "runner/__main__.py", "scripts/start-api.sh"}  # fmt: skip
    assert needed <= set(files)
    assert {f.split("/")[0] for f in files} <= {
        "pyproject.toml", "README.md", "constraints.txt", "api", "runner", "scripts", "tests"
    }  # fmt: skip
    assert not [f for f in files if "__pycache__" in f or f.endswith((".pyc", ".egg-info"))]
    size = sum((REPO / f).stat().st_size for f in files)
    assert size < 5_000_000, f"build context of {size} bytes"
    for secret in (".env", ".env.local", "api/.env", "tests/e2e/.env.test", "kubeconfig",
                   "id_rsa", "tests/k8s/ca.key", "scripts/tls.pem", ".git/config",
                   ".venv/bin/python", "docs/architecture.md", "charts/x/values.yaml"):  # fmt: skip
        assert ignore.excluded(secret), secret


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        ("*", "a/b.txt", True),
        ("*\n!a", "a/b.txt", False),
        ("*\n!a/\n**/*.pyc", "a/b/c.pyc", True),
        ("**/*.go", "x.go", True),
        ("**/*.go", "a/b/x.go", True),
        ("*/temp*", "somedir/temporary.txt", True),
        ("*/temp*", "somedir/sub/temporary.txt", False),
        ("temp?", "tempa", True),
        ("temp?", "tempa/x", True),  # a folder matched: everything in it
        ("*.md\n!README*.md\nREADME-secret.md", "README-secret.md", True),
        ("*.md\n!README*.md\nREADME-secret.md", "README.md", False),
        ("docs/**", "docs", False),
        ("docs/**", "docs/a/b", True),
        ("/build", "build/x", True),
        ("*.py[cod]", "x.pyc", True),
        ("*.py[cod]", "x.pyx", False),
    ],
)
def test_dockerignore_matching_follows_docker(patterns: str, path: str, excluded: bool) -> None:
    """Docker's own examples (docs.docker.com, .dockerignore) and its Go matcher's rules."""
    assert DockerIgnore.parse(patterns).excluded(path) is excluded


@pytest.mark.parametrize(("dockerfile", "stage"), FINAL_STAGES, ids=["api", "runner"])
def test_system_packages_are_installed_the_slim_way_and_exist_in_bookworm(
    dockerfile: Dockerfile, stage: str
) -> None:
    apt_lines = [c for c in run_instructions(dockerfile, stage) if "apt-get install" in c]
    for line in apt_lines:
        assert "--no-install-recommends" in line and "rm -rf /var/lib/apt/lists/*" in line
    assert not [c for c in run_instructions(dockerfile, "builder") if "apt-get" in c]
    packages = apt_packages(dockerfile, stage)
    if not packages:
        return
    if shutil.which("apt-cache") is None:
        pytest.skip("apt-cache is not installed")
    sources = subprocess.run(["apt-cache", "policy"], capture_output=True, text=True).stdout
    if "bookworm" not in sources:
        pytest.skip("this machine's apt sources are not Debian bookworm's (apt-get update?)")
    for package in packages:
        policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True)
        candidate = re.search(r"Candidate: (\S+)", policy.stdout)
        assert candidate and candidate[1] != "(none)", f"{package}: not in bookworm"
        assert "bookworm" in policy.stdout, policy.stdout
