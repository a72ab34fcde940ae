"""Settings that keep the service's own files out of commands' reach."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from api.settings import Settings
from runner.quotas import MB
from runner.sandbox import SandboxMode


def test_an_allowed_prefix_holding_the_data_dir_stops_the_start(tmp_path: Path) -> None:
    """The README's old advice, ZYRA_ALLOWED_PATH_PREFIXES=/tmp with the default data dir
    under /tmp, would let any command copy the job store and the key file."""
    with pytest.raises(ValidationError, match=rf"ZYRA_ALLOWED_PATH_PREFIXES names {tmp_path}, "
                       rf"which holds {tmp_path / 'data'}"):  # fmt: skip
        Settings(allowed_path_prefixes=[str(tmp_path)], data_dir=tmp_path / "data")


@pytest.mark.parametrize("which", ["api_keys_file", "storage_dir", "work_dir"])
def test_no_readable_folder_may_hold_a_key_file_storage_or_work_dir(
    tmp_path: Path, which: str
) -> None:
    shared = tmp_path / "shared"
    with pytest.raises(ValidationError, match="holds"):
        Settings(data_dir=tmp_path / "data", sandbox_tool_paths=[str(shared)],
                 **{which: shared / "inside"})  # fmt: skip


def test_the_sandbox_policy_and_quotas_follow_the_settings(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path / "data",
        allowed_path_prefixes=[str(tmp_path / "shared")],
        sandbox_tool_paths=[str(tmp_path / "tools")],
        sandbox="required",
        run_max_log_mb=3,
        run_max_disk_mb=0,
    )
    policy = settings.sandbox_policy
    assert policy.mode is SandboxMode.REQUIRED
    assert policy.read_paths == [str(tmp_path / "shared")]
    assert policy.tool_paths == [str(tmp_path / "tools")]
    assert str(tmp_path / "data") in policy.private_paths
    assert (settings.run_quotas.log_bytes, settings.run_quotas.disk_bytes) == (3 * MB, None)


def test_an_unknown_sandbox_mode_is_refused_naming_the_choices() -> None:
    with pytest.raises(ValidationError, match="'required', 'best-effort' or 'off'"):
        Settings(sandbox="strict")


def test_zero_turns_each_run_limit_off(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RUN_MAX_LOG_MB", "RUN_MAX_DISK_MB", "RUN_MEMORY_LIMIT_MB",
                 "RUN_FILE_SIZE_LIMIT_MB"):  # fmt: skip
        monkeypatch.setenv(f"ZYRA_{name}", "0")
    settings = Settings()
    assert (settings.run_quotas.log_bytes, settings.run_quotas.disk_bytes) == (None, None)
    assert (settings.run_memory_limit_mb, settings.run_file_size_limit_mb) == (0, 0)
    monkeypatch.setenv("ZYRA_RUN_MEMORY_LIMIT_MB", "10")  # too small to start Python
    with pytest.raises(ValidationError, match="run_memory_limit_mb"):
        Settings()


def test_template_processes_are_the_apis_own_not_a_sync_executors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("ZYRA_TEMPLATE_PROCESSES", "3")
    assert Settings().template_processes == 3
    monkeypatch.setenv("ZYRA_SYNC_EXECUTOR_SOCKET", str(tmp_path / "executor.sock"))
    with pytest.raises(ValidationError, match="give one or the other"):
        Settings()
    monkeypatch.delenv("ZYRA_TEMPLATE_PROCESSES")
    assert Settings().sync_executor_socket == tmp_path / "executor.sock"  # the default yields
    monkeypatch.setenv("ZYRA_TEMPLATE_PROCESSES", "0")
    with pytest.raises(ValidationError, match="template_processes"):
        Settings()
