"""Uploads and results expire: a background sweep deletes what outlived its TTL."""

from __future__ import annotations

import logging
import threading
import time

from api.settings import Settings
from runner.dependencies import DependencyUnavailableError
from runner.storage import Storage, delete_expired

log = logging.getLogger("zyra.retention")


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
            "uploads": delete_expired(self.storage, "uploads", self.settings.upload_ttl_s, now),
            "results": delete_expired(self.storage, "results", self.settings.result_ttl_s, now),
        }

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.cleanup_interval_s):
            try:
                removed = self.run_once(time.time())
            except DependencyUnavailableError as exc:
                log.warning("retention sweep skipped: %s", exc)
                continue
            if any(removed.values()):
                log.info("retention sweep removed %s", removed)
