"""Relays a runner's pod log into its job's event log when the runner publishes nothing
itself (it cannot reach Redis), so that clients watching the job still see its output
live. In a JSON log (ZYRA_LOG_FORMAT=json) only the command's echoed output is relayed,
as text. Its events are the job's output: when the runner ends, the relay is drained
before the job is finalised, so that every line is in before the terminal event and
none comes after it."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from kubernetes import client

from runner.events import EventLog
from runner.lifecycle import JobStatus
from runner.log_format import plain_output

log = logging.getLogger("zyra.kubernetes")
# How long the end of a runner waits for its relay to take the rest of the pod log (the
# kubelet ends the stream once the container has exited).
DRAIN_TIMEOUT_S = 5.0


@dataclass
class _Relay:
    stop: threading.Event = field(default_factory=threading.Event)
    relaying: threading.Event = field(default_factory=threading.Event)  # past the wait
    thread: threading.Thread | None = None


class PodLogRelay:
    def __init__(
        self,
        core: client.CoreV1Api,
        namespace: str,
        events: EventLog,
        after_s: float,
        json_log: bool = False,
    ) -> None:
        """`json_log`: runners write JSON lines (ZYRA_LOG_FORMAT=json)."""
        self.core, self.namespace, self.events = core, namespace, events
        self.after_s = after_s  # how long a runner may stay silent
        self.json_log = json_log
        self._following: dict[str, _Relay] = {}  # by job id; touched by the pod watcher alone

    def follow_if_silent(self, job_id: str, pod_name: str) -> None:
        """Once per running runner: relay its pod log if it is still silent after a while."""
        if job_id in self._following:
            return
        relay = _Relay()
        relay.thread = threading.Thread(target=self.relay, args=(job_id, pod_name, relay),
                                        daemon=True)  # fmt: skip
        self._following[job_id] = relay
        relay.thread.start()

    def ended(self, job_id: str, drain_timeout_s: float = DRAIN_TIMEOUT_S) -> None:
        """Its runner ended: a relay that is relaying takes the rest of the log (within
        the timeout); then none appends anything more."""
        relay = self._following.pop(job_id, None)
        if relay is None:
            return
        if relay.relaying.is_set() and relay.thread is not None:
            relay.thread.join(drain_timeout_s)
            if relay.thread.is_alive():
                log.warning("job %s: pod log relay not drained in %.0f s", job_id, drain_timeout_s)
        relay.stop.set()

    def relay(self, job_id: str, pod_name: str, state: _Relay | None = None) -> None:
        """Wait `after_s`; then, unless the runner has published, put each line of its
        pod log into the job's event log as it grows, until the pod goes or it is
        stopped."""
        state = state or _Relay()
        if state.stop.wait(self.after_s):
            return
        # The runner's first event says it is running; if it is there, the runner
        # reaches Redis and publishes for itself.
        if any(e.status is JobStatus.RUNNING for e in self.events.read(job_id, 0, limit=100)):
            return
        state.relaying.set()
        if state.stop.is_set():  # the runner ended meanwhile: its end does not wait
            return
        log.warning("job %s: runner publishes no events; relaying its pod log", job_id)
        try:
            stream = self.core.read_namespaced_pod_log(
                pod_name, self.namespace, container="runner", follow=True,
                _preload_content=False,
            )  # fmt: skip
            for line in stream:  # urllib3 yields the log line by line as it grows
                text = line.decode("utf-8", "replace")
                text = plain_output(text) if self.json_log else text
                if state.stop.is_set():
                    break
                if text:
                    self.events.append(job_id, stdout=text)
        except Exception as exc:  # the pod went away: the final record takes over
            log.warning("job %s: pod log relay ended: %s", job_id, exc)
