"""What the sync and async clients share: requests, retries, event-stream rules.

Nothing here does I/O, so both clients behave the same by construction.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from zyra_client.errors import AuthError, NotFound, Throttled, ZyraError

# The server answers a long poll after at most this many seconds (ZYRA_MAX_JOB_WAIT_S).
MAX_WAIT_S = 60
# A sync run may take up to the server's ZYRA_SYNC_TIMEOUT_MAX_S (300 by default).
SYNC_RUN_DEFAULT_S = 300.0
# The event stream gives up after this many reconnects in a row that brought nothing.
MAX_STREAM_FAILURES = 8


def auth_headers(api_key: str | None, token: str | None) -> dict[str, str]:
    if api_key and token:
        raise ValueError("give api_key or token, not both")
    if api_key:
        return {"X-API-Key": api_key}
    if token:
        return {"Authorization": f"Bearer {token}"}
    return {}


def run_body(
    stage: str, command: str | None, args: dict[str, Any] | None, mode: str, options: dict
) -> dict[str, Any]:
    return {"stage": stage, "command": command, "args": dict(args or {}), "mode": mode, **options}


def sync_run_timeout(options: dict[str, Any], base: float) -> float:
    """HTTP read timeout of a sync run: longer than the command may take."""
    return float(options.get("timeout_s") or SYNC_RUN_DEFAULT_S) + base


def wait_slice(deadline_left: float | None) -> int:
    """Seconds to ask one long poll for."""
    if deadline_left is None:
        return MAX_WAIT_S
    return max(1, min(MAX_WAIT_S, math.ceil(deadline_left)))


@dataclass(frozen=True)
class RetryPolicy:
    """Retry 429/503 only (the server refused before acting, so a retry is safe),
    at most `max_retries` times, never waiting longer than `max_wait` at once."""

    max_retries: int = 3
    max_wait: float = 60.0

    def delay(self, error: ZyraError, attempt: int) -> float | None:
        """Seconds to wait before trying again, or None to give up."""
        if not isinstance(error, Throttled) or attempt >= self.max_retries:
            return None
        wait = error.retry_after if error.retry_after is not None else float(2**attempt)
        return None if wait > self.max_wait else wait


def ws_url(base_url: str, job_id: str, since: int) -> str:
    parts = urlsplit(base_url)
    scheme = {"https": "wss", "http": "ws"}.get(parts.scheme, parts.scheme)
    path = f"{parts.path.rstrip('/')}/ws/jobs/{quote(job_id, safe='')}"
    return urlunsplit((scheme, parts.netloc, path, f"since={since}", ""))


def stream_backoff(failures: int) -> float:
    return min(5.0, 0.25 * 2**failures)


def after_close(code: int | None, reason: str, job_id: str) -> bool:
    """Whether to reconnect after the stream closed with `code` (None: the connection
    broke without a close frame). Raises for answers a reconnect cannot change."""
    if code == 1000:
        return False  # after the terminal event, or `since` was past the end
    if code == 4404:
        raise NotFound(reason or f"no job with id {job_id!r}", status_code=404)
    if code in (4401, 4403):
        raise AuthError(reason or "refused credential", status_code=code - 4000)
    # 1001/1012 server stopping, 1013 busy or a dependency down, 4429 rate limit,
    # 1006 or None: the connection dropped. Resuming with `since` loses nothing.
    return True


def filename_from(disposition: str | None) -> str | None:
    if not disposition:
        return None
    match = re.search(r'filename="?([^";]+)"?', disposition)
    return Path(match.group(1)).name if match else None


def download_target(dest: str | Path, disposition: str | None, job_id: str) -> Path:
    """Where a download goes: `dest`, or the served file name inside `dest` when it
    is a directory (or names one with a trailing slash)."""
    path = Path(dest)
    if path.is_dir() or str(dest).endswith(("/", "\\")):
        return path / (filename_from(disposition) or f"{job_id}.out")
    return path


def invalid_stream_answer(status: int, job_id: str) -> ZyraError:
    if status == 404:
        return NotFound(f"no job with id {job_id!r}", status_code=404)
    if status in (401, 403):
        return AuthError("the event stream refused the credential", status_code=status)
    return ZyraError(f"the event stream answered HTTP {status}", status_code=status)
