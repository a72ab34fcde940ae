"""Gunicorn's side of multiprocess metrics: a fresh private folder per master, a dead
worker's gauges dropped, the folder removed at exit (as api/gunicorn_conf.py calls them)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from api.observability import multiprocess


def test_each_master_gets_a_fresh_private_folder() -> None:
    env: dict[str, str] = {}
    first = Path(multiprocess.make_private_dir(env))
    second = Path(multiprocess.make_private_dir(env))
    try:
        assert env[multiprocess.MULTIPROC_ENV] == str(second) != str(first)
        for folder in (first, second):
            assert folder.name.startswith("zyra-metrics-") and not list(folder.iterdir())
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    finally:
        first.rmdir()
        second.rmdir()


def test_a_dead_workers_live_gauges_go_and_its_counters_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("counter_41.db", "histogram_41.db", "gauge_livesum_41.db",
                 "gauge_livemin_41.db", "gauge_livesum_42.db"):  # fmt: skip
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv(multiprocess.MULTIPROC_ENV, str(tmp_path))
    multiprocess.mark_dead(41)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "counter_41.db", "gauge_livesum_42.db", "histogram_41.db"]  # fmt: skip


def test_only_its_own_folder_is_removed_at_exit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    someone_elses = tmp_path / "prometheus"
    someone_elses.mkdir()
    monkeypatch.setenv(multiprocess.MULTIPROC_ENV, str(someone_elses))
    multiprocess.remove_dir()  # an operator's own PROMETHEUS_MULTIPROC_DIR: left alone
    assert someone_elses.exists()
    ours = Path(multiprocess.make_private_dir({}))
    (ours / "counter_1.db").write_bytes(b"x")
    monkeypatch.setenv(multiprocess.MULTIPROC_ENV, str(ours))
    multiprocess.remove_dir()
    assert not ours.exists()
    assert os.environ[multiprocess.MULTIPROC_ENV] == str(ours)


def test_a_folder_made_for_another_environment_leaves_this_process_values_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the process's own environment switches its metrics to files: a later metric
    of this process still counts in memory (it failed with no folder before)."""
    from prometheus_client import values

    before = values.ValueClass
    monkeypatch.setenv(multiprocess.MULTIPROC_ENV, str(tmp_path))  # as a master has it
    folder = Path(multiprocess.make_private_dir({}))
    folder.rmdir()
    assert values.ValueClass is before
    monkeypatch.delenv(multiprocess.MULTIPROC_ENV)
    from prometheus_client import CollectorRegistry, Counter

    Counter("zyra_unit_total", "a later metric", ["kind"], registry=CollectorRegistry()).labels(
        kind="x"
    ).inc()
