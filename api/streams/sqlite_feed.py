"""The embedded log's feed: one thread per API process notices new events, whoever
appended them (this process, a local runner), and wakes the readers of those jobs.

SQLite has no notifications across processes, so the thread asks the file, cheaply:
`PRAGMA data_version` changes when another connection has committed; only then does it
look for the jobs of rows newer than the newest it saw. A new row's rowid is above
every row's in the table; so while that newest row is there, rows with a larger
rowid are exactly the new ones. When it is gone (retention forgot its job) rowids may
be reused: every reader is woken to look for itself."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import anyio

from api.streams.watch import JobWatch

log = logging.getLogger("zyra.streams")

POLL_S = 0.02  # while some job is followed: the most a reader waits for a runner's event
IDLE_S = 1.0  # while none is: keeps the newest row current, so that waking is cheap

Row = tuple[int, str, int]  # rowid, job_id, seq


class SqliteEventFeed:
    def __init__(
        self, path: Path, watch: JobWatch, poll_s: float = POLL_S, idle_s: float = IDLE_S
    ) -> None:
        self.path, self.watch, self.poll_s, self.idle_s = path, watch, poll_s, idle_s
        self._stop = threading.Event()
        self._followed = threading.Event()  # set when a job gains its first reader
        self._thread: threading.Thread | None = None
        watch.on_new_job(self._followed.set)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="sqlite-event-feed", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        self._followed.set()
        if self._thread is not None:
            await anyio.to_thread.run_sync(self._thread.join, 5)

    def _run(self) -> None:
        db = sqlite3.connect(self.path, timeout=5, isolation_level=None, check_same_thread=False)
        try:
            version, newest = self._version(db), self._newest(db)
            while not self._stop.is_set():
                if self.watch.followed:
                    self._stop.wait(self.poll_s)
                else:
                    self._followed.wait(self.idle_s)
                    self._followed.clear()
                try:
                    now = self._version(db)
                    if now == version:
                        continue
                    version = now
                    newest = self._wake_readers(db, newest)
                except sqlite3.Error as exc:  # e.g. locked past the timeout: next round
                    log.warning("event feed: %s", exc)
        finally:
            db.close()

    def _wake_readers(self, db: sqlite3.Connection, newest: Row | None) -> Row | None:
        """Wake the readers of jobs with rows newer than `newest`; the newest row now."""
        if (
            newest is not None
            and not db.execute(
                "SELECT 1 FROM events WHERE rowid = ? AND job_id = ? AND seq = ?", newest
            ).fetchone()
        ):
            self.watch.notify_threadsafe()  # every reader looks for itself
            return self._newest(db)
        # SQLite gives the seq of the row with the largest rowid of each group.
        rows: list[Row] = db.execute(
            "SELECT MAX(rowid), job_id, seq FROM events WHERE rowid > ? GROUP BY job_id",
            (newest[0] if newest else 0,),
        ).fetchall()
        if not rows:
            return newest
        # Read after the query: a reader that starts following later reads these rows
        # itself, so none is missed.
        followed = self.watch.followed
        news = [job_id for _, job_id, _ in rows if job_id in followed]
        if news:
            self.watch.notify_threadsafe(news)
        return max(rows)

    @staticmethod
    def _version(db: sqlite3.Connection) -> int:
        return db.execute("PRAGMA data_version").fetchone()[0]

    @staticmethod
    def _newest(db: sqlite3.Connection) -> Row | None:
        return db.execute(
            "SELECT rowid, job_id, seq FROM events ORDER BY rowid DESC LIMIT 1"
        ).fetchone()
