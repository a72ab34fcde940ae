"""The container images tools/images/build.py makes, run with podman the way a cluster
runs them (tests/project_images.py builds them, or finds them cached, before any test
starts): the tarballs hold what the chart names; the runner answers as uid 10001 on a
read-only root and starts as the chart's sync executor; the API image serves /healthz
with Gunicorn; the dev image is editable; the Redis and MinIO stand-ins start with the
chart's own arguments, environment and security context and answer like the real ones.

Every container that listens joins a network namespace made for this module (loopback
only), and the checks run inside it (`ip netns exec`): the machine's own network is left
alone. The others run with `--network=none`.
"""

from __future__ import annotations

import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.deploy.chart import Rendered, render
from tests.deploy.dockerfiles import (
    API_MODULES,
    DOCKERFILE_API,
    DOCKERFILE_RUNNER,
    RUNNER_MODULES,
    SLIM_IMAGE_PACKAGES,
    Dockerfile,
    DockerIgnore,
    default_apt_packages,
)
from tests.services import REPO
from tools.images import podman
from tools.images.build import ensure_base
from tools.images.cache import IMAGES
from tools.images.chart import ChartImages, qualified
from tools.images.inputs import context_files, stage_context
from tools.images.project import project_images
from tools.images.python_base import python_base

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="podman (rootful) and network namespaces need root"
)

CHART_IMAGES = ChartImages.defaults()
REFS = {
    "zyra-orchestrator-runner": CHART_IMAGES.runner,
    "zyra-orchestrator-api": CHART_IMAGES.api,
    "zyra-orchestrator-api-dev": CHART_IMAGES.api_dev,
    "redis": CHART_IMAGES.redis,
    "minio": CHART_IMAGES.minio,
}
ZYRA_VERSION = re.search(r"^zyra==(\S+)$", (REPO / "constraints.txt").read_text(), re.M)[1]  # type: ignore[index]
API_KEY = "images-test-key-0123456789"
# What the Kubernetes Job gives a runner (and what the brief of the image promises).
RUNNER_CONFINEMENT = [
    "--network=none", "--user=10001:10001", "--read-only", "--read-only-tmpfs=false",
    "--tmpfs=/tmp", "--tmpfs=/work", "--cap-drop=all", "--security-opt=no-new-privileges",
]  # fmt: skip


def pod(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman with tools/images' storage and settings (where the build put the images)."""
    return podman.run(*args, check=check, timeout=timeout)


def archive_manifest(tarball: Path) -> list[dict[str, Any]]:
    with tarfile.open(tarball) as tar:
        member = tar.extractfile("manifest.json")
        assert member is not None
        manifest: list[dict[str, Any]] = json.load(member)
        return manifest


@pytest.fixture(scope="module")
def images(image_tarballs: dict[str, Path]) -> dict[str, str]:
    """name: reference, each image in podman's storage as its tarball holds it (loaded
    from the tarball unless the very same image is there already)."""
    refs = {}
    for name, tarball in image_tarballs.items():
        [entry] = archive_manifest(tarball)
        [ref] = entry["RepoTags"]
        image_id = entry["Config"].removesuffix(".json")
        present = pod("image", "inspect", "--format", "{{.Id}}", ref, check=False)
        if present.stdout.strip() != image_id:
            pod("load", "--input", str(tarball), timeout=900)
        refs[name] = ref
    return refs


@pytest.fixture(scope="module")
def netns() -> Iterator[str]:
    """A network namespace with only loopback, removed at the end."""
    name = f"zyra-images-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


def in_netns(netns: str, code: str, *args: str, timeout: float = 120) -> Any:
    """Run Python `code` (it prints JSON) inside the namespace; what it printed."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code, *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


HTTP_GET = """
import json, sys, time, urllib.error, urllib.request
url, headers, wait = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3])
deadline = time.monotonic() + wait
while True:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as r:
            print(json.dumps([r.status, r.read().decode()]))
        break
    except urllib.error.HTTPError as exc:
        print(json.dumps([exc.code, exc.read().decode()]))
        break
    except OSError:  # not listening yet
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
"""


def http_get(
    netns: str, url: str, headers: dict[str, str] | None = None, wait: float = 5
) -> tuple[int, str]:
    status, body = in_netns(netns, HTTP_GET, url, json.dumps(headers or {}), str(wait))
    return status, body


@contextmanager
def running(*args: str) -> Iterator[str]:
    """A detached container (removed at the end); its log is printed when the block
    fails, so a failed test shows it."""
    cid = pod("run", "--detach", *args).stdout.strip().splitlines()[-1]
    try:
        yield cid
    except BaseException:
        print(logs(cid))
        raise
    finally:
        pod("rm", "--force", "--time=5", cid, check=False)


def logs(cid: str) -> str:
    done = pod("logs", cid, check=False)
    return done.stdout + done.stderr


def exit_code(cid: str) -> int:
    return int(pod("inspect", "--format", "{{.State.ExitCode}}", cid).stdout.strip())


# --- a chart container as the kubelet starts it -------------------------------------------


def expand(words: list[str], env: dict[str, str]) -> list[str]:
    """The kubelet's $(NAME) expansion of command and args (unknown names stay)."""
    return [re.sub(r"\$\((\w+)\)", lambda m: env.get(m[1], m[0]), w) for w in words]


def container_env(rendered: Rendered, container: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            ref = var["valueFrom"]["secretKeyRef"]
            env[var["name"]] = rendered.secret_data(ref["name"])[ref["key"]]
        else:
            ref = var["valueFrom"]["configMapKeyRef"]
            env[var["name"]] = rendered.get("ConfigMap", ref["name"])["data"][ref["key"]]
    return env


@dataclass
class KubeletRun:
    """`podman run` options for a container of a rendered pod spec, as the kubelet
    would start it: user and fsGroup, read-only root (and no tmpfs podman would add),
    dropped capabilities, no privilege escalation, the environment from the chart's
    Secrets and ConfigMaps, each emptyDir a fresh folder (mode 0777, as emptyDir
    makes it), and command/args with $(NAME) expanded."""

    options: list[str]
    env: dict[str, str]
    args: list[str]
    volumes: dict[str, Path]  # mount path: host folder

    @classmethod
    def of(
        cls, rendered: Rendered, spec: dict[str, Any], container: dict[str, Any], root: Path
    ) -> KubeletRun:
        pod_context = spec.get("securityContext", {})
        context = container.get("securityContext", {})
        user = context.get("runAsUser", pod_context.get("runAsUser"))
        group = context.get("runAsGroup", pod_context.get("runAsGroup"))
        options = [f"--user={user}:{group}"]
        if "fsGroup" in pod_context:
            options.append(f"--group-add={pod_context['fsGroup']}")
        if context.get("readOnlyRootFilesystem"):
            options += ["--read-only", "--read-only-tmpfs=false"]
        if "ALL" in context.get("capabilities", {}).get("drop", []):
            options.append("--cap-drop=all")
        if context.get("allowPrivilegeEscalation") is False:
            options.append("--security-opt=no-new-privileges")
        env = container_env(rendered, container)
        options += [f"--env={name}={value}" for name, value in env.items()]
        empty_dirs = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        volumes = {}
        for mount in container.get("volumeMounts", []):
            assert mount["name"] in empty_dirs, f"{mount['name']}: only emptyDir volumes here"
            folder = root / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)
            volumes[mount["mountPath"]] = folder
            options.append(f"--volume={folder}:{mount['mountPath']}")
        if "command" in container:
            options.append(f"--entrypoint={json.dumps(expand(container['command'], env))}")
        return cls(options, env, expand(container.get("args", []), env), volumes)


def stateful_set(rendered: Rendered, component: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The pod spec and the container of the chart's Redis or MinIO."""
    [found] = [
        s for s in rendered.of_kind("StatefulSet")
        if s["metadata"]["labels"]["app.kubernetes.io/component"] == component
    ]  # fmt: skip
    spec = found["spec"]["template"]["spec"]
    [container] = spec["containers"]
    return spec, container


def api_settings(rendered: Rendered) -> dict[str, str]:
    """The API's ConfigMap (its ZYRA_* settings)."""
    [config] = [c for c in rendered.of_kind("ConfigMap") if "ZYRA_BACKEND" in c.get("data", {})]
    return dict(config["data"])


def wait_for(check: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f}s"
        time.sleep(0.2)


# --- what an image is made from ---------------------------------------------------------


def test_the_build_context_is_what_docker_would_send_of_the_repositorys_files() -> None:
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    ignore = DockerIgnore.of_repo()  # the tests' own reading of .dockerignore
    expected = {f for f in listed if (REPO / f).is_file() and not ignore.excluded(f)}
    context = set(context_files(REPO))
    assert context == expected
    assert {"pyproject.toml", "constraints.txt", "README.md"} <= context
    assert not any(f.startswith(("docs/", "charts/", ".venv/", "tools/")) for f in context)


def test_an_image_is_rebuilt_when_and_only_when_something_it_is_made_of_changes(
    tmp_path: Path,
) -> None:
    base = python_base()
    context = tmp_path / "context"
    manifest = stage_context(REPO, context)
    refs = {name: REFS[name] for name in REFS if name.startswith("zyra-orchestrator")}

    def hashes(files: dict[str, str], base_hash: str = base.input_hash) -> dict[str, str]:
        made = project_images(refs, base.ref, base_hash, context, files)
        return {image.name: image.input_hash for image in made}

    before = hashes(manifest)
    assert hashes(dict(manifest)) == before
    # tests/ is only copied by the api's dev stage.
    test_file = next(f for f in manifest if f.startswith("tests/"))
    after = hashes({**manifest, test_file: "644:edited"})
    assert [after[n] == before[n] for n in refs] == [True, True, False]
    # runner/ is in every image; api/ in the api's.
    runner_file = next(f for f in manifest if f.startswith("runner/"))
    after = hashes({**manifest, runner_file: "644:edited"})
    assert [after[n] == before[n] for n in refs] == [False, False, False]
    api_file = next(f for f in manifest if f.startswith("api/"))
    after = hashes({**manifest, api_file: "755:edited"})
    assert [after[n] == before[n] for n in refs] == [True, False, False]
    # Another base: everything.
    after = hashes(manifest, base_hash="another base")
    assert [after[n] == before[n] for n in refs] == [False, False, False]


# --- the tarballs -------------------------------------------------------------------------


def test_each_tarball_holds_one_image_under_the_name_the_chart_gives(
    image_tarballs: dict[str, Path],
) -> None:
    assert set(image_tarballs) == set(REFS)
    for name, tarball in image_tarballs.items():
        assert tarball.parent == IMAGES
        assert re.fullmatch(rf"{re.escape(name)}-[0-9a-f]{{16}}\.tar", tarball.name), tarball
        [entry] = archive_manifest(tarball)  # docker-archive: what `ctr images import` takes
        assert entry["RepoTags"] == [REFS[name]]
        with tarfile.open(tarball) as tar:
            names = set(tar.getnames())
        assert entry["Config"] in names and set(entry["Layers"]) <= names
    # The chart's default images (API pod, runner Jobs, dev Redis and MinIO) are these.
    rendered = render()
    containers = [c for k in ("Deployment", "StatefulSet") for r in rendered.of_kind(k)
                  for c in r["spec"]["template"]["spec"]["containers"]]  # fmt: skip
    runner_image = api_settings(rendered)["ZYRA_K8S__IMAGE"]
    chart_refs = {qualified(c["image"]) for c in containers} | {qualified(runner_image)}
    assert chart_refs == set(REFS.values()) - {REFS["zyra-orchestrator-api-dev"]}


# --- the Python base ----------------------------------------------------------------------


def test_the_base_is_a_python_3_11_slim_stand_in_usable_by_uid_10001() -> None:
    base = python_base()
    ensure_base(base)  # kept in podman's storage by the build; imported again if not
    probe = (
        "import json, shutil, sqlite3, ssl, sys, ctypes, lzma, bz2, uuid, readline, decimal; "
        "print(json.dumps({'version': list(sys.version_info[:3]), 'prefix': sys.prefix, "
        "'tools': [shutil.which(t) for t in ('python', 'python3', 'pip')]}))"
    )
    done = pod(
        "run", "--rm", "--network=none", "--user=10001:10001", base.ref, "python", "-c", probe
    )
    found = json.loads(done.stdout)
    assert (3, 11, 5) <= tuple(found["version"]) < (3, 12)
    assert found["prefix"] == "/usr/local"
    assert found["tools"] == [f"/usr/local/bin/{t}" for t in ("python", "python3", "pip")]
    pip = pod("run", "--rm", "--network=none", "--user=10001:10001", base.ref, "pip", "--version")
    assert "/usr/local/lib/python3.11/site-packages/pip" in pip.stdout
    # Every library a wheel may expect from python:3.11-slim-bookworm is there too.
    listed = pod("run", "--rm", "--network=none", base.ref,
                 "dpkg-query", "-W", "-f", "${Package}\\n").stdout  # fmt: skip
    missing = SLIM_IMAGE_PACKAGES - {line.split(":")[0] for line in listed.split()}
    assert not missing


# --- the runner ---------------------------------------------------------------------------


def test_runner_prints_its_help_as_uid_10001_on_a_read_only_root(images: dict[str, str]) -> None:
    ref = images["zyra-orchestrator-runner"]
    config = json.loads(pod("image", "inspect", "--format", "{{json .Config}}", ref).stdout)
    assert config["User"] == "10001:10001"
    assert config["Cmd"] == ["python", "-m", "runner"]
    done = pod("run", "--rm", *RUNNER_CONFINEMENT, ref, "python", "-m", "runner", "--help")
    assert done.stdout.startswith("usage: python -m runner"), done.stdout + done.stderr
    who = pod("run", "--rm", *RUNNER_CONFINEMENT, ref, "id")
    assert who.stdout.startswith("uid=10001(zyra) gid=10001(zyra)")


def test_runner_has_zyra_on_its_path(images: dict[str, str]) -> None:
    done = pod("run", "--rm", *RUNNER_CONFINEMENT, images["zyra-orchestrator-runner"],
               "zyra", "--version")  # fmt: skip
    assert f"Zyra {ZYRA_VERSION}" in done.stdout, done.stdout + done.stderr


def test_the_runner_image_gives_each_job_the_font_list_it_made(images: dict[str, str]) -> None:
    """A job's command in a fresh runner pod imports matplotlib without scanning the fonts
    (matplotlib logs "generated new fontManager" when it does)."""
    code = (
        "import logging, os, pathlib; logging.basicConfig(level=logging.INFO)\n"
        "from runner.workspace import JobFolders\n"
        "folders = JobFolders(pathlib.Path('/work/job')); folders.create()\n"
        "os.environ.update(folders.env()); import matplotlib.font_manager\n"
        "print(*sorted(p.name for p in folders.matplotlib_config.iterdir()))"
    )
    done = pod("run", "--rm", *RUNNER_CONFINEMENT, images["zyra-orchestrator-runner"],
               "python", "-c", code)  # fmt: skip
    assert done.stdout.startswith("fontlist-v"), done.stdout + done.stderr
    assert "generated new fontManager" not in done.stderr, done.stderr


def test_runner_starts_as_the_charts_sync_executor(images: dict[str, str], tmp_path: Path) -> None:
    rendered = render()
    spec = rendered.api_pod()
    container = rendered.container("sync-executor")
    assert qualified(container["image"]) == images["zyra-orchestrator-runner"]
    run = KubeletRun.of(rendered, spec, container, tmp_path)
    socket_path = container["command"][-1]  # `python -m runner.zygote --listen <socket>`
    folder = run.volumes[os.path.dirname(socket_path)] / os.path.basename(socket_path)
    with running("--network=none", *run.options, images["zyra-orchestrator-runner"]) as cid:
        wait_for(lambda: folder.exists() and stat.S_ISSOCK(folder.stat().st_mode),
                 f"socket {socket_path}")  # fmt: skip
        state = pod("inspect", "--format", "{{.State.Status}}", cid).stdout.strip()
        assert state == "running", logs(cid)


def test_the_runner_image_has_no_api_code_and_no_server_stack(images: dict[str, str]) -> None:
    modules = ["api", "fastapi", "starlette", "uvicorn", "gunicorn", "kubernetes",
               "pydantic_settings"]  # fmt: skip
    probe = (
        "import importlib.util, json, sys\n"
        "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m)]))"
    )
    done = pod("run", "--rm", *RUNNER_CONFINEMENT, images["zyra-orchestrator-runner"],
               "python", "-c", probe, *modules)  # fmt: skip
    assert json.loads(done.stdout) == [], "in the runner image"


# --- every project image ------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["zyra-orchestrator-runner", "zyra-orchestrator-api", "zyra-orchestrator-api-dev"]
)
def test_the_venv_of_each_image_is_consistent(images: dict[str, str], name: str) -> None:
    done = pod("run", "--rm", "--network=none", images[name], "python", "-m", "pip", "check",
               check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


# Run inside an image: every shared library from outside the venv and the base Python
# that the venv's ELF files link to (ldd) or that importing the modules maps (dlopen,
# ctypes), with the Debian package that ships it; and what ldd finds nowhere.
SHARED_LIBRARIES = """
import importlib, json, os, subprocess, sys
from pathlib import Path
venv, base = Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()
inside = lambda p: p.resolve().is_relative_to(venv) or p.resolve().is_relative_to(base)
elf = [p for p in venv.rglob("*.so*") if p.is_file()]
vendored = {p.name for p in elf}
found, missing = {}, []
for start in range(0, len(elf), 64):
    out = subprocess.run(["ldd", *map(str, elf[start:start + 64])],
                         capture_output=True, text=True).stdout
    owner = ""
    for line in out.splitlines():
        if not line.startswith("\t"):
            owner = line.rstrip(":")
            continue
        name, _, target = line.strip().partition(" => ")
        if target.startswith("not found"):
            if name not in vendored:
                missing.append(f"{name} (needed by {owner})")
        elif target.startswith("/") and not inside(Path(target.split(" (")[0])):
            found.setdefault(target.split(" (")[0], owner)
for module in sys.argv[1:]:
    importlib.import_module(module)
for line in open("/proc/self/maps"):
    fields = line.split()
    if len(fields) >= 6 and ".so" in fields[-1] and not inside(Path(fields[-1])):
        found.setdefault(fields[-1], "import of the modules")
def package(path):
    for candidate in {path, os.path.realpath(path)}:
        for form in (candidate, candidate.removeprefix("/usr"), "/usr" + candidate):
            owner = subprocess.run(["dpkg-query", "-S", form], capture_output=True, text=True)
            if owner.returncode == 0:
                return owner.stdout.split(":")[0].split(",")[0].strip()
    return None
print(json.dumps({"missing": missing,
                  "outside": {p: [package(p), by] for p, by in sorted(found.items())}}))
"""


@pytest.mark.parametrize(
    ("name", "dockerfile", "stage", "modules"),
    [
        ("zyra-orchestrator-runner", DOCKERFILE_RUNNER, "runner", RUNNER_MODULES),
        ("zyra-orchestrator-api", DOCKERFILE_API, "production", API_MODULES),
    ],
    ids=["runner", "api"],
)
def test_shared_libraries_come_from_the_slim_image_or_the_apt_line(
    images: dict[str, str], name: str, dockerfile: Path, stage: str, modules: tuple[str, ...]
) -> None:
    """What a wheel links to must be in python:3.11-slim-bookworm or apt-get'd by the
    Dockerfile: the local base has more than the slim image, so a library it happens
    to have would pass a run here and fail on the public base."""
    done = pod("run", "--rm", "--network=none", "--env=MPLBACKEND=Agg", "--env=HOME=/tmp",
               images[name], "python", "-c", SHARED_LIBRARIES, *modules, timeout=300)  # fmt: skip
    found = json.loads(done.stdout)
    assert found["missing"] == [], "libraries found nowhere"
    allowed = SLIM_IMAGE_PACKAGES | default_apt_packages(Dockerfile.parse(dockerfile), stage)
    unknown = {p: v for p, v in found["outside"].items() if v[0] not in allowed}
    assert found["outside"] and not unknown, f"not in the public base of {name}: {unknown}"


# --- the API ------------------------------------------------------------------------------


def test_api_serves_healthz_with_gunicorn_on_8000(
    images: dict[str, str], netns: str, tmp_path: Path
) -> None:
    ref = images["zyra-orchestrator-api"]
    data = tmp_path / "data"
    data.mkdir(mode=0o777)
    data.chmod(0o777)
    options = [
        f"--network=ns:/run/netns/{netns}", "--read-only", "--read-only-tmpfs=false",
        "--tmpfs=/tmp", f"--volume={data}:/var/lib/zyra", "--cap-drop=all",
        "--security-opt=no-new-privileges", f"--env=ZYRA_API_KEYS=images:{API_KEY}",
        "--health-interval=disable",  # no systemd timer here; run by hand below
    ]  # fmt: skip
    with running(*options, ref) as cid:
        status, body = http_get(netns, "http://127.0.0.1:8000/healthz", wait=120)
        assert (status, json.loads(body)) == (200, {"status": "ok"})
        status, body = http_get(netns, "http://127.0.0.1:8000/readyz")
        assert status == 200 and json.loads(body)["status"] == "ok", body
        status, _ = http_get(netns, "http://127.0.0.1:8000/cli/commands")
        assert status == 401
        status, body = http_get(netns, "http://127.0.0.1:8000/cli/commands", {"X-API-Key": API_KEY})
        assert status == 200 and json.loads(body)["zyra_version"] == ZYRA_VERSION
        # The image's own HEALTHCHECK (python's urllib against /healthz).
        assert pod("healthcheck", "run", cid, check=False).returncode == 0
        pod("stop", "--time=30", cid)
        assert exit_code(cid) == 0
        output = logs(cid)
        assert "Starting gunicorn" in output and "Listening at: http://0.0.0.0:8000" in output
        assert "Shutting down: Master" in output


def test_api_dev_image_is_editable_with_the_dev_tools(images: dict[str, str]) -> None:
    ref = images["zyra-orchestrator-api-dev"]
    config = json.loads(pod("image", "inspect", "--format", "{{json .Config}}", ref).stdout)
    assert config["User"] == "zyra" and config["Cmd"] == ["scripts/start-api.sh"]
    script = "id -un; python -c 'import api; print(api.__file__)'; pytest --version; ruff --version"
    done = pod("run", "--rm", "--network=none", ref, "sh", "-ec", script)
    user, where, pytest_version, ruff_version = done.stdout.split("\n")[:4]
    assert (user, where) == ("zyra", "/app/api/__init__.py")
    assert pytest_version.startswith("pytest ") and ruff_version.startswith("ruff ")


def skaffold_sync_destination(edited: str) -> tuple[str, PurePosixPath]:
    """(the dev image, the path in its container) where `skaffold dev` puts an edited
    file: the manual sync rule whose `src` glob matches it, its `dest` joined with the
    file's path (no `strip`), as Skaffold's sync documentation says."""
    dev = next(p for p in yaml.safe_load((REPO / "skaffold.yaml").read_text())["profiles"]
               if p["name"] == "dev")  # fmt: skip
    for artifact in dev["build"]["artifacts"]:
        for rule in artifact.get("sync", {}).get("manual", []):
            if REPO / edited in REPO.glob(rule["src"]) and not rule.get("strip"):
                return artifact["image"], PurePosixPath(rule["dest"]) / edited
    raise AssertionError(f"no sync rule of the dev profile matches {edited}")


def test_a_file_synced_as_skaffold_dev_syncs_it_is_served_after_the_reload(
    images: dict[str, str], netns: str
) -> None:
    """The dev profile's sync target, proven on the dev image: an edited api/ file is
    written where the rule puts it, the way Skaffold writes it (`tar xmf - -C /
    --no-same-owner` through exec, as the container's own user, under the dev values'
    security context), and the reloading server answers with the change."""
    image, destination = skaffold_sync_destination("api/routers/health.py")
    assert image == "zyra-orchestrator-api"  # the dev profile's API artifact: the dev image
    edited = (REPO / "api/routers/health.py").read_text() + (
        '\n\n@router.get("/synced-by-skaffold")\n'
        'async def synced() -> dict[str, bool]:\n    return {"synced": True}\n'
    )
    options = [
        f"--network=ns:/run/netns/{netns}", "--cap-drop=all",
        "--security-opt=no-new-privileges", "--tmpfs=/tmp",
        f"--env=ZYRA_API_KEYS=images:{API_KEY}", "--env=ZYRA_DATA_DIR=/tmp/zyra",
    ]  # fmt: skip
    with running(*options, images["zyra-orchestrator-api-dev"]) as cid:
        status, _ = http_get(netns, "http://127.0.0.1:8000/healthz", wait=120)
        assert status == 200
        assert http_get(netns, "http://127.0.0.1:8000/synced-by-skaffold")[0] == 404
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w") as tar:
            member = tarfile.TarInfo(str(destination).lstrip("/"))
            member.size, member.mode, member.mtime = len(edited.encode()), 0o644, time.time()
            tar.addfile(member, io.BytesIO(edited.encode()))
        done = subprocess.run(
            podman.command("exec", "-i", cid, "tar", "xmf", "-", "-C", "/", "--no-same-owner"),
            input=archive.getvalue(), env=podman.environment(), capture_output=True,
            timeout=60,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
        deadline = time.monotonic() + 60
        while (answer := http_get(netns, "http://127.0.0.1:8000/synced-by-skaffold", wait=30)) \
                != (200, '{"synced":true}'):  # fmt: skip
            assert time.monotonic() < deadline, (answer, logs(cid))
            time.sleep(0.5)


# --- the stand-ins of the chart's dev Redis and MinIO ---------------------------------------


REDIS_CHECK = """
import json, sys, time
import redis
password, action = sys.argv[1], sys.argv[2]
client = redis.Redis(host="127.0.0.1", port=6379, password=password, socket_timeout=5)
deadline = time.monotonic() + 30
while True:
    try:
        client.ping()
        break
    except redis.ConnectionError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
if action == "read":
    print(json.dumps({"state": client.get("job:1:state").decode()}))
    sys.exit()
try:
    redis.Redis(host="127.0.0.1", port=6379, socket_timeout=5).ping()
    anonymous = "answered"
except redis.RedisError as exc:
    anonymous = type(exc).__name__
# What the API does for each run: a Redis user of its own, limited to its keys.
client.acl_setuser("job-1", enabled=True, passwords=["+job-secret"], keys=["job:1:*"],
                   commands=["+get", "+set"])
job = redis.Redis(host="127.0.0.1", port=6379, username="job-1", password="job-secret")
job.set("job:1:state", "running")
try:
    job.set("job:2:state", "stolen")
    other = "written"
except redis.RedisError as exc:
    other = type(exc).__name__
print(json.dumps({"anonymous": anonymous, "other_job": other,
                  "bind": client.config_get("bind")["bind"],
                  "version": client.info("server")["redis_version"]}))
"""


def test_redis_stand_in_starts_as_the_chart_starts_it(
    images: dict[str, str], netns: str, tmp_path: Path
) -> None:
    rendered = render()
    spec, container = stateful_set(rendered, "redis")
    assert qualified(container["image"]) == images["redis"]
    run = KubeletRun.of(rendered, spec, container, tmp_path)
    password = run.env["REDIS_PASSWORD"]
    assert run.args[:2] == ["--requirepass", password]
    probe = container["readinessProbe"]["exec"]["command"]
    network = f"--network=ns:/run/netns/{netns}"
    with running(network, *run.options, images["redis"], *run.args) as cid:
        wait_for(lambda: pod("exec", cid, *probe, check=False).returncode == 0,
                 "ready redis (the chart's readiness probe)")  # fmt: skip
        found = in_netns(netns, REDIS_CHECK, password, "write")
        assert found["anonymous"] == "AuthenticationError"
        assert found["other_job"] == "NoPermissionError"
        assert found["bind"] == "* -::*"  # every address of the pod, not only loopback
        assert found["version"].split(".")[0] == "7"
        pod("stop", "--time=30", cid)
        assert exit_code(cid) == 0
    # Append-only file in the data volume: the record survives a restart.
    assert (run.volumes["/data"] / "appendonlydir").is_dir()
    with running(network, *run.options, images["redis"], *run.args):
        assert in_netns(netns, REDIS_CHECK, password, "read") == {"state": "running"}


S3_CHECK = """
import json, sys
import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
endpoint, key, secret, bucket = sys.argv[1:5]
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=key,
                  aws_secret_access_key=secret, region_name="us-east-1")
s3.create_bucket(Bucket=bucket)
s3.put_object(Bucket=bucket, Key="results/hello.txt", Body=b"hello")
body = s3.get_object(Bucket=bucket, Key="results/hello.txt")["Body"].read().decode()
anonymous = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                         config=Config(signature_version=UNSIGNED))
try:
    anonymous.get_object(Bucket=bucket, Key="results/hello.txt")
    refused = "read"
except ClientError as exc:
    refused = exc.response["Error"]["Code"]
print(json.dumps({"buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
                  "body": body, "anonymous": refused}))
"""


def test_minio_stand_in_starts_as_the_chart_starts_it(
    images: dict[str, str], netns: str, tmp_path: Path
) -> None:
    rendered = render()
    spec, container = stateful_set(rendered, "minio")
    assert qualified(container["image"]) == images["minio"]
    run = KubeletRun.of(rendered, spec, container, tmp_path)
    bucket = api_settings(rendered)["ZYRA_S3_BUCKET"]
    network = f"--network=ns:/run/netns/{netns}"
    with running(network, *run.options, images["minio"], *run.args) as cid:
        ready = container["readinessProbe"]["httpGet"]["path"]
        live = container["livenessProbe"]["httpGet"]["path"]
        assert http_get(netns, f"http://127.0.0.1:9000{ready}", wait=60)[0] == 200
        assert http_get(netns, f"http://127.0.0.1:9000{live}")[0] == 200
        credentials = run.env["MINIO_ROOT_USER"], run.env["MINIO_ROOT_PASSWORD"]
        found = in_netns(netns, S3_CHECK, "http://127.0.0.1:9000", *credentials, bucket)
        assert found == {"buckets": [bucket], "body": "hello", "anonymous": "AccessDenied"}
        pod("stop", "--time=30", cid)
        assert exit_code(cid) == 0
