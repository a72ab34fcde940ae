"""Arguments that carry secrets: which they are, how they are shown, how they are scrubbed.

Zyra takes credentials as arguments (`acquire ftp --password`, `--credential
password=...`, `--auth bearer:...`, `--header "Authorization: ..."`), and its own
messages may repeat them (the pipeline runner prints a failing stage's command
line). argparse cannot say which arguments are secret, so their names do: a word
such as `password`, `token`, `secret`, `credential`, `auth` (`key` only as
`api_key`, `access_key`, ...; `s3 --key` is an object key), unless the name ends in
`file`, `path`, `url`, ... (`credential_file` names a file, not a secret).

How much of a value is secret depends on its shape, so that what is left still says
what was given:

- `credential`-like (`field=value`): the value, `password=***`;
- `auth`-like (`scheme:rest`): the rest, `bearer:***`, `basic:***`;
- `header`-like (`Name: value` or `name=value`): the value of credential headers
  only (`Authorization`, `Cookie`, `X-API-Key`, ...); `Accept: text/csv` stays;
- anything else: the whole value, `***`.

A URL among the values of a per-URL argument (`--url-auth URL AUTH`) is its
target, not a secret.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable, Iterable, Iterator
from enum import StrEnum
from itertools import pairwise
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
OVERRIDES = "overrides"  # `run`'s `--set key=value`: N.key or stage.key of a pipeline
# Shorter values are masked in views but not scrubbed from output text: replacing
# every "ab" in a log would garble it and hide nothing worth hiding.
MIN_SCRUBBED_LEN = 4

SECRET_WORDS = frozenset({
    "password", "passwd", "passphrase", "secret", "token", "credential", "credentials",
    "auth", "bearer", "apikey", "cookie",
})  # fmt: skip
SECRET_KEY_QUALIFIERS = frozenset({"api", "access", "secret", "private", "client"})
HEADER_WORDS = frozenset({"header", "headers"})
NOT_A_VALUE_WORDS = frozenset({"file", "files", "path", "dir", "url", "uri", "endpoint"})
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
CREDENTIAL_HEADER_WORDS = SECRET_WORDS | {"key", "session", "signature"}

_WORD = re.compile(r"[a-z0-9]+")
_URL = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_HEADER = re.compile(r"^\s*([^:=\s]+)\s*([:=])\s*(.*)$", re.DOTALL)


class SecretShape(StrEnum):
    WHOLE = "whole"
    KEYED = "keyed"  # field=value
    SCHEME = "scheme"  # scheme:rest
    HEADER = "header"  # Name: value


def _words(name: str) -> list[str]:
    return _WORD.findall(name.lower())


def secret_shape(name: str) -> SecretShape | None:
    """How an argument named `name` (an argparse dest, or a pipeline key) carries a
    secret; None when it carries none."""
    words = _words(name)
    if not words or words[-1] in NOT_A_VALUE_WORDS:
        return None
    if words[-1] in HEADER_WORDS:
        return SecretShape.HEADER
    if {"credential", "credentials"} & set(words):
        return SecretShape.KEYED
    if "auth" in words:
        return SecretShape.SCHEME
    qualified_key = any(a in SECRET_KEY_QUALIFIERS and b == "key" for a, b in pairwise(words))
    return SecretShape.WHOLE if qualified_key or SECRET_WORDS & set(words) else None


def is_secret_arg(name: str) -> bool:
    return secret_shape(name) is not None


def _split(shape: SecretShape, text: str) -> tuple[str, str] | None:
    """(what is shown, what is secret) of one value; None when nothing in it is secret."""
    if shape is not SecretShape.WHOLE and _URL.match(text):
        return None  # the target of a per-URL credential
    if shape is SecretShape.KEYED and "=" in text:
        field, _, value = text.partition("=")
        return f"{field}=", value
    if shape is SecretShape.SCHEME and ":" in text:
        scheme, _, rest = text.partition(":")
        return f"{scheme}:", rest
    if shape is SecretShape.HEADER:
        match = _HEADER.match(text)
        if match is None:
            return "", text
        header, separator, value = match.groups()
        if not _is_credential_header(header):
            return None
        return f"{header}{separator}{' ' if separator == ':' else ''}", value
    return "", text


def _is_credential_header(name: str) -> bool:
    return name.lower() in CREDENTIAL_HEADERS or bool(CREDENTIAL_HEADER_WORDS & set(_words(name)))


def _mask_value(shape: SecretShape, value: Any) -> Any:
    if isinstance(value, list):
        return [_mask_value(shape, v) for v in value]
    if value is None or isinstance(value, bool):
        return value
    parts = _split(shape, str(value))
    if parts is None:
        return value
    shown, secret = parts
    return f"{shown}{MASK}" if secret else value


def _secret_texts(shape: SecretShape, value: Any) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from _secret_texts(shape, item)
    elif value is not None and not isinstance(value, bool):
        parts = _split(shape, str(value))
        if parts is not None and parts[1]:
            yield parts[1]


def _walk(args: dict[str, Any], on_secret: Callable[[SecretShape, Any], Any]) -> dict[str, Any]:
    """`args` with every secret value replaced by `on_secret(shape, value)`, at any depth
    (an inline pipeline's stages) and in `run`'s overrides (`0.password=...`)."""

    def value_of(name: str, value: Any) -> Any:
        shape = secret_shape(name)
        if shape is not None:
            return on_secret(shape, value)
        if name == OVERRIDES:
            return _overrides(value, on_secret)
        return nested(value)

    def nested(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: value_of(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [nested(v) for v in value]
        return value

    return {name: value_of(name, value) for name, value in args.items()}


def _overrides(value: Any, on_secret: Callable[[SecretShape, Any], Any]) -> Any:
    def one(item: Any) -> Any:
        if not isinstance(item, str) or "=" not in item:
            return item
        key, _, text = item.partition("=")
        shape = secret_shape(key.rsplit(".", 1)[-1])
        return item if shape is None else f"{key}={on_secret(shape, text)}"

    return [one(v) for v in value] if isinstance(value, list) else one(value)


def mask_args(args: dict[str, Any]) -> dict[str, Any]:
    """A copy of a request's args with secret values masked (`***`, `password=***`)."""
    return _walk(args, _mask_value)


def secrets_in(args: dict[str, Any]) -> list[str]:
    """The secret texts of a request's args (or of a pipeline document), to scrub."""
    found: list[str] = []

    def collect(shape: SecretShape, value: Any) -> Any:
        found.extend(_secret_texts(shape, value))
        return value

    _walk(args, collect)
    return list(dict.fromkeys(found))


def _spellings(secret: str) -> set[str]:
    """The ways a command may print a value: as is, shell-quoted (Zyra's failing
    command line), JSON- or repr-escaped, URL-encoded."""
    return {
        secret,
        shlex.quote(secret),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        quote(secret, safe=""),
        quote_plus(secret),
    }


class Redactor:
    """Replaces secret texts by `***` in output text."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms = {f for s in secrets if len(s) >= MIN_SCRUBBED_LEN for f in _spellings(s)}
        longest_first = sorted(forms, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, longest_first))) if forms else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text) if self._pattern is not None else text
