"""The layer cache of Dockerfile replays: a RUN is put back only when nothing it was
made from changed, and never from a snapshot that was written to since it was kept."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.dockerfiles import Dockerfile, Replay
from tests.deploy.layer_cache import LayerCache

DOCKERFILE = """\
ARG OUT=/out
FROM python:3.11-slim-bookworm AS builder
ARG OUT
WORKDIR /src
COPY input.txt ./
RUN mkdir -p "$OUT" && cat input.txt > "$OUT/made" && date +%s%N >> "$OUT/made"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "context").mkdir()
    (tmp_path / "context" / "input.txt").write_text("first\n")
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path


def build(project: Path) -> tuple[str, bool]:
    """Replay the builder in the project's fixed folder: what it made, and whether the
    RUN was put back rather than run."""
    out = project / "work" / "out"
    replay = Replay(
        Dockerfile.parse(project / "Dockerfile"),
        project / "context",
        project / "work" / "rootfs",
        {"OUT": str(out)},
        cache=LayerCache(project / "cache", min_seconds=0),
    )
    replay.run_stage("builder")
    [run] = replay.timings
    return (out / "made").read_text(), run.cached


def test_an_unchanged_run_is_put_back_as_it_was_made(project: Path) -> None:
    made, cached = build(project)
    assert made.startswith("first\n") and not cached
    assert build(project) == (made, True)


def test_a_changed_copy_source_runs_again(project: Path) -> None:
    build(project)
    (project / "context" / "input.txt").write_text("second\n")
    made, cached = build(project)
    assert made.startswith("second\n") and not cached


def test_a_snapshot_written_to_through_a_link_is_thrown_away(project: Path) -> None:
    made, _ = build(project)
    # The working copy's file is a hard link to the kept one: writing into it in place
    # changes the snapshot too. The next build must not trust it.
    with open(project / "work" / "out" / "made", "a") as shared:
        shared.write("tampered\n")
    again, cached = build(project)
    assert not cached and "tampered" not in again and again.startswith("first\n")
    assert again != made  # run again: a new timestamp


def test_where_pip_keeps_its_cache_is_not_an_input(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI sets PIP_CACHE_DIR, a developer's shell may not: the same layer either way."""
    monkeypatch.delenv("PIP_CACHE_DIR", raising=False)
    made, _ = build(project)
    monkeypatch.setenv("PIP_CACHE_DIR", str(project / "pip-cache"))
    assert build(project) == (made, True)
