"""The callback signature: what a receiver checks (docs/reference.md shows the same)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Callable
from pathlib import Path

from api.jobs.callback_signing import signature, verify

SECRET = "a-workflow-secret-of-32-characters"
BODY = b'{"job_id":"j1","status":"succeeded"}'


def test_the_signature_is_an_hmac_of_the_time_and_the_body_as_documented() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_700_000_000, BODY) == f"t=1700000000,v1={expected}"


def test_a_receiver_accepts_only_this_body_this_secret_and_a_recent_time() -> None:
    header = signature(SECRET, 1_700_000_000, BODY)
    assert verify(SECRET, header, BODY, now=1_700_000_100)
    assert not verify(SECRET, header, BODY + b" ", now=1_700_000_100)
    assert not verify("another-secret-of-32-characters!!", header, BODY, now=1_700_000_100)
    assert not verify(SECRET, header, BODY, now=1_700_000_301)  # a replay, later
    assert not verify(SECRET, header.replace("t=1700000000", "t=1700000200"), BODY,
                      now=1_700_000_200)  # fmt: skip
    assert not verify(SECRET, "v1=abc", BODY, now=1_700_000_000)
    assert not verify(SECRET, "", BODY, now=1_700_000_000)


def documented_verify() -> Callable[[str, str, bytes], bool]:
    """The `verify` of docs/reference.md, "Checking a signature", run as a reader would."""
    doc = (Path(__file__).parents[4] / "docs" / "reference.md").read_text()
    section = doc.split("### Checking a signature", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    namespace: dict[str, object] = {}
    exec(code, namespace)  # the reader's copy, not ours
    return namespace["verify"]  # type: ignore[return-value]


def test_the_documented_check_accepts_our_signatures_and_only_them() -> None:
    check = documented_verify()
    now = int(time.time())
    assert check(SECRET, signature(SECRET, now, BODY), BODY)
    assert not check(SECRET, signature(SECRET, now, BODY), BODY + b"\n")
    assert not check(SECRET, signature(SECRET, now - 3600, BODY), BODY)
    assert not check("another-secret-of-32-characters!!", signature(SECRET, now, BODY), BODY)
