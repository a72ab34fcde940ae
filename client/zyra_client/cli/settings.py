"""Which server and key `zyra-remote` uses: flags, else the environment, else a file."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


class SettingsError(Exception):
    """No server was named, or the config file cannot be read."""


@dataclass(frozen=True)
class Connection:
    server: str
    api_key: str | None


def config_path(env: Mapping[str, str] = os.environ) -> Path:
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "zyra-remote" / "config.toml"


def _read_config(path: Path) -> dict[str, object]:
    if not path.is_file():
        return {}
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}") from exc


def resolve(
    server: str | None, api_key: str | None, env: Mapping[str, str] = os.environ
) -> Connection:
    """Each setting from the first place that has it: flag, ZYRA_URL/ZYRA_API_KEY,
    then `server`/`api_key` in ~/.config/zyra-remote/config.toml.

    ZYRA_URL is the name the docs, curl examples and n8n workflows use; ZYRA_SERVER,
    zyra-remote's name for it before, is still read when ZYRA_URL is not set."""
    path = config_path(env)
    config = _read_config(path) if not (server and api_key) else {}
    server = server or env.get("ZYRA_URL") or env.get("ZYRA_SERVER") or _text(config.get("server"))
    api_key = api_key or env.get("ZYRA_API_KEY") or _text(config.get("api_key"))
    if not server:
        raise SettingsError(
            f'no server: give --server URL, set ZYRA_URL, or write server = "URL" in {path}'
        )
    return Connection(server.rstrip("/"), api_key)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
