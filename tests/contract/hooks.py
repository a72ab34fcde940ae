"""Schemathesis hooks (SCHEMATHESIS_HOOKS=tests.contract.hooks): network only on loopback."""

from __future__ import annotations

from typing import Any

import schemathesis
from pydantic import AnyHttpUrl, TypeAdapter, ValidationError

# A closed loopback port: a callback the API accepts is delivered nowhere else.
LOOPBACK_CALLBACK = "http://127.0.0.1:9/callback"
_HTTP_URL = TypeAdapter(AnyHttpUrl)  # what RunRequest.callback_url accepts


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    """A generated `callback_url` the API takes would be resolved, then POSTed to when
    the job ends: valid URLs go to loopback instead (the API allows 127.0.0.1); invalid
    ones are kept, for the 422 they get before any lookup."""
    body = case.body
    if isinstance(body, dict) and _is_http_url(body.get("callback_url")):
        body["callback_url"] = LOOPBACK_CALLBACK


def _is_http_url(value: object) -> bool:
    try:
        _HTTP_URL.validate_python(value)
    except ValidationError:
        return False
    return True
