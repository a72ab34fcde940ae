"""Server and key: a flag, else the environment, else the config file."""

from __future__ import annotations

from pathlib import Path

import pytest
from zyra_client.cli.settings import Connection, SettingsError, resolve


def test_flags_then_environment_then_file(tmp_path: Path) -> None:
    config = tmp_path / "zyra-remote" / "config.toml"
    config.parent.mkdir()
    config.write_text('server = "http://file:1/"\napi_key = "file-key"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path)}

    assert resolve(None, None, env) == Connection("http://file:1", "file-key")
    env_too = {**env, "ZYRA_URL": "http://env:2", "ZYRA_API_KEY": "env-key"}
    assert resolve(None, None, env_too) == Connection("http://env:2", "env-key")
    assert resolve("http://flag:3", None, env_too) == Connection("http://flag:3", "env-key")
    assert resolve(None, "flag-key", env) == Connection("http://file:1", "flag-key")


def test_zyra_server_the_older_name_is_read_only_without_zyra_url(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path), "ZYRA_SERVER": "http://older:4/"}
    assert resolve(None, None, env).server == "http://older:4"
    assert resolve(None, None, {**env, "ZYRA_URL": "http://env:2"}).server == "http://env:2"


def test_no_server_anywhere_and_a_broken_file(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path)}
    with pytest.raises(SettingsError, match="no server"):
        resolve(None, None, env)
    config = tmp_path / "zyra-remote" / "config.toml"
    config.parent.mkdir()
    config.write_text("server = \n")
    with pytest.raises(SettingsError, match="cannot read"):
        resolve(None, None, env)
