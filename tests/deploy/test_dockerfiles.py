"""Dockerfile.api, Dockerfile.runner and .dockerignore.

There is no Docker engine here, so: the files are parsed (dockerfile-parse) and checked
for what the cluster and the other deployment files rely on; then each `builder` stage
(and the api's `dev` stage) is replayed for real on this machine, with the Dockerfile's
own ARG/ENV values except the venv location (a `--build-arg VENV=...` override), in a
copy of the build context .dockerignore lets through, and the virtualenvs they make are
used: a real job through the runner's, the production CMD and HEALTHCHECK through the
API's. The Debian packages the images need at run time are checked against what the
slim base image ships plus what the Dockerfiles apt-get (which must exist in bookworm).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.dockerfiles import (
    DOCKERFILE_API,
    DOCKERFILE_RUNNER,
    REPO,
    Dockerfile,
    DockerIgnore,
    Replay,
    copy_context,
    is_system_command,
    resolve_args,
    substitute,
)
from tests.deploy.layer_cache import LayerCache, work_folder
from tests.e2e.conftest import API_KEY
from tests.e2e.gunicorn_server import start_gunicorn

API = Dockerfile.parse(DOCKERFILE_API)
RUNNER = Dockerfile.parse(DOCKERFILE_RUNNER)
FINAL_STAGES = [(API, "production"), (RUNNER, "runner")]
PINNED_PYTHON = re.compile(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?")
UID = "10001"
WEB_STACK = ("fastapi", "starlette", "uvicorn", "gunicorn", "kubernetes")
MAP_FLAGS = ["--no-coastline", "--no-borders", "--no-gridlines"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# What python:3.11-slim-bookworm ships that a shared library can come from: Debian
# bookworm-slim's own libraries and the Python image's run-time dependencies.
SLIM_IMAGE_PACKAGES = frozenset({
    # debian:bookworm-slim
    "libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libbz2-1.0", "liblzma5", "libzstd1",
    "liblz4-1", "libcrypt1", "libselinux1", "libpcre2-8-0", "libacl1", "libattr1", "libblkid1",
    "libmount1", "libuuid1", "libsmartcols1", "libudev1", "libsystemd0", "libcap2", "libcap-ng0",
    "libaudit1", "libgcrypt20", "libgpg-error0", "libgmp10", "libgnutls30", "libhogweed6",
    "libnettle8", "libidn2-0", "libunistring2", "libp11-kit0", "libtasn1-6", "libffi8",
    "libtinfo6", "libdb5.3", "libseccomp2", "libxxhash0", "libmd0", "libpam0g", "libsemanage2",
    "libsepol2", "libapt-pkg6.0",
    # what the python image adds for its interpreter
    "libssl3", "libsqlite3-0", "libexpat1", "libncursesw6", "libreadline8", "libgdbm6",
    "ca-certificates", "netbase", "tzdata",
})  # fmt: skip
# Modules whose import loads native code the venv does not link statically (ctypes,
# dlopen), or that a command loads late: imported before /proc/self/maps is read.
RUNNER_MODULES = (
    "eccodes", "zyra.cli", "runner.__main__", "runner.zygote", "cartopy.crs", "rasterio",
    "netCDF4", "pygrib", "cfgrib", "pyproj", "shapely.geometry", "matplotlib.pyplot",
    "scipy.interpolate", "PIL.Image", "xarray", "rioxarray", "boto3", "redis", "yaml",
)  # fmt: skip
API_MODULES = (
    *RUNNER_MODULES, "api.server", "api.gunicorn_conf", "uvloop", "httptools", "websockets",
    "watchfiles", "gunicorn.app.wsgiapp", "kubernetes.client", "pydantic_settings",
)  # fmt: skip


def run_instructions(dockerfile: Dockerfile, stage: str) -> list[str]:
    """The commands of every RUN of a stage and the stages it is built on."""
    return [i.command for s in dockerfile.chain(stage) for i in s.all("RUN")]


def pip_installs(dockerfile: Dockerfile) -> list[str]:
    return [c for s in dockerfile.stages for i in s.all("RUN") if "pip install" in (c := i.command)]


def default_apt_packages(dockerfile: Dockerfile, stage: str) -> set[str]:
    """What a stage apt-gets without build args: its RUNTIME_APT_PACKAGES default."""
    found: set[str] = set()
    for insn in dockerfile.stage(stage).all("ARG"):
        found.update(resolve_args(insn.value, {}).get("RUNTIME_APT_PACKAGES", "").split())
    return found


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


# --- the builder stages replayed ----------------------------------------------------------


@dataclass
class Built:
    dockerfile: Dockerfile
    replay: Replay
    venv: Path
    seconds: float

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self, stage: str, **extra: str) -> dict[str, str]:
        """The ENV of an image stage, built with this venv."""
        env = self.dockerfile.stage_env(
            stage, {"VENV": str(self.venv)}, {"PATH": "/usr/local/bin:/usr/bin:/bin"}
        )
        return {**env, "HOME": str(self.replay.rootfs / "home" / "zyra"), **extra}

    def workdir(self) -> Path:
        """/app of the image: not the repository, so nothing imports from a checkout."""
        folder = self.replay.host_path("/app")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def python_run(self, code: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.python), "-c", code],
            cwd=self.workdir(),
            env={"PATH": f"{self.venv}/bin:/usr/bin:/bin", "HOME": str(self.workdir()), **env},
            capture_output=True,
            text=True,
            timeout=300,
        )


def replay(dockerfile: Dockerfile, stage: str) -> Iterator[Built]:
    """The stage replayed, with the layer cache: a warm run puts the dependency layer
    back (keyed by pyproject.toml, README.md, constraints.txt and the RUN line) and
    runs the rest. The venv (about 1 GB) goes at the end."""
    with work_folder(dockerfile.path.name) as folder:
        context = folder / "context"
        copy_context(context)
        venv = folder / "venv"
        replayed = Replay(
            dockerfile, context, folder / "rootfs", {"VENV": str(venv)}, cache=LayerCache()
        )
        started = time.monotonic()
        replayed.run_stage(stage)
        yield Built(dockerfile, replayed, venv, time.monotonic() - started)


def timings(built: Built) -> str:
    return ", ".join(
        f"line {t.line}: {t.seconds:.0f}s{' (cached)' if t.cached else ''}"
        for t in built.replay.timings
    )


# Replays install the whole stack with pip: minutes when pip's cache is cold.
SLOW = (pytest.mark.zyra, pytest.mark.timeout(1800))


@pytest.fixture(scope="module")
def runner_build() -> Iterator[Built]:
    yield from replay(RUNNER, "builder")


@pytest.fixture(scope="module")
def api_build() -> Iterator[Built]:
    yield from replay(API, "builder")


@pytest.fixture(scope="module")
def api_dev_build(api_build: Built) -> Built:
    """The dev stage, on top of the builder (as `FROM builder AS dev`): it changes the
    builder's venv, so the tests of the production venv come first in this file."""
    started = time.monotonic()
    api_build.replay.run_stage("dev")
    return Built(API, api_build.replay, api_build.venv, time.monotonic() - started)


@pytest.mark.parametrize(
    "which", [pytest.param(f, marks=SLOW) for f in ("runner_build", "api_build")]
)
def test_builder_replay_made_a_venv_at_the_build_arg_location(
    request: pytest.FixtureRequest, which: str
) -> None:
    built: Built = request.getfixturevalue(which)
    print(f"{which}: {built.seconds:.0f}s ({timings(built)})")
    assert built.python.exists()
    assert built.replay.skipped == []  # builders administer nothing of the OS
    check = subprocess.run(
        [str(built.python), "-m", "pip", "check"], capture_output=True, text=True, timeout=300
    )
    assert check.returncode == 0, check.stdout + check.stderr
    where = built.python_run("import runner, zyra; print(runner.__file__)")
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(built.venv / "lib")), "runner not from the venv"


@pytest.mark.zyra
@pytest.mark.timeout(1800)
def test_runner_venv_runs_a_real_job(runner_build: Built, inputs: Path, tmp_path: Path) -> None:
    job_id = "0123456789abcdef0123456789abcdef"
    spec = {
        "job_id": job_id,
        "argv": ["visualize", "heatmap", "--input", str(inputs / "field.npy"),
                 "--output", "heat.png", "--width", "120", "--height", "60", *MAP_FLAGS],
        "timeout_s": 120,
        "env": {},
        "work_root": str(tmp_path / "work" / job_id),
        # The API lets commands read its allowed path prefixes; nothing else of the machine.
        "sandbox": {"mode": "required", "read_paths": [str(inputs)]},
    }  # fmt: skip
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps(spec))
    storage = tmp_path / "storage"
    done = subprocess.run(
        # The image's CMD, with the spec from a file instead of ZYRA_JOB_SPEC.
        [*RUNNER.exec_form("runner", "CMD"), "--spec", str(spec_file)],
        cwd=runner_build.workdir(),
        env=runner_build.env(
            "runner",
            ZYRA_EVENT_DB=str(tmp_path / "events.sqlite3"),
            ZYRA_STORAGE="local",
            ZYRA_STORAGE_DIR=str(storage),
        ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "heat.png" in done.stderr  # the command's own log line, echoed
    png = storage / "results" / job_id / "heat.png"
    assert png.read_bytes().startswith(PNG_MAGIC)


@pytest.mark.zyra
@pytest.mark.timeout(1800)
def test_runner_venv_has_no_api_code_nor_server_stack(runner_build: Built) -> None:
    for module in ("api", "gunicorn", "kubernetes", "pydantic_settings"):
        imported = runner_build.python_run(f"import {module}")
        assert "ModuleNotFoundError" in imported.stderr, f"{module} is in the runner image"


@pytest.mark.zyra
@pytest.mark.timeout(1800)
def test_runner_venv_has_no_web_framework(runner_build: Built) -> None:
    for module in ("fastapi", "starlette", "uvicorn"):
        imported = runner_build.python_run(f"import {module}")
        assert "ModuleNotFoundError" in imported.stderr, f"{module} is in the runner image"


def shared_libraries(built: Built, modules: tuple[str, ...]) -> dict[Path, str]:
    """Every shared library from outside the venv (and outside the base Python) that the
    venv's ELF files link to (ldd) or that importing `modules` maps (dlopen, ctypes): each
    with what asked for it. Libraries ldd cannot find must be vendored inside the venv."""
    venv, base = str(built.venv.resolve()), str(Path(sys.base_prefix).resolve())
    found: dict[Path, str] = {}
    vendored = {p.name for p in built.venv.rglob("*.so*")}
    missing = []
    elf_files = [p for p in built.venv.rglob("*.so*") if p.is_file()]
    for start in range(0, len(elf_files), 64):
        batch = elf_files[start : start + 64]
        out = subprocess.run(["ldd", *map(str, batch)], capture_output=True, text=True).stdout
        owner = ""
        for line in out.splitlines():
            if not line.startswith("\t"):
                owner = line.rstrip(":")
                continue
            name, _, target = line.strip().partition(" => ")
            if target.startswith("not found"):
                if name not in vendored:
                    missing.append(f"{name} (needed by {owner})")
            elif target.startswith("/"):
                path = Path(target.split(" (")[0])
                if not str(path.resolve()).startswith((venv, base)):
                    found.setdefault(path, owner)
    assert not missing, f"libraries found nowhere: {missing}"
    code = (
        "import importlib, sys\n"
        f"for m in {list(modules)!r}: importlib.import_module(m)\n"
        "print('\\n'.join(sorted({l.split()[-1] for l in open('/proc/self/maps') "
        "if len(l.split()) >= 6 and '.so' in l.split()[-1]})))\n"
    )
    loaded = built.python_run(code, MPLBACKEND="Agg")
    assert loaded.returncode == 0, loaded.stderr
    for line in loaded.stdout.splitlines():
        path = Path(line)
        if not str(path.resolve()).startswith((venv, base)):
            found.setdefault(path, "import of the modules")
    return found


def debian_package(path: Path) -> str | None:
    """The Debian package that ships `path` (usr-merged paths tried both ways)."""
    text = str(path)
    candidates = [text, str(path.resolve())]
    for candidate in list(candidates):
        if candidate.startswith("/usr/lib/"):
            candidates.append(candidate[len("/usr") :])
        elif candidate.startswith("/lib/"):
            candidates.append("/usr" + candidate)
    for candidate in candidates:
        owner = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        if owner.returncode == 0:
            return owner.stdout.split(":")[0].split(",")[0].strip()
    return None


@pytest.mark.zyra
@pytest.mark.timeout(1800)
@pytest.mark.parametrize(
    ("which", "stage", "modules"),
    [("runner_build", "runner", RUNNER_MODULES), ("api_build", "production", API_MODULES)],
    ids=["runner", "api"],
)
def test_shared_libraries_come_from_the_slim_image_or_the_apt_line(
    request: pytest.FixtureRequest, which: str, stage: str, modules: tuple[str, ...]
) -> None:
    if shutil.which("dpkg-query") is None or shutil.which("ldd") is None:
        pytest.skip("needs a Debian machine (dpkg-query, ldd)")
    built: Built = request.getfixturevalue(which)
    allowed = SLIM_IMAGE_PACKAGES | default_apt_packages(built.dockerfile, stage)
    outside = {
        str(path): (debian_package(path), asked_by)
        for path, asked_by in shared_libraries(built, modules).items()
    }
    unknown = {p: v for p, v in outside.items() if v[0] not in allowed}
    assert not unknown, f"not in {built.dockerfile.path.name}'s {stage} image: {unknown}"


@pytest.mark.zyra
@pytest.mark.timeout(1800)
def test_api_venv_passes_gunicorn_check_config_with_the_image_cmd(
    api_build: Built, tmp_path: Path
) -> None:
    cmd = API.exec_form("production", "CMD")
    checked = subprocess.run(
        [str(api_build.venv / "bin" / cmd[0]), "--check-config", *cmd[1:]],
        cwd=api_build.workdir(),
        env=api_build.env("production", ZYRA_DATA_DIR=str(tmp_path / "data")),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.zyra
@pytest.mark.timeout(1800)
def test_api_venv_serves_like_the_image(api_build: Built, inputs: Path, tmp_path: Path) -> None:
    # Only the image's ENV, and what a deployment sets.
    env = api_build.env(
        "production",
        ZYRA_API_KEYS=f"e2e:{API_KEY}",
        ZYRA_DATA_DIR=str(tmp_path / "data"),
        ZYRA_ALLOWED_PATH_PREFIXES=str(inputs),
    )
    server = start_gunicorn(API.exec_form("production", "CMD"), env, tmp_path)
    try:
        assert len(server.workers()) == 1  # the local backend
        with server.client() as client:
            response = client.post(
                "/cli/run",
                json={"stage": "visualize", "command": "heatmap", "mode": "sync",
                      "args": {"input": str(inputs / "field.npy"), "output": "heat.png",
                               "no_coastline": True, "no_borders": True, "no_gridlines": True}},
            )  # fmt: skip
            assert response.status_code == 200, response.text
            assert response.json()["exit_code"] == 0, response.json()["stderr"]
        port = server.url.rsplit(":", 1)[1]
        healthy = subprocess.run(
            API.exec_form("production", "HEALTHCHECK"),
            env=api_build.env("production", ZYRA_PORT=port),
            timeout=30,
        )
        assert healthy.returncode == 0
    finally:
        server.stop()


@pytest.mark.zyra
@pytest.mark.timeout(1800)
def test_dev_stage_is_editable_with_the_dev_tools(api_dev_build: Built) -> None:
    built = api_dev_build
    print(f"dev stage: {built.seconds:.0f}s")
    skipped = [i.command for i in built.replay.skipped]
    assert len(skipped) == 1 and skipped[0].startswith("groupadd") and is_system_command(skipped[0])
    app = built.replay.host_path("/app")
    where = built.python_run("import api.server; print(api.server.__file__)")
    assert where.stdout.strip() == str(app / "api" / "server.py"), where.stderr
    # A file synced into /app/api is the package's at once (what reload relies on).
    (app / "api" / "_synced_probe.py").write_text("VALUE = 42\n")
    synced = built.python_run("from api._synced_probe import VALUE; print(VALUE)")
    assert synced.stdout.strip() == "42", synced.stderr
    for tool in ("pytest", "ruff"):
        version = subprocess.run(
            [tool, "--version"], env=built.env("dev"), capture_output=True, text=True
        )
        assert version.returncode == 0, f"{tool}: {version.stderr}"
    check = subprocess.run(
        [str(built.python), "-m", "pip", "check"], capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout
    script = app / "scripts" / "start-api.sh"
    assert script.is_file() and script.stat().st_mode & 0o111
