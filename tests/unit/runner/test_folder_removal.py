"""runner/folder_removal.py: a finished job's folders go after the caller has moved on,
in turn; none is left behind by close, and none waits beyond the backlog."""

from __future__ import annotations

import threading
from pathlib import Path

from runner.folder_removal import FolderRemoval
from runner.workspace import JobFolders


class HeldFolders(JobFolders):
    """Folders whose removal waits until released: the removal thread is busy."""

    release = threading.Event()
    started = threading.Event()

    def remove(self) -> None:
        self.started.set()
        assert self.release.wait(10)
        super().remove()


def made(tmp_path: Path, name: str, kind: type[JobFolders] = JobFolders) -> JobFolders:
    folders = kind(tmp_path / name)
    folders.create()
    (folders.files / "out.png").write_bytes(b"png")
    return folders


def test_removal_happens_after_the_call_returns_and_close_finishes_it(tmp_path: Path) -> None:
    HeldFolders.release.clear()
    HeldFolders.started.clear()
    removal = FolderRemoval()
    held = made(tmp_path, "job-1", HeldFolders)
    waiting = made(tmp_path, "job-2")
    removal.remove(held)
    assert HeldFolders.started.wait(10)
    removal.remove(waiting)  # returns while the thread is still on job-1
    assert held.root.exists() and waiting.root.exists()
    HeldFolders.release.set()
    removal.close()
    assert not held.root.exists() and not waiting.root.exists()


def test_a_full_backlog_removes_in_the_caller(tmp_path: Path) -> None:
    HeldFolders.release.clear()
    HeldFolders.started.clear()
    removal = FolderRemoval(backlog=1)
    held, queued, overflow = (made(tmp_path, f"job-{i}", k) for i, k in
                              enumerate((HeldFolders, JobFolders, JobFolders)))  # fmt: skip
    removal.remove(held)
    assert HeldFolders.started.wait(10)  # taken off the backlog: it holds one again
    removal.remove(queued)
    removal.remove(overflow)
    assert not overflow.root.exists()  # removed before the call returned
    assert queued.root.exists()
    HeldFolders.release.set()
    removal.close()
    assert not queued.root.exists()


def test_after_close_a_removal_happens_at_once(tmp_path: Path) -> None:
    removal = FolderRemoval()
    removal.remove(made(tmp_path, "job-1"))
    removal.close()
    late = made(tmp_path, "job-2")
    removal.remove(late)
    assert not late.root.exists()
    assert list(tmp_path.iterdir()) == []


def test_a_failed_removal_does_not_stop_the_next(tmp_path: Path) -> None:
    class Failing(JobFolders):
        def remove(self) -> None:
            raise PermissionError("not ours")

    removal = FolderRemoval()
    stuck, next_one = made(tmp_path, "job-1", Failing), made(tmp_path, "job-2")
    removal.remove(stuck)
    removal.remove(next_one)
    removal.close()
    assert stuck.root.exists() and not next_one.root.exists()
