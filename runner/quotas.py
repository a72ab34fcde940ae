"""Per-job quotas: how much a command may print and how much disk it may fill.

A command that goes over one is stopped at once (SIGKILL of its process group,
exit code 137 as for any kill) and its job fails with the quota's reason; the
service itself is not affected. RLIMIT_FSIZE keeps any single file under the disk
quota between two checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from pydantic import BaseModel, Field

MB = 1 << 20
CHECK_INTERVAL_S = 0.25


class RunQuotas(BaseModel):
    log_bytes: int | None = Field(
        32 * MB, ge=1, description="Text a command may print, stdout and stderr together."
    )
    disk_bytes: int | None = Field(
        8192 * MB, ge=1, description="Its working directory, temp dir and home, plus binary stdout."
    )


def disk_usage(folders: Iterable[str]) -> int:
    """Bytes of the regular files beneath `folders` (apparent sizes: what would be stored)."""
    total = 0
    stack = [f for f in folders if os.path.isdir(f)]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total
