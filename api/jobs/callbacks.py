"""POST a finished job's record to its `callback_url`, retried with backoff."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

log = logging.getLogger("zyra.callbacks")


def deliver(
    url: str, payload: dict[str, Any], attempts: int = 5, first_delay_s: float = 1.0
) -> bool:
    """True once the receiver answered 2xx; 4xx other than 408/429 is final."""
    delay = first_delay_s
    for attempt in range(1, attempts + 1):
        try:
            response = httpx.post(url, json=payload, timeout=10)
            if response.is_success:
                return True
            if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                log.warning("callback %s refused: HTTP %s", url, response.status_code)
                return False
            problem = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            problem = str(exc)
        log.warning("callback %s attempt %d/%d failed: %s", url, attempt, attempts, problem)
        if attempt < attempts:
            time.sleep(delay)
            delay *= 2
    return False


def deliver_in_background(url: str, payload: dict[str, Any]) -> None:
    threading.Thread(target=deliver, args=(url, payload), daemon=True).start()
