"""Output chunks become line events; binary stdout is not published; outages are ridden out."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.events import RedisEventLog, SqliteEventLog
from runner.execute import Stream
from runner.publish import OutputPublisher
from tests.services import RedisServer


def test_lines_split_across_chunks_arrive_whole_and_in_order(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "e.sqlite3")
    pub = OutputPublisher(log, "j", echo=False)
    for chunk in (b"one\ntw", b"o\nthr", b"ee\n", b"no newline at end"):
        pub.output(Stream.STDOUT, chunk)
    pub.output(Stream.STDERR, b"warning\n")
    assert pub.close()
    events = log.read("j")
    assert "".join(e.stdout or "" for e in events) == "one\ntwo\nthree\nno newline at end"
    assert all(e.stdout is None or e.stdout.endswith("\n") for e in events[:-1])
    assert [e.stderr for e in events if e.stderr] == ["warning\n"]


def test_secrets_are_scrubbed_from_events_and_echo_even_split_across_reads(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    log = SqliteEventLog(tmp_path / "e.sqlite3")
    pub = OutputPublisher(log, "j", secrets=["hunter2"])
    for chunk in (b"Command: zyra acquire ftp --password=hun", b"ter2 x\n", b"tail hunter2"):
        pub.output(Stream.STDERR, chunk)
    assert pub.close()
    published = "".join(e.stderr or "" for e in log.read("j"))
    assert published == "Command: zyra acquire ftp --password=*** x\ntail ***"
    assert capfd.readouterr().err == published


def test_binary_stdout_is_not_published(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "e.sqlite3")
    pub = OutputPublisher(log, "j", echo=False)
    pub.output(Stream.STDOUT, b"CDF\x02\x00\x00\x00\x01binary\n")
    pub.output(Stream.STDOUT, b"more\n")
    pub.output(Stream.STDERR, b"INFO: wrote\n")
    assert pub.close()
    assert pub.stdout_binary
    assert [(e.stdout, e.stderr) for e in log.read("j")] == [(None, "INFO: wrote\n")]


def test_progress_printed_by_the_command_is_published(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "e.sqlite3")
    pub = OutputPublisher(log, "j", echo=False)
    pub.progress = 0.15
    pub.output(Stream.STDERR, b"[job x] step 2/2: visualize heatmap\n")
    pub.close()
    assert [e.progress for e in log.read("j") if e.progress is not None] == [0.525]


def test_events_written_while_redis_is_down_arrive_once_it_is_back(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        log = RedisEventLog(redis.url)
        pub = OutputPublisher(log, "j", echo=False)
        pub.output(Stream.STDOUT, b"before\n")
        redis.stop()
        for i in range(5):
            pub.output(Stream.STDOUT, f"during {i}\n".encode())
        assert pub.unavailable and "Redis" in pub.unavailable
        redis.start()
        pub.output(Stream.STDOUT, b"after\n")
        assert pub.close(wait_s=30)
        text = "".join(e.stdout or "" for e in log.read("j"))
        assert text == "before\n" + "".join(f"during {i}\n" for i in range(5)) + "after\n"
        assert [e.seq for e in log.read("j")] == list(range(1, len(log.read("j")) + 1))
    finally:
        redis.stop()
