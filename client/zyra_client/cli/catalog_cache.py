"""The command catalog, kept on disk per server and Zyra version, so that building a
command's parser costs no request most of the time."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path

from zyra_client.client import Client
from zyra_client.models import Catalog

# A server's Zyra changes only when it is upgraded; a day-old catalog is asked again,
# and so is one the server contradicted (an unknown command or argument).
DEFAULT_TTL_S = 24 * 3600


def cache_dir(server: str, env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    server_hash = hashlib.sha256(server.encode()).hexdigest()[:16]
    return Path(base) / "zyra-remote" / server_hash


def _ttl(env: Mapping[str, str]) -> float:
    try:
        return float(env.get("ZYRA_REMOTE_CATALOG_TTL_S", DEFAULT_TTL_S))
    except ValueError:
        return DEFAULT_TTL_S


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def load(
    client: Client, *, refresh: bool = False, env: Mapping[str, str] = os.environ
) -> tuple[Catalog, bool]:
    """The catalog, and whether it came from the disk cache."""
    folder = cache_dir(client.url, env)
    latest = folder / "latest.json"
    if not refresh:
        try:
            pointer = json.loads(latest.read_text(encoding="utf-8"))
            if time.time() - float(pointer["fetched_at"]) < _ttl(env):
                text = (folder / pointer["file"]).read_text(encoding="utf-8")
                return Catalog.model_validate_json(text), True
        except (OSError, ValueError, KeyError, TypeError):
            pass  # no cache, or an unreadable one: ask the server
    catalog = client.commands(refresh=True)
    name = re.sub(r"[^A-Za-z0-9._+-]", "_", catalog.zyra_version) + ".json"
    _write(folder / name, catalog.model_dump_json(by_alias=True))
    _write(latest, json.dumps({"file": name, "fetched_at": time.time()}))
    return catalog, False


def forget(server: str, env: Mapping[str, str] = os.environ) -> None:
    """Ask the server again next time."""
    (cache_dir(server, env) / "latest.json").unlink(missing_ok=True)
