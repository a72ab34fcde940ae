"""Callbacks a receiver can rely on: each ended job with a `callback_url` is POSTed
there at least once, retried with backoff for ZYRA_CALLBACK_RETRY_WINDOW_S, and where
its delivery stands is part of the job record (`callback`).

One thread per API process keeps the schedule of attempts; a small pool makes them
(each may wait on DNS and on the receiver). An attempt first claims the job in the store
(`callback_claimed_until`), so two processes resuming the same pending callbacks never
POST it at once. Pending callbacks survive the process: the next API process to start
resumes them (`resume`)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from api.jobs.callback_signing import HEADER, signature
from api.jobs.callbacks import MAX_REDIRECTS, Answer, post_once
from api.jobs.records import CallbackDelivery, DeliveryState, JobRecord, utcnow
from api.jobs.store import JobStore
from api.observability.log_context import handles_job
from api.observability.metrics import callback_attempt
from runner import tracing
from runner.outbound import OutboundPolicy

log = logging.getLogger("zyra.callbacks")

# Answers that may change if asked again: the receiver is busy, restarting, rate
# limiting, or (409) an n8n execution that has not reached its Wait node yet.
RETRIED_STATUSES = frozenset({408, 409, 425, 429})
# Attempts at once: a receiver that holds each connection until the timeout delays
# the others only once all of these wait on it.
WORKERS = 16
RESUME_LOOKBACK = timedelta(days=1)  # pending callbacks older than the window: a last try


@dataclass(frozen=True)
class RetryRules:
    window_s: float  # after the job ended
    not_found_window_s: float  # 404 is retried this long after the job ended
    max_backoff_s: float

    def next_delay(self, answer: Answer, attempts: int, ended_s_ago: float) -> float | None:
        """Seconds until the next attempt after `answer` (the `attempts`-th), or None:
        delivery is over (delivered, refused for good, or the window has passed)."""
        if answer.delivered or answer.refused or ended_s_ago >= self.window_s:
            return None
        status = answer.status
        if not (
            status is None
            or status >= 500
            or status in RETRIED_STATUSES
            or (status == 404 and ended_s_ago < self.not_found_window_s)
        ):
            return None
        delay = min(self.max_backoff_s, 2.0 ** (attempts - 1))
        if answer.retry_after_s is not None:
            delay = max(delay, min(answer.retry_after_s, self.max_backoff_s))
        return min(delay, self.window_s - ended_s_ago)  # the last try at the window's end


def _claim(now: datetime, until: datetime) -> Callable[[JobRecord], JobRecord | None]:
    def change(record: JobRecord) -> JobRecord | None:
        delivery, claimed = record.callback, record.callback_claimed_until
        if (
            delivery is None
            or delivery.state is not DeliveryState.PENDING
            or record.callback_target is None
            or not record.status.is_terminal()
            or (claimed is not None and claimed > now)
        ):
            return None
        return record.model_copy(update={"callback_claimed_until": until})

    return change


class CallbackOutbox:
    """This process's callbacks: `schedule` one after its job ended; `resume` at start."""

    def __init__(
        self,
        store: JobStore,
        policy: OutboundPolicy,
        rules: RetryRules,
        timeout_s: float,
        render: Callable[[JobRecord], bytes],
        user_agent: str = "zyra-orchestrator",
    ) -> None:
        """`render` makes the body: the job as `GET /jobs/{id}` shows it."""
        self.store, self.policy, self.rules = store, policy, rules
        self.timeout_s, self.render, self.user_agent = timeout_s, render, user_agent
        self._due: list[tuple[float, int, str]] = []  # (monotonic time, order, job id)
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._stopped = False
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="callback")
        self._thread = threading.Thread(target=self._run, name="callback-outbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Attempts under way may finish; what is scheduled waits for the next process."""
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(5)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def schedule(self, job_id: str, delay_s: float = 0.0) -> None:
        with self._wake:
            heapq.heappush(self._due, (time.monotonic() + delay_s, next(self._order), job_id))
            self._wake.notify()

    def resume(self) -> int:
        """Schedule the pending callbacks of jobs ended lately (an earlier process's);
        how many. Those past the window get one last attempt."""
        now = utcnow()
        lookback = timedelta(seconds=self.rules.window_s) + RESUME_LOOKBACK
        resumed = 0
        for job_id in self.store.finished_since(now - lookback):
            record = self.store.get(job_id)
            delivery = record.callback if record is not None else None
            if record is None or delivery is None or delivery.state is not DeliveryState.PENDING:
                continue
            due = max(
                t for t in (delivery.next_attempt_at, record.callback_claimed_until, now) if t
            )
            self.schedule(job_id, (due - now).total_seconds())
            resumed += 1
        if resumed:
            log.info("resumed %d pending callbacks", resumed)
        return resumed

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    timeout = self._due[0][0] - time.monotonic() if self._due else None
                    self._wake.wait(timeout)
                if self._stopped:
                    return
                _, _, job_id = heapq.heappop(self._due)
            self._pool.submit(self._attempt_logged, job_id)

    def _attempt_logged(self, job_id: str) -> None:
        try:
            self.attempt(job_id)
        except Exception:  # e.g. the store down: try again a little later
            log.exception("job %s: callback attempt failed; retrying", job_id)
            self.schedule(job_id, min(self.rules.max_backoff_s, 5.0))

    @handles_job()
    def attempt(self, job_id: str) -> CallbackDelivery | None:
        """One attempt, if the job's callback is pending and no one else is making one;
        where delivery stands after it (None: no attempt made)."""
        now = utcnow()
        # Longer than an attempt takes (a timeout per hop): a process that dies meanwhile
        # holds it up no longer than this.
        lease = timedelta(seconds=self.timeout_s * (MAX_REDIRECTS + 1) + 5)
        record = self.store.update(job_id, _claim(now, now + lease))
        if record is None or record.callback is None or record.callback_target is None:
            return None
        target, attempts = record.callback_target, record.callback.attempts + 1
        shown = record.model_copy(
            update={"callback": CallbackDelivery(attempts=attempts, **_last(record.callback))}
        )
        body = self.render(shown)
        headers = {
            **target.headers,
            "Content-Type": "application/json",
            "User-Agent": self.user_agent,
            "Zyra-Job-Id": job_id,
            "Zyra-Delivery-Attempt": str(attempts),
        }
        if target.secret:
            headers[HEADER] = signature(target.secret, int(time.time()), body)
        with (
            tracing.span("job.callback", {"zyra.job_id": job_id}, record.traceparent),
            httpx.Client(timeout=self.timeout_s) as client,
        ):  # in the job's trace: the POST's own span is a child (api/observability/tracing.py)
            answer = post_once(client, target.url, body, headers, self.policy)
        ended = record.finished_at or now
        done = utcnow()
        delay = self.rules.next_delay(answer, attempts, (done - ended).total_seconds())
        delivery = CallbackDelivery(
            state=DeliveryState.DELIVERED
            if answer.delivered
            else DeliveryState.PENDING
            if delay is not None
            else DeliveryState.FAILED,
            attempts=attempts,
            last_status=answer.status,
            last_error=answer.error,
            delivered_at=done if answer.delivered else None,
            next_attempt_at=done + timedelta(seconds=delay) if delay is not None else None,
        )
        self.store.update(
            job_id,
            lambda r: r.model_copy(update={"callback": delivery, "callback_claimed_until": None}),
        )
        callback_attempt(answer.delivered, retrying=delay is not None)
        if delay is not None:
            log.warning("job %s: callback attempt %d: %s; again in %.0f s",
                        job_id, attempts, answer.error, delay)  # fmt: skip
            self.schedule(job_id, delay)
        elif not answer.delivered:
            log.warning("job %s: callback not delivered after %d attempts: %s",
                        job_id, attempts, answer.error)  # fmt: skip
        return delivery


def _last(delivery: CallbackDelivery) -> dict[str, object]:
    """What the body says of the attempts before this one."""
    return {"last_status": delivery.last_status, "last_error": delivery.last_error}
