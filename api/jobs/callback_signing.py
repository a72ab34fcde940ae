"""The signature on a callback: `Zyra-Signature: t=<unix time>,v1=<hex digest>`, the
digest an HMAC-SHA256 of `<t>.` followed by the raw body, keyed by the request's
`callback_secret`. The time is signed too, so a receiver can refuse replays of old
deliveries (docs/reference.md shows how to check it)."""

from __future__ import annotations

import hashlib
import hmac

HEADER = "Zyra-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(
    secret: str, header: str, body: bytes, now: float, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> bool:
    """Whether `header` signs `body` with `secret`, at most `tolerance_s` from `now`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    stamp = fields.get("t", "")
    if not stamp.isdigit() or abs(now - int(stamp)) > tolerance_s:
        return False
    expected = signature(secret, int(stamp), body)
    return hmac.compare_digest(expected.encode(), f"t={stamp},v1={fields.get('v1', '')}".encode())
