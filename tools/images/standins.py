"""Stand-ins for the chart's dev dependencies (redis:7.4.2-alpine and the quay.io MinIO
image cannot be pulled here), tagged with the chart's default names: a Debian minbase
root filesystem with Debian's redis-server (7.0), or with the MinIO server that
tools/minio/build-minio.sh builds from source. Each has the official image's
entrypoint behaviour the chart's `args:` rely on (redis-entrypoint.sh,
minio-entrypoint.sh).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO

from tools.images import debian, podman
from tools.images.chart import REPO, ChartImages
from tools.images.inputs import digest, file_digest

HERE = Path(__file__).resolve().parent
BUILD_MINIO = REPO / "tools" / "minio" / "build-minio.sh"


@dataclass(frozen=True)
class RootfsImage:
    """An image that is one imported root filesystem: packages, files put in by
    customize hooks (templates: `{name}` is files[name]), and an image config."""

    name: str
    ref: str
    packages: tuple[str, ...]
    hooks: tuple[str, ...]
    config: tuple[str, ...]
    files: dict[str, Path] = field(default_factory=dict)

    @cached_property
    def input_hash(self) -> str:
        return digest(
            self.name,
            self.ref,
            debian.recipe(),
            self.packages,
            self.hooks,  # the templates: where this checkout is does not matter
            self.config,
            {key: file_digest(path) for key, path in self.files.items()},
        )

    def build(self, log: IO[str]) -> None:
        rootfs = podman.HOME / "tmp" / f"{self.name}.rootfs.tar"
        hooks = [hook.format(**{k: str(v) for k, v in self.files.items()}) for hook in self.hooks]
        try:
            debian.rootfs_tarball(rootfs, self.packages, hooks, log)
            args = ["import"]
            for change in self.config:
                args += ["--change", change]
            podman.run(*args, str(rootfs), self.ref, log=log)
        finally:
            rootfs.unlink(missing_ok=True)


def redis(images: ChartImages) -> RootfsImage:
    return RootfsImage(
        name="redis",
        ref=images.redis,
        packages=("redis-server",),  # and redis-tools: the readiness probe's redis-cli
        hooks=(
            'install -m 755 {entrypoint} "$1/usr/local/bin/docker-entrypoint.sh"',
            # The official image's data folder; the chart mounts an emptyDir over it.
            'install -d -m 755 -o 999 -g 999 "$1/data"',
        ),
        config=(
            f"ENV PATH={debian.DEFAULT_PATH}",
            'ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]',
            'CMD ["redis-server"]',
            "WORKDIR /data",
            "EXPOSE 6379",
        ),
        files={"entrypoint": HERE / "redis-entrypoint.sh"},
    )


def minio_binary(log: IO[str]) -> Path:
    """The MinIO server, built once per pinned version (cached by build-minio.sh)."""
    done = subprocess.run(
        ["bash", str(BUILD_MINIO)], stdout=subprocess.PIPE, stderr=log, text=True, check=True
    )
    return Path(done.stdout.strip().splitlines()[-1].split("=", 1)[1])


def minio(images: ChartImages, log: IO[str]) -> RootfsImage:
    return RootfsImage(
        name="minio",
        ref=images.minio,
        packages=("ca-certificates",),
        hooks=(
            'install -m 755 {minio} "$1/usr/bin/minio"',
            'install -m 755 {entrypoint} "$1/usr/bin/docker-entrypoint.sh"',
        ),
        config=(
            f"ENV PATH={debian.DEFAULT_PATH}",
            'ENTRYPOINT ["/usr/bin/docker-entrypoint.sh"]',
            'CMD ["minio"]',
            "EXPOSE 9000",
        ),
        files={"minio": minio_binary(log), "entrypoint": HERE / "minio-entrypoint.sh"},
    )
