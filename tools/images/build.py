"""Build the project's container images on this machine, without a registry, as tarballs
`ctr -n k8s.io images import` (or `podman load`) takes:

  zyra-orchestrator-runner   Dockerfile.runner                 <runner repository>:<appVersion>
  zyra-orchestrator-api      Dockerfile.api, target production <api repository>:<appVersion>
  zyra-orchestrator-api-dev  Dockerfile.api, target dev        <api repository>:dev
  redis, minio               stand-ins for the chart's dev Redis and MinIO, under its names

    python tools/images/build.py [--only NAME ...]

Each tarball is ~/.cache/zyra-orchestrator/images/<name>-<input hash>.tar: unchanged
inputs (the Dockerfile, the build context, the build args and the base, or a stand-in's
recipe) mean no build at all; a changed one means a rebuild, and the old tarball goes.
The last lines on stdout are `name=<tarball>`, one per image; progress goes to stderr and
each build's full output to images/logs/.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Protocol

if __package__ in (None, ""):  # run as a script: import from the repository root
    sys.path[0] = str(Path(__file__).resolve().parents[2])

from tools.images import podman, python_base, standins
from tools.images.cache import LOGS, Artifact, build_lock
from tools.images.chart import REPO, ChartImages
from tools.images.inputs import stage_context
from tools.images.project import DockerfileImage, project_images

NAMES = (
    "zyra-orchestrator-runner",
    "zyra-orchestrator-api",
    "zyra-orchestrator-api-dev",
    "redis",
    "minio",
)
INSTALL_DEPS = Path(__file__).with_name("install-deps.sh")


class Image(Protocol):
    name: str
    ref: str

    @property
    def input_hash(self) -> str: ...

    def build(self, log: IO[str]) -> None: ...


def say(message: str) -> None:
    print(f"[images] {message}", file=sys.stderr, flush=True)


def gigabytes(size: float) -> str:
    return f"{size / 1e9:.2f} GB"


def ensure_base(base: python_base.PythonBase) -> None:
    """The Python base in podman's storage: imported from its cached root filesystem,
    which is made first if it is not cached either."""
    if podman.image_exists(base.ref):
        return
    artifact = base.artifact
    with artifact.log.open("a") as log:
        if not artifact.path.exists():
            say(f"python base: mmdebstrap + CPython {base.python.version} (log: {artifact.log})")
            started = time.monotonic()
            python_base.make_rootfs(base, log)
            artifact.forget_others()
            say(f"python base: root filesystem in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        python_base.import_image(base, log)
    size = podman.image_inspect(base.ref)["Size"]
    say(f"python base: {base.ref} imported in {time.monotonic() - started:.1f}s "
        f"({gigabytes(float(str(size)))})")  # fmt: skip


def build_one(image: Image, needs_base: python_base.PythonBase | None) -> Path:
    artifact = Artifact(image.name, image.input_hash)
    if artifact.path.exists():
        say(f"{image.name}: unchanged, {artifact.path}")
        return artifact.path
    subprocess.run(["bash", str(INSTALL_DEPS)], check=True)
    if needs_base is not None:
        ensure_base(needs_base)
    say(f"{image.name}: building {image.ref} (log: {artifact.log})")
    with artifact.log.open("w") as log:
        started = time.monotonic()
        try:
            image.build(log)
        except subprocess.CalledProcessError:
            log.flush()
            tail = artifact.log.read_text().splitlines()[-40:]
            say(f"{image.name}: build failed; the end of {artifact.log}:")
            print("\n".join(tail), file=sys.stderr)
            raise
        built = time.monotonic() - started
        started = time.monotonic()
        podman.save(image.ref, artifact.path, log)
        saved = time.monotonic() - started
    size = float(str(podman.image_inspect(image.ref)["Size"]))
    say(f"{image.name}: built in {built:.1f}s, saved in {saved:.1f}s: image "
        f"{gigabytes(size)}, tarball {gigabytes(artifact.path.stat().st_size)}")  # fmt: skip
    artifact.forget_others()
    return artifact.path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=NAMES, help="these images (default: all)")
    args = parser.parse_args(argv)
    wanted = args.only or list(NAMES)
    started = time.monotonic()
    found: dict[str, Path] = {}
    with build_lock():
        chart = ChartImages.defaults()
        base = python_base.python_base()
        context = podman.HOME / "tmp" / "context"
        manifest = stage_context(REPO, context)
        refs = {
            "zyra-orchestrator-runner": chart.runner,
            "zyra-orchestrator-api": chart.api,
            "zyra-orchestrator-api-dev": chart.api_dev,
        }
        dockerfile_images = project_images(refs, base.ref, base.input_hash, context, manifest)
        with (LOGS / "minio-binary.log").open("w") as minio_log:
            stand_ins: list[Image] = [standins.redis(chart), standins.minio(chart, minio_log)]
        images: list[Image] = [*dockerfile_images, *stand_ins]
        built_any = False
        try:
            for image in images:
                if image.name in wanted:
                    cached = Artifact(image.name, image.input_hash).path.exists()
                    found[image.name] = build_one(
                        image, base if isinstance(image, DockerfileImage) else None
                    )
                    built_any = built_any or not cached
        finally:
            shutil.rmtree(context, ignore_errors=True)
            if built_any:
                # Only this run's images (and the layer cache) stay in podman's storage.
                keep = [i.ref for i in images] + [d.cache_ref for d in dockerfile_images]
                removed = podman.prune([*keep, base.ref])
                if removed:
                    say(f"untagged in podman's storage: {' '.join(removed)}")
    say(f"done in {time.monotonic() - started:.1f}s")
    for name in wanted:
        print(f"{name}={found[name]}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as exc:
        say(f"failed: {' '.join(map(str, exc.cmd))} exited with {exc.returncode}")
        sys.exit(1)
