"""Uploads and results expire: a background sweep deletes what outlived its TTL."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict

from api.settings import Settings
from runner.dependencies import DependencyUnavailableError
from runner.storage import Storage

log = logging.getLogger("zyra.retention")


def sweep(storage: Storage, prefix: str, ttl_s: float, now: float) -> int:
    """Delete each `prefix/<id>/` whose newest object is older than the TTL."""
    newest: dict[str, float] = defaultdict(float)
    for obj in storage.list(prefix + "/"):
        group = obj.key.split("/", 2)[1]
        newest[group] = max(newest[group], obj.modified)
    expired = [group for group, modified in newest.items() if modified < now - ttl_s]
    for group in expired:
        storage.delete_prefix(f"{prefix}/{group}")
    return len(expired)


class RetentionCleaner:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage, self.settings = storage, settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def run_once(self, now: float) -> dict[str, int]:
        return {
            "uploads": sweep(self.storage, "uploads", self.settings.upload_ttl_s, now),
            "results": sweep(self.storage, "results", self.settings.result_ttl_s, now),
        }

    def _loop(self) -> None:
        import time

        while not self._stop.wait(self.settings.cleanup_interval_s):
            try:
                removed = self.run_once(time.time())
            except DependencyUnavailableError as exc:
                log.warning("retention sweep skipped: %s", exc)
                continue
            if any(removed.values()):
                log.info("retention sweep removed %s", removed)
