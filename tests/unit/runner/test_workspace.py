"""A job's folders: matplotlib's font list, made once (as the runner image makes it when
built), copied into each job's MPLCONFIGDIR so that its command does not scan the fonts
again. matplotlib says "generated new fontManager" (INFO) when it scans them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.workspace import FONT_CACHE_ENV, JobFolders

SCANNED = "generated new fontManager"


def _import_matplotlib(config: Path) -> str:
    """What a fresh process importing matplotlib with this MPLCONFIGDIR logs."""
    done = subprocess.run(
        [sys.executable, "-c",
         "import logging; logging.basicConfig(level=logging.INFO); import matplotlib.font_manager"],
        env={"PATH": os.environ["PATH"], "MPLCONFIGDIR": str(config), "HOME": str(config)},
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return done.stderr


@pytest.fixture(scope="module")
def image_font_list(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with matplotlib's font list, made as Dockerfile.runner makes it."""
    folder = tmp_path_factory.mktemp("image-fonts")
    assert SCANNED in _import_matplotlib(folder)
    return folder


def test_a_job_starts_with_the_font_list_and_matplotlib_reads_it(
    image_font_list: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(FONT_CACHE_ENV, str(image_font_list))
    folders = JobFolders(tmp_path / "job")
    folders.create()
    [made] = image_font_list.glob("fontlist-*.json")
    copied = folders.matplotlib_config / made.name
    assert copied.read_bytes() == made.read_bytes()
    assert folders.env()["MPLCONFIGDIR"] == str(folders.matplotlib_config)
    assert SCANNED not in _import_matplotlib(folders.matplotlib_config)
    assert copied.read_bytes() == made.read_bytes()


def test_without_the_variable_a_job_starts_empty_and_matplotlib_scans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(FONT_CACHE_ENV, raising=False)
    folders = JobFolders(tmp_path / "job")
    folders.create()
    assert list(folders.matplotlib_config.iterdir()) == []
    assert SCANNED in _import_matplotlib(folders.matplotlib_config)


def test_a_missing_folder_or_odd_entries_copy_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "fontlist-v1.json").symlink_to("/etc/passwd")
    (odd / "fontlist-v2.json").mkdir()
    (odd / "other.json").write_text("{}")
    for source in (tmp_path / "missing", odd):
        monkeypatch.setenv(FONT_CACHE_ENV, str(source))
        folders = JobFolders(tmp_path / f"job-{source.name}")
        folders.create()
        assert list(folders.matplotlib_config.iterdir()) == []
