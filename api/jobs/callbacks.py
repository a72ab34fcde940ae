"""POST a finished job's record to its `callback_url`, retried with backoff.

The URL was checked when the job was submitted; names may resolve elsewhere by now
(DNS rebinding), so every attempt checks it again and connects only to the addresses
it checked (the name still goes in the Host header and TLS SNI). A redirect is
followed only when it keeps the POST (307, 308) and leads to an allowed destination.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx

from api.request_errors import FieldProblem, InvalidRequestError
from runner.outbound import (
    HTTP_SCHEMES,
    OutboundPolicy,
    RefusedDestinationError,
    UnresolvedDestinationError,
)

log = logging.getLogger("zyra.callbacks")

MAX_REDIRECTS = 3
_KEEPS_POST = (307, 308)


class CallbackRefusedError(InvalidRequestError):
    """A `callback_url` leading where the outbound policy refuses."""

    def __init__(self, url: str, why: str) -> None:
        problem = FieldProblem(loc=["body", "callback_url"], msg=why, type="url", input=url)
        super().__init__(why, [problem])


def callback_refusal(url: str, policy: OutboundPolicy) -> str | None:
    """Why a `callback_url` is refused, or None."""
    return policy.url_refusal(url, HTTP_SCHEMES)


def check_callback(url: str, policy: OutboundPolicy) -> None:
    """CallbackRefusedError unless `policy` lets callbacks reach `url`; resolves the
    name, so it blocks."""
    why = callback_refusal(url, policy)
    if why:
        raise CallbackRefusedError(url, why)


def deliver(
    url: str,
    payload: dict[str, Any],
    policy: OutboundPolicy | None = None,
    attempts: int = 5,
    first_delay_s: float = 1.0,
) -> bool:
    """True once the receiver answered 2xx; 4xx other than 408/429 is final, and so is
    a destination the policy refuses."""
    policy = policy or OutboundPolicy()
    delay = first_delay_s
    with httpx.Client(timeout=10) as client:
        for attempt in range(1, attempts + 1):
            try:
                response = _post_following_redirects(client, url, payload, policy)
                if response.is_success:
                    return True
                if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                    log.warning("callback %s refused: HTTP %s", url, response.status_code)
                    return False
                problem = f"HTTP {response.status_code}"
            except UnresolvedDestinationError as exc:
                problem = str(exc)  # DNS may answer again: retried like a connection error
            except RefusedDestinationError as exc:
                log.warning("callback %s not delivered: %s", url, exc)
                return False
            except httpx.HTTPError as exc:
                problem = str(exc)
            log.warning("callback %s attempt %d/%d failed: %s", url, attempt, attempts, problem)
            if attempt < attempts:
                time.sleep(delay)
                delay *= 2
    return False


def deliver_in_background(
    url: str, payload: dict[str, Any], policy: OutboundPolicy | None = None
) -> None:
    threading.Thread(target=deliver, args=(url, payload, policy), daemon=True).start()


def _post_following_redirects(
    client: httpx.Client, url: str, payload: dict[str, Any], policy: OutboundPolicy
) -> httpx.Response:
    for _ in range(MAX_REDIRECTS + 1):
        response = _post_pinned(client, url, payload, policy)
        location = response.headers.get("location")
        if response.status_code not in _KEEPS_POST or not location:
            return response
        target = str(httpx.URL(url).join(location))
        refusal = policy.url_refusal(target, HTTP_SCHEMES)
        if refusal:
            raise RefusedDestinationError(f"redirected to {target}, which is refused: {refusal}")
        url = target
    return response  # still a redirect: not delivered, retried


def _post_pinned(
    client: httpx.Client, url: str, payload: dict[str, Any], policy: OutboundPolicy
) -> httpx.Response:
    """POST to the addresses the policy checked for `url`, trying each in turn."""
    destination = policy.check_url(url, HTTP_SCHEMES)
    assert destination is not None  # http(s) always names a host
    if destination.is_literal:
        return client.post(url, json=payload)
    target = httpx.URL(url)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    error: httpx.TransportError | None = None
    for address in destination.addresses:
        try:
            return client.post(
                target.copy_with(host=str(address)),
                json=payload,
                headers={"Host": target.netloc.decode("ascii")},
                extensions=extensions,
            )
        except httpx.ConnectError as exc:
            error = exc  # the next address, as a client connecting by name would
    assert error is not None
    raise error
