"""One SQLite file shared by threads and processes: the embedded stores' base."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

INCREMENTAL = 2  # PRAGMA auto_vacuum's value for incremental
VACUUM_MIN_FREE_PAGES = 1024  # 4 MiB of 4 KiB pages: less is not worth rewriting a file


class SqliteFile:
    """WAL mode, and one connection per thread and process: opening one per call is
    too slow for a command that prints thousands of lines, and a connection must not
    cross a fork."""

    def __init__(
        self,
        path: Path,
        schema: tuple[str, ...],
        timeout_s: float = 60,
        upgrade: Callable[[sqlite3.Connection], None] | None = None,
    ) -> None:
        """`upgrade` runs before the schema: it brings an older file's tables up to date."""
        self.path, self.timeout_s = path, timeout_s
        self._local = threading.local()
        path.parent.mkdir(parents=True, exist_ok=True)
        db = self.connection()
        # Before any table exists (a no-op on older files): deleted rows can then be
        # given back to the file system a little at a time (`reclaim`).
        db.execute("PRAGMA auto_vacuum=INCREMENTAL")
        db.execute("PRAGMA journal_mode=WAL")
        if upgrade is not None:
            upgrade(db)
        for statement in schema:
            db.execute(statement)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        yield self.connection()

    def connection(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None or self._local.pid != os.getpid():
            db = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            # WAL's usual setting: a commit survives the process crashing at once; the
            # disk is synced at checkpoints rather than at every commit (a sync run
            # commits about ten times, ~5 ms each on a VM disk). Redis's default
            # (fsync every second) keeps no more across a power cut.
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db, self._local.pid = db, os.getpid()
        return db

    def reclaim(self) -> None:
        """Give the pages freed by deletions back to the file system. A file made before
        auto_vacuum (which frees nothing by itself) is vacuumed once most of it is free,
        and is incremental from then on."""
        db = self.connection()
        if db.execute("PRAGMA auto_vacuum").fetchone()[0] == INCREMENTAL:
            # One page per step; execute() steps once, executescript() to the end.
            db.executescript("PRAGMA incremental_vacuum;")
        else:
            (free,) = db.execute("PRAGMA freelist_count").fetchone()
            (total,) = db.execute("PRAGMA page_count").fetchone()
            if free >= VACUUM_MIN_FREE_PAGES and free * 2 >= total:
                db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                db.execute("VACUUM")
        # The freed pages leave the main file at a checkpoint; the log itself shrinks too.
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
