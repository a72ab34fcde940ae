"""One job's folders: the working directory, temp dir and home a command may write,
and the capture folder (its stdout/stderr as read by the launcher) it may not."""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.child import ChildRequest
from runner.sandbox import SandboxReport, hand_over

SHARED_ROOT_MODE = 0o2710
SHARED_FOLDER_MODE = 0o2770
SHARED_FILE_MODE = 0o660
# Where the runner image keeps matplotlib's font list, made when the image was built.
FONT_CACHE_ENV = "ZYRA_MATPLOTLIB_FONT_CACHE"


@dataclass(frozen=True)
class JobFolders:
    root: Path

    @property
    def files(self) -> Path:
        return self.root / "files"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def capture(self) -> Path:
        return self.root / "capture"

    @property
    def matplotlib_config(self) -> Path:
        return self.home / ".config" / "matplotlib"

    @property
    def writable(self) -> list[Path]:
        return [self.files, self.tmp, self.home]

    def create(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for folder in (*self.writable, self.matplotlib_config):
            folder.mkdir(parents=True, exist_ok=True)
        seed_font_list(self.matplotlib_config)

    def hand_over(self, sandbox: SandboxReport) -> None:
        """Give the writable folders, with what was staged in them, to the command's uid;
        it may pass through the root folder but not list it."""
        if sandbox.drop_to_uid is not None:
            os.chmod(self.root, 0o711)
        hand_over(sandbox, self.writable)

    def share_with_group(self) -> None:
        """For a command of another uid in this folder's group (the sync executor's
        container, through the pod's fsGroup): it may pass through the root folder,
        write the writable folders and what was staged in them; setgid keeps what it
        creates in the group, so the service reads it back (its umask is 0o007)."""
        os.chmod(self.root, SHARED_ROOT_MODE)
        for top in self.writable:
            os.chmod(top, SHARED_FOLDER_MODE)
            for parent, dirs, files in os.walk(top):
                for names, mode in ((dirs, SHARED_FOLDER_MODE), (files, SHARED_FILE_MODE)):
                    for name in names:
                        path = os.path.join(parent, name)
                        if not os.path.islink(path):  # chmod would follow it
                            os.chmod(path, mode)

    def env(self) -> dict[str, str]:
        """The per-job part of a command's environment: HOME and temp files stay here."""
        return {
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "MPLCONFIGDIR": str(self.matplotlib_config),
        }

    def child_request(self, argv: list[str], env: dict[str, str], **rest: Any) -> ChildRequest:
        """A command run here: this working directory, HOME and TMPDIR, and these
        folders as all it may write (`rest`: limits, sandbox, outbound allow-list)."""
        return ChildRequest(
            argv=argv,
            cwd=str(self.files),
            env={**env, **self.env()},
            writable=[str(p) for p in self.writable],
            **rest,
        )

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def seed_font_list(config: Path) -> None:
    """Copy matplotlib's font list from $ZYRA_MATPLOTLIB_FONT_CACHE (the runner image
    makes it when built) into a job's MPLCONFIGDIR: a fresh runner pod's command then
    reads it instead of scanning every font again (~80 ms a job). Children of a template
    process have matplotlib loaded already and need none; without the variable, nothing."""
    source = os.environ.get(FONT_CACHE_ENV)
    if not source:
        return
    for path in Path(source).glob("fontlist-*.json"):
        if path.is_file() and not path.is_symlink():
            with contextlib.suppress(OSError):  # matplotlib then makes its own, as before
                shutil.copyfile(path, config / path.name)
