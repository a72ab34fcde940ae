"""One SQLite file shared by threads and processes: the embedded stores' base."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


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
            self._local.db, self._local.pid = db, os.getpid()
        return db
