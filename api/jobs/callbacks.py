"""One attempt to POST a finished job to its `callback_url` (callback_outbox.py retries).

The URL was checked when the job was submitted; names may resolve elsewhere by now
(DNS rebinding), so every attempt checks it again and connects only to the addresses
it checked (the name still goes in the Host header and TLS SNI). A redirect is
followed only when it keeps the POST (307, 308) and leads to an allowed destination.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from api.request_errors import FieldProblem, InvalidRequestError
from runner.outbound import (
    HTTP_SCHEMES,
    OutboundPolicy,
    RefusedDestinationError,
    UnresolvedDestinationError,
)

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


@dataclass(frozen=True)
class Answer:
    """How one attempt went."""

    status: int | None = None  # the receiver's HTTP status; None: no answer
    error: str | None = None  # why it failed; None when delivered
    refused: bool = False  # the destination is refused by the policy: final
    retry_after_s: float | None = None  # as the receiver asked (429, 503)

    @property
    def delivered(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


def post_once(
    client: httpx.Client,
    url: str,
    body: bytes,
    headers: dict[str, str],
    policy: OutboundPolicy,
) -> Answer:
    """One attempt: POST `body` to `url`, following allowed 307/308 redirects."""
    try:
        response = _post_following_redirects(client, url, body, headers, policy)
    except UnresolvedDestinationError as exc:  # DNS may answer again: retried
        return Answer(error=str(exc))
    except RefusedDestinationError as exc:
        return Answer(error=str(exc), refused=True)
    except httpx.HTTPError as exc:
        return Answer(error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
    if response.is_success:
        return Answer(status=response.status_code)
    return Answer(
        status=response.status_code,
        error=f"HTTP {response.status_code}",
        retry_after_s=_seconds(response.headers.get("retry-after")),
    )


def _seconds(retry_after: str | None) -> float | None:
    """A Retry-After in seconds (its HTTP-date form is ignored: clocks differ)."""
    if retry_after and retry_after.strip().isdigit():
        return float(retry_after.strip())
    return None


def _post_following_redirects(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], policy: OutboundPolicy
) -> httpx.Response:
    for _ in range(MAX_REDIRECTS + 1):
        response = _post_pinned(client, url, body, headers, policy)
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
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], policy: OutboundPolicy
) -> httpx.Response:
    """POST to the addresses the policy checked for `url`, trying each in turn."""
    destination = policy.check_url(url, HTTP_SCHEMES)
    assert destination is not None  # http(s) always names a host
    if destination.is_literal:
        return client.post(url, content=body, headers=headers)
    target = httpx.URL(url)
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    error: httpx.TransportError | None = None
    for address in destination.addresses:
        try:
            return client.post(
                target.copy_with(host=str(address)),
                content=body,
                headers={**headers, "Host": target.netloc.decode("ascii")},
                extensions=extensions,
            )
        except httpx.ConnectError as exc:
            error = exc  # the next address, as a client connecting by name would
    assert error is not None
    raise error
