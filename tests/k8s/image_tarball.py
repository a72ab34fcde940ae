"""Turn a root filesystem folder into an image tarball that `ctr images import` loads.

The tarball is an OCI image layout (oci-layout, index.json, blobs/sha256/...) holding one
single-layer linux/amd64 image. containerd names the imported image after the index
entry's `io.containerd.image.name` annotation, so no `--base-name` or tag step is needed.
Standard library only; the output is byte-for-byte reproducible for the same input
(fixed mtimes, owners and order), so it can be cached by a hash of its inputs.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import platform
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
_DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass(frozen=True)
class ImageConfig:
    """The runtime part of an OCI image config (what `docker inspect` shows as Config)."""

    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (_DEFAULT_PATH,)
    workdir: str = "/"
    user: str = ""
    labels: dict[str, str] = field(default_factory=dict)


def _reset(info: tarfile.TarInfo) -> tarfile.TarInfo:
    # Reproducible layer: the file's own mode stays, everything else is fixed.
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = 0
    return info


def _write_layer(rootfs: Path, layer: Path) -> None:
    """The rootfs as an uncompressed tar, paths relative to /, sorted, root-owned.
    Sockets are left out (tar cannot hold them); hard links stay links."""
    with tarfile.open(layer, "w", format=tarfile.PAX_FORMAT) as tar:
        for dirpath, dirnames, filenames in os.walk(rootfs):
            dirnames.sort()
            for name in sorted(dirnames + filenames):
                path = Path(dirpath) / name
                info = tar.gettarinfo(str(path), path.relative_to(rootfs).as_posix())
                if info is None:
                    continue
                if info.isreg():
                    with path.open("rb") as handle:
                        tar.addfile(_reset(info), handle)
                else:
                    tar.addfile(_reset(info))


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(value: object) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _image_config(config: ImageConfig, arch: str, diff_id: str) -> bytes:
    runtime: dict[str, object] = {"Env": list(config.env), "WorkingDir": config.workdir}
    if config.entrypoint:
        runtime["Entrypoint"] = list(config.entrypoint)
    if config.cmd:
        runtime["Cmd"] = list(config.cmd)
    if config.user:
        runtime["User"] = config.user
    if config.labels:
        runtime["Labels"] = dict(config.labels)
    return _json({
        "architecture": arch, "os": "linux", "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "created": "1970-01-01T00:00:00Z",
    })  # fmt: skip


def _dir_info(name: str) -> tarfile.TarInfo:
    info = _reset(tarfile.TarInfo(name))
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def write_image_tarball(
    rootfs: Path, ref: str, out: Path, config: ImageConfig, *, compress: bool = True
) -> str:
    """Write `rootfs` as image `ref` (e.g. "zyra.local/probe:abc") to `out`.

    Returns the manifest digest. Streams through temporary files next to `out`, so a
    large rootfs never sits in memory. `compress=False` skips gzip (much faster for big
    trees; containerd accepts uncompressed layers as well).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as scratch:
        layer = Path(scratch) / "layer.tar"
        _write_layer(rootfs, layer)
        diff_id = _file_digest(layer)
        blob = layer
        if compress:
            blob = Path(scratch) / "layer.tar.gz"
            # No file name and mtime 0 in the gzip header: the same bytes every time.
            with (
                layer.open("rb") as source,
                blob.open("wb") as raw,
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed,
            ):
                shutil.copyfileobj(source, packed, 1 << 20)
        blob_digest = _file_digest(blob)
        arch = _GO_ARCH.get(platform.machine(), platform.machine())
        image_config = _image_config(config, arch, diff_id)
        manifest = _json({
            "schemaVersion": 2, "mediaType": _OCI_MANIFEST,
            "config": {"mediaType": _OCI_CONFIG, "digest": _digest(image_config),
                       "size": len(image_config)},
            "layers": [{"mediaType": _OCI_LAYER_GZIP if compress else _OCI_LAYER,
                        "digest": blob_digest, "size": blob.stat().st_size}],
        })  # fmt: skip
        tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
        index = _json({
            "schemaVersion": 2,
            "manifests": [{
                "mediaType": _OCI_MANIFEST, "digest": _digest(manifest), "size": len(manifest),
                "platform": {"architecture": arch, "os": "linux"},
                "annotations": {"io.containerd.image.name": ref,
                                "org.opencontainers.image.ref.name": tag},
            }],
        })  # fmt: skip
        small = {
            "oci-layout": _json({"imageLayoutVersion": "1.0.0"}),
            "index.json": index,
            f"blobs/sha256/{_digest(image_config)[7:]}": image_config,
            f"blobs/sha256/{_digest(manifest)[7:]}": manifest,
        }
        partial = Path(scratch) / "image.tar"
        with tarfile.open(partial, "w", format=tarfile.PAX_FORMAT) as tar:
            for directory in ("blobs", "blobs/sha256"):
                tar.addfile(_dir_info(directory))
            for name, data in small.items():
                info = _reset(tarfile.TarInfo(name))
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
            info = _reset(tarfile.TarInfo(f"blobs/sha256/{blob_digest[7:]}"))
            info.size, info.mode = blob.stat().st_size, 0o644
            with blob.open("rb") as handle:
                tar.addfile(info, handle)
        partial.replace(out)  # atomic: a concurrent reader never sees half a tarball
    return _digest(manifest)
