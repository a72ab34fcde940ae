"""Finished jobs' folders removed after the answer rather than before it.

Removing a job's folders (its working directory, temp dir, home and captured output) takes
about a millisecond or two of system calls; a sync run's caller need not wait for it.
One thread removes them in turn. A full backlog removes in the caller (the disk never
fills with folders waiting), and so does a removal asked after `close`.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading

from runner.workspace import JobFolders

BACKLOG = 64
logger = logging.getLogger("zyra.runner")


class FolderRemoval:
    def __init__(self, backlog: int = BACKLOG) -> None:
        self._queue: queue.Queue[JobFolders | None] = queue.Queue(backlog)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def remove(self, folders: JobFolders) -> None:
        """Remove them soon; at once if the backlog is full or this is closed."""
        with self._lock:
            if not self._closed:
                if self._thread is None:  # on first use: a service that runs nothing has none
                    self._thread = threading.Thread(
                        target=self._work, name="folder-removal", daemon=True
                    )
                    self._thread.start()
                with contextlib.suppress(queue.Full):
                    self._queue.put_nowait(folders)
                    return
        folders.remove()

    def close(self, timeout_s: float = 30.0) -> None:
        """Remove what is waiting, then stop (later removals happen in the caller)."""
        with self._lock:
            self._closed, thread = True, self._thread
        if thread is None:
            return
        with contextlib.suppress(queue.Full):  # after what is waiting; the thread makes room
            self._queue.put(None, timeout=timeout_s)
        thread.join(timeout_s)

    def _work(self) -> None:
        while (folders := self._queue.get()) is not None:
            try:
                folders.remove()
            except Exception:  # the next ones still go
                logger.exception("could not remove %s", folders.root)
