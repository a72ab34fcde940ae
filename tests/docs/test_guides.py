"""Every fenced block of the quick start and the guides, run as a reader runs them.

A page's blocks run in order in a fresh folder of its own, against a live service, as if
typed into one terminal: a ```bash block with `bash -euo pipefail`, a ```python block
with the project's python, both with ZYRA_URL and ZYRA_API_KEY set and the venv's bin/
first on PATH (so `python` and `zyra-remote` are the project's). Shell variables a bash
block sets are kept for the page's later blocks, as a terminal keeps them (so a block
may not `cd` away). Any other fence language fails: nothing un-run can hide in a page.
Each block must exit 0. The service is what `make run` starts (tests/docs/conftest.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.docs.conftest import MAKE_RUN_KEY
from tests.docs.fenced_blocks import Block, blocks
from tests.e2e.conftest import ApiServer

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = [DOCS / "quickstart.md", *sorted((DOCS / "guides").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
READER_SHELL = Path(__file__).with_name("reader_shell.sh")
SUFFIXES = {"bash": "sh", "python": "py"}
BLOCK_TIMEOUT_S = 120

# What the quick start's runs must produce: the bytes of this local Zyra command.
QUICKSTART_HEATMAP = [
    *("visualize", "heatmap", "--input", "field.npy", "--output", "heatmap.png"),
    *("--no-coastline", "--no-borders", "--no-gridlines"),
]
QUICKSTART_DOWNLOADS = [
    "heatmap.png",
    "heatmap-async.png",
    "remote/heatmap.png",
    "python/heatmap.png",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Set by bash itself: not part of what a block hands on.
NOT_CARRIED = {"PWD", "OLDPWD", "SHLVL", "_"}


def reader_env(server: ApiServer, home: Path) -> dict[str, str]:
    """A reader's shell: the service and key, the venv first on PATH, zyra-remote's
    config and cache folders of its own, and no other ZYRA_* setting to lean on."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("ZYRA_")}
    return {
        **inherited,
        "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "ZYRA_URL": server.url,
        "ZYRA_API_KEY": MAKE_RUN_KEY,
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_CACHE_HOME": str(home / "cache"),
    }


def _read_env(path: Path) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in path.read_text().split("\0") if "=" in item)
    return {name: value for name, value in pairs if name not in NOT_CARRIED}


class PageSession:
    """One page's blocks, in order, in one working folder, as one terminal runs them:
    the environment and the shell variables a bash block leaves are the next block's
    (a python block sees the environment only, as a program started there would)."""

    def __init__(self, env: dict[str, str], work: Path, scripts: Path) -> None:
        self.env, self.work, self.scripts = env, work, scripts
        self.state = scripts / "shell-variables"

    def run(self, block: Block) -> None:
        if block.language not in SUFFIXES:
            pytest.fail(
                f"{block.where}: a ```{block.language or '(no language)'} block; blocks are "
                "```bash or ```python (sample output goes in comments inside them)",
                pytrace=False,
            )
        script = self.scripts / f"{block.page.stem}-line{block.line}.{SUFFIXES[block.language]}"
        script.write_text(block.code, encoding="utf-8")
        if block.language == "bash":
            words = ["bash", "-euo", "pipefail", str(READER_SHELL), str(script),
                     str(self.state), str(self.scripts)]  # fmt: skip
        else:
            words = [sys.executable, str(script)]
        ran = subprocess.run(
            words, cwd=self.work, env=self.env, capture_output=True, text=True,
            timeout=BLOCK_TIMEOUT_S,
        )  # fmt: skip
        if ran.returncode != 0:
            pytest.fail(
                f"{block.where}: the ```{block.language} block exited {ran.returncode}\n"
                f"--- stdout\n{ran.stdout}--- stderr\n{ran.stderr}",
                pytrace=False,
            )
        if block.language == "bash":
            self.env = _read_env(self.scripts / "env")
            where = (self.scripts / "pwd").read_text()
            assert Path(where) == self.work, (
                f"{block.where}: the block ends in {where}; a reader's shell would stay "
                "there, the next block would not: use ( cd … ) or paths instead"
            )


def check_quickstart_heatmaps(work: Path, tmp_path: Path) -> None:
    """Every heatmap the quick start downloads is the PNG a local Zyra run makes."""
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(work / "field.npy", local / "field.npy")
    direct = subprocess.run(
        [str(VENV_BIN / "zyra"), *QUICKSTART_HEATMAP], cwd=local, capture_output=True,
        text=True, timeout=BLOCK_TIMEOUT_S,
    )  # fmt: skip
    assert direct.returncode == 0, direct.stderr
    expected = (local / "heatmap.png").read_bytes()
    assert expected.startswith(PNG_MAGIC)
    for name in QUICKSTART_DOWNLOADS:
        assert (work / name).read_bytes() == expected, f"{name} differs from a local run"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(DOCS)))
def test_every_block_of_the_page_runs(page: Path, docs_server: ApiServer, tmp_path: Path) -> None:
    page_blocks = blocks(page)
    assert page_blocks, f"{page.name} has no blocks to run"
    work, scripts = tmp_path / "work", tmp_path / "blocks"
    work.mkdir()
    scripts.mkdir()
    session = PageSession(reader_env(docs_server, tmp_path), work, scripts)
    for block in page_blocks:
        session.run(block)
    if page.name == "quickstart.md":
        check_quickstart_heatmaps(work, tmp_path)


def test_the_guides_are_there() -> None:
    names = {page.name for page in PAGES}
    assert {"quickstart.md", "sync-and-async.md", "files.md", "streaming.md",
            "pipelines.md"} <= names  # fmt: skip
