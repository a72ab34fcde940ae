"""A runner that cannot publish its events still shows its output live: its pod log is
relayed into the job's event log."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from api.backends.pod_logs import PodLogRelay
from runner.events import SqliteEventLog
from runner.lifecycle import JobStatus
from runner.log_format import json_line, output_lines

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


def test_a_json_log_is_relayed_as_the_commands_output_alone(tmp_path: Path) -> None:
    """Runners with ZYRA_LOG_FORMAT=json echo the command's lines as JSON objects: the
    job's watchers get the lines, not the objects, nor the runner's own INFO lines."""
    events = SqliteEventLog(tmp_path / "events.sqlite3")
    lines = [
        json_line("zyra.runner", "runner started") + "\n",
        output_lines("stdout", "INFO: reading field.npy\n"),
        json_line("zyra.runner", "could not store the result", level=logging.WARNING) + "\n",
        output_lines("stderr", "done\n"),
    ]
    core = Core([line.encode() for line in lines])
    relay = PodLogRelay(core, "zyra", events, after_s=0, json_log=True)  # type: ignore[arg-type]
    relay.relay(JOB_ID, POD)
    assert [e.stdout for e in events.read(JOB_ID)] == [
        "INFO: reading field.npy\n",
        "[runner] could not store the result\n",
        "done\n",
    ]


class SlowCore(Core):
    """A pod log whose last lines come after the container has exited."""

    def __init__(self, lines: list[bytes], released: threading.Event) -> None:
        super().__init__(lines)
        self.released = released

    def read_namespaced_pod_log(self, name: str, namespace: str, **kw: Any) -> Iterator[bytes]:
        def lines() -> Iterator[bytes]:
            yield self.lines[0]
            self.released.wait(10)
            time.sleep(0.2)  # the rest arrives while the runner's end is being handled
            yield from self.lines[1:]

        return lines()


def test_the_end_of_a_runner_waits_for_its_relayed_lines(tmp_path: Path) -> None:
    """Every relayed line is in before the job is finalised (whose terminal event is
    the last), and the relay appends nothing once the end was handled."""
    events = SqliteEventLog(tmp_path / "events.sqlite3")
    released = threading.Event()
    core = SlowCore([b"first\n", b"second\n", b"last\n"], released)
    relay = PodLogRelay(core, "zyra", events, after_s=0)  # type: ignore[arg-type]
    relay.follow_if_silent(JOB_ID, POD)
    deadline = time.monotonic() + 10
    while not events.read(JOB_ID) and time.monotonic() < deadline:
        time.sleep(0.02)
    released.set()
    relay.ended(JOB_ID)  # the pod watcher, before it finalises the job
    assert [e.stdout for e in events.read(JOB_ID)] == ["first\n", "second\n", "last\n"]


def test_a_relay_that_does_not_drain_appends_nothing_after_the_end(tmp_path: Path) -> None:
    events = SqliteEventLog(tmp_path / "events.sqlite3")
    released = threading.Event()
    core = SlowCore([b"first\n", b"late\n"], released)
    relay = PodLogRelay(core, "zyra", events, after_s=0)  # type: ignore[arg-type]
    relay.follow_if_silent(JOB_ID, POD)
    deadline = time.monotonic() + 10
    while not events.read(JOB_ID) and time.monotonic() < deadline:
        time.sleep(0.02)
    relay.ended(JOB_ID, drain_timeout_s=0.05)  # the stream is still held up
    released.set()
    time.sleep(0.5)
    assert [e.stdout for e in events.read(JOB_ID)] == ["first\n"]


def test_a_runner_that_ends_before_the_relay_would_start_is_not_waited_for(
    tmp_path: Path,
) -> None:
    """Most runners publish for themselves: their end is handled at once, and their pod
    log is never read."""
    events = SqliteEventLog(tmp_path / "events.sqlite3")
    core = Core([b"INFO: heatmap.png\n"])
    relay = PodLogRelay(core, "zyra", events, after_s=30)  # type: ignore[arg-type]
    relay.follow_if_silent(JOB_ID, POD)
    started = time.monotonic()
    relay.ended(JOB_ID)
    assert time.monotonic() - started < 1
    time.sleep(0.2)
    assert core.read == []
