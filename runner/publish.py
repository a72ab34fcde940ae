"""Turns a command's output into events, echoes it, and rides out log outages.

Each read chunk becomes one event per stream carrying its complete lines (a
partial line waits for its end), so 10,000 short lines cost a handful of
appends, not 10,000. The same text is also written to the runner's own
stdout/stderr, so `kubectl logs` shows the command's output. Secret argument
values (`spec.secrets`) are scrubbed from both first: whole lines only, so a secret
split across two reads is still found. If the event log is unreachable, events wait
in memory, in order, and are retried.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

from runner import log_format, progress
from runner.dependencies import DependencyUnavailableError
from runner.events import EventLog
from runner.execute import Stream
from runner.outputs import looks_binary
from runner.secret_args import Redactor


class OutputPublisher:
    def __init__(
        self, log: EventLog, job_id: str, echo: bool = True, secrets: Iterable[str] = ()
    ) -> None:
        self.log, self.job_id, self.echo = log, job_id, echo
        self.scrub = Redactor(secrets)
        self._pending: deque[dict[str, Any]] = deque()
        self._partial = {Stream.STDOUT: b"", Stream.STDERR: b""}
        self._retry_at = 0.0
        self._backoff_s = 0.5
        self.stdout_binary = False
        self.progress = progress.QUEUED
        self.unavailable: str | None = None  # last error while the log was down

    def emit(self, **fields: Any) -> None:
        fields.setdefault("ts", time.time())
        self._pending.append(fields)
        self._drain()

    def _drain(self) -> None:
        if time.monotonic() < self._retry_at:
            return
        while self._pending:
            try:
                self.log.append(self.job_id, **self._pending[0])
            except DependencyUnavailableError as exc:
                self.unavailable = str(exc)
                self._retry_at = time.monotonic() + self._backoff_s
                self._backoff_s = min(self._backoff_s * 2, 10.0)
                return
            self._pending.popleft()
            self._backoff_s = 0.5

    def set_progress(self, value: float) -> None:
        if value >= self.progress + 0.01 or value in (progress.DONE, progress.COMMAND_DONE):
            self.progress = value
            self.emit(progress=value)

    def output(self, stream: Stream, chunk: bytes) -> None:
        if stream is Stream.STDOUT and not self.stdout_binary and looks_binary(chunk):
            # Binary stdout becomes an output file, not log lines.
            self.stdout_binary = True
            self._partial[stream] = b""
        if stream is Stream.STDOUT and self.stdout_binary:
            return
        data = self._partial[stream] + chunk
        complete, _, rest = data.rpartition(b"\n")
        self._partial[stream] = rest
        if complete:
            self._publish_text(stream, complete + b"\n")

    def _publish_text(self, stream: Stream, data: bytes) -> None:
        decoded = data.decode("utf-8", errors="replace")
        text = self.scrub(decoded)
        if self.echo:
            target = sys.stdout if stream is Stream.STDOUT else sys.stderr
            if log_format.json_output():  # one JSON object per line, like every other
                target.write(log_format.output_lines(stream.value, text))
            else:
                target.buffer.write(data if text == decoded else text.encode("utf-8"))
            target.flush()
        self.emit(**{stream.value: text})
        fractions = [f for line in text.splitlines() if (f := progress.command_fraction(line))]
        if fractions:
            self.set_progress(progress.overall(fractions[-1]))

    def close(self, wait_s: float = 60.0) -> bool:
        """Publish what is left; wait up to `wait_s` for the log. True if all got through."""
        for stream, rest in self._partial.items():
            if rest:
                self._partial[stream] = b""
                self._publish_text(stream, rest)
        deadline = time.monotonic() + wait_s
        while self._pending and time.monotonic() < deadline:
            self._retry_at = 0.0
            self._drain()
            if self._pending:
                time.sleep(min(self._backoff_s, max(0.0, deadline - time.monotonic())))
        return not self._pending
