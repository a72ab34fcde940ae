"""The project's images, built by podman from Dockerfile.runner and Dockerfile.api as
they are; only PYTHON_IMAGE is given (the local base, tools/images/python_base.py).

pip inside a build reaches PyPI through this machine's package proxy, so a build runs
on the host's network and sees the host's CA bundle and /etc/pip.conf, mounted
read-only into each RUN (`podman build --volume`: they are not part of any layer).
Podman's own layer cache is kept between builds (the `builder` stage is tagged, so
pruning leaves it): an edit of the source rebuilds in seconds, not minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO

from tools.images import podman
from tools.images.chart import REPO
from tools.images.dockerfile import copy_sources, taken
from tools.images.inputs import digest, file_digest

# Host files each RUN sees at the same path (read-only), when the host has them.
HOST_MOUNTS = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pip.conf")
CACHE_REPOSITORY = "localhost/zyra-image-cache"


def host_mounts() -> list[str]:
    return [path for path in HOST_MOUNTS if Path(path).is_file()]


@dataclass(frozen=True)
class DockerfileImage:
    name: str
    ref: str
    dockerfile: Path
    target: str | None
    build_args: dict[str, str]
    copied: str  # the hash of the context files its target COPYs
    base_hash: str  # what PYTHON_IMAGE was made from (its tag carries it too)
    context: Path  # where the context was staged (not an input: its contents are)

    @cached_property
    def input_hash(self) -> str:
        return digest(
            self.name,
            self.ref,
            self.dockerfile.name,
            file_digest(self.dockerfile),
            self.target,
            self.build_args,
            self.copied,
            self.base_hash,
            # pip.conf decides where packages come from; the CA bundle changes nothing
            # that ends up in the image.
            {path: file_digest(Path(path)) for path in host_mounts() if path.endswith(".conf")},
        )

    @property
    def cache_ref(self) -> str:
        """The tag that keeps the `builder` stage's layers (podman's layer cache)."""
        return f"{CACHE_REPOSITORY}/{self.dockerfile.name.lower()}-builder:latest"

    def build(self, log: IO[str]) -> None:
        self._podman_build(self.target, self.ref, log)
        self._podman_build("builder", self.cache_ref, log)

    def _podman_build(self, target: str | None, tag: str, log: IO[str]) -> None:
        args = [
            "build", "--pull=never", "--network=host", "--layers", "--format=docker",
            "--file", str(self.dockerfile), "--tag", tag,
        ]  # fmt: skip
        if target:
            args += ["--target", target]
        for name, value in self.build_args.items():
            args += ["--build-arg", f"{name}={value}"]
        for path in host_mounts():
            args += ["--volume", f"{path}:{path}:ro"]
        podman.run(*args, str(self.context), log=log, nice=True)


def project_images(
    refs: dict[str, str],
    base_ref: str,
    base_hash: str,
    context: Path,
    manifest: dict[str, str],
) -> list[DockerfileImage]:
    """The images of `refs` (name: tag): zyra-orchestrator-runner (Dockerfile.runner),
    zyra-orchestrator-api (Dockerfile.api, production), zyra-orchestrator-api-dev (dev)."""
    recipes = {
        "zyra-orchestrator-runner": ("Dockerfile.runner", None),
        "zyra-orchestrator-api": ("Dockerfile.api", "production"),
        "zyra-orchestrator-api-dev": ("Dockerfile.api", "dev"),
    }
    build_args = {"PYTHON_IMAGE": base_ref}
    images = []
    for name, (dockerfile, target) in recipes.items():
        sources = copy_sources(REPO / dockerfile, target, build_args)
        files = taken(sorted(manifest), sources)
        images.append(
            DockerfileImage(
                name=name,
                ref=refs[name],
                dockerfile=REPO / dockerfile,
                target=target,
                build_args=build_args,
                copied=digest({rel: manifest[rel] for rel in files}),
                base_hash=base_hash,
                context=context,
            )
        )
    return images
