"""A runner that cannot publish its events still shows its output live: its pod log is
relayed into the job's event log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from api.backends.pod_logs import PodLogRelay
from runner.events import SqliteEventLog
from runner.lifecycle import JobStatus

JOB_ID = "0123456789abcdef0123456789abcdef"
POD = f"zyra-{JOB_ID}-x7k2p"


class Core:
    """The pod log API: a log that grows line by line."""

    def __init__(self, lines: list[bytes]) -> None:
        self.lines = lines
        self.read: list[dict[str, Any]] = []

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> Iterator[bytes]:
        self.read.append({"name": name, "namespace": namespace, **kw})
        return iter(self.lines)


def test_a_silent_runners_pod_log_becomes_its_output(tmp_path: Path) -> None:
    events = SqliteEventLog(tmp_path / "events.sqlite3")
    core = Core([b"INFO: reading field.npy\n", b"INFO: heatmap.png\n"])
    PodLogRelay(core, "zyra", events, after_s=0).relay(JOB_ID, POD)  # type: ignore[arg-type]
    assert [e.stdout for e in events.read(JOB_ID)] == [
        "INFO: reading field.npy\n",
        "INFO: heatmap.png\n",
    ]
    [read] = core.read
    assert (read["name"], read["namespace"], read["container"]) == (POD, "zyra", "runner")
    assert read["follow"] is True


def test_a_runner_that_publishes_for_itself_is_not_relayed(tmp_path: Path) -> None:
    events = SqliteEventLog(tmp_path / "events.sqlite3")
    events.append(JOB_ID, status=JobStatus.RUNNING)
    core = Core([b"INFO: heatmap.png\n"])
    PodLogRelay(core, "zyra", events, after_s=0).relay(JOB_ID, POD)  # type: ignore[arg-type]
    assert core.read == []
    assert [e.stdout for e in events.read(JOB_ID)] == [None]
