"""Relays a runner's pod log into its job's event log when the runner publishes nothing
itself (it cannot reach Redis), so that clients watching the job still see its output
live. The final record does not depend on it: finalisation reads the pod log again."""

from __future__ import annotations

import logging
import threading
import time

from kubernetes import client

from runner.events import EventLog
from runner.lifecycle import JobStatus

log = logging.getLogger("zyra.kubernetes")


class PodLogRelay:
    def __init__(
        self, core: client.CoreV1Api, namespace: str, events: EventLog, after_s: float
    ) -> None:
        self.core, self.namespace, self.events = core, namespace, events
        self.after_s = after_s  # how long a runner may stay silent
        self._following: set[str] = set()  # job ids; touched by the pod watcher alone

    def follow_if_silent(self, job_id: str, pod_name: str) -> None:
        """Once per running runner: relay its pod log if it is still silent after a while."""
        if job_id in self._following:
            return
        self._following.add(job_id)
        threading.Thread(target=self.relay, args=(job_id, pod_name), daemon=True).start()

    def ended(self, job_id: str) -> None:
        """Its runner ended: the relay stops with the pod's log."""
        self._following.discard(job_id)

    def relay(self, job_id: str, pod_name: str) -> None:
        """Wait `after_s`; then, unless the runner has published, put each line of its
        pod log into the job's event log as it grows, until the pod goes."""
        time.sleep(self.after_s)
        # The runner's first event says it is running; if it is there, the runner
        # reaches Redis and publishes for itself.
        if any(e.status is JobStatus.RUNNING for e in self.events.read(job_id, 0, limit=100)):
            return
        log.warning("job %s: runner publishes no events; relaying its pod log", job_id)
        try:
            stream = self.core.read_namespaced_pod_log(
                pod_name, self.namespace, container="runner", follow=True,
                _preload_content=False,
            )  # fmt: skip
            for line in stream:  # urllib3 yields the log line by line as it grows
                self.events.append(job_id, stdout=line.decode("utf-8", "replace"))
        except Exception as exc:  # the pod went away: the final record takes over
            log.warning("job %s: pod log relay ended: %s", job_id, exc)
