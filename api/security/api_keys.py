"""API keys: from settings or a mounted file, compared in constant time.

One key per entry (a comma-separated item of `ZYRA_API_KEYS`, a line of
`ZYRA_API_KEYS_FILE`, or `ZYRA_API_KEY`):

    <key> [<scope> ...]        where <key> is `key`, `name:key` or `name:sha256:<hex>`

Scopes follow the key after whitespace (`alice:s3cret read`, `ops:sha256:ab… admin`;
in the file `run,read` works too); without them a key may `run` and `read`, never
`admin`. Keys therefore cannot contain whitespace, and a key that is a scope name is
refused: it is what `ZYRA_API_KEYS="alice:k run,read"` would leave after the split.

Keys are kept only as SHA-256 digests; a presented key is hashed and compared
with `hmac.compare_digest` against every known digest, so neither the match nor
its position leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from pathlib import Path

from api.security.principals import (
    DEFAULT_KEY_SCOPES,
    SCOPE_NAMES,
    InvalidScopeError,
    Principal,
    Scope,
    parse_scopes,
)

SCOPE_NAMES_IN_ORDER = [s.value for s in Scope]

HASHED_PREFIX = "sha256:"
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")


class KeyEntryError(ValueError):
    """An entry that cannot be read; the message names where it is, never the key."""


@dataclass(frozen=True)
class KeyEntry:
    name: str
    digest: bytes
    scopes: frozenset[Scope] = DEFAULT_KEY_SCOPES


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_key_line(line: str, default_name: str) -> KeyEntry | None:
    """One entry (see the module's doc); None for blanks and `#` comments."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    spec, *scope_fields = line.split()
    try:
        scopes = parse_scopes(" ".join(scope_fields)) if scope_fields else DEFAULT_KEY_SCOPES
    except InvalidScopeError:
        # Not named: it may be part of a key that holds whitespace.
        raise KeyEntryError(
            f"what follows the key is not a list of scopes ({', '.join(SCOPE_NAMES_IN_ORDER)},"
            " separated by spaces or commas); keys cannot contain whitespace"
        ) from None
    name, sep, rest = spec.partition(":")
    if not sep:
        name, rest = default_name, spec
    if not name:
        raise KeyEntryError("empty name before ':'; write `name:key` or just `key`")
    if rest.startswith(HASHED_PREFIX):
        hex_digest = rest.removeprefix(HASHED_PREFIX)
        if not _HEX_DIGEST.fullmatch(hex_digest):
            raise KeyEntryError("a `name:sha256:<hex>` entry needs 64 hexadecimal digits")
        return KeyEntry(name, bytes.fromhex(hex_digest), scopes)
    if not rest:
        raise KeyEntryError(f"no key after {name!r}:")
    if rest in SCOPE_NAMES:
        raise KeyEntryError(
            f"the key is the scope name {rest!r}: in ZYRA_API_KEYS separate a key's scopes "
            "with spaces (`alice:key run read`), commas separate keys"
        )
    return KeyEntry(name, _digest(rest), scopes)


class ApiKeyRing:
    def __init__(self, entries: list[KeyEntry]) -> None:
        self.entries = entries

    @classmethod
    def from_sources(
        cls, keys: list[str], key_file: Path | None, single_key: str | None
    ) -> ApiKeyRing:
        """Raises KeyEntryError naming the setting and entry (never the key)."""
        lines = [(k, f"key{i + 1}", f"ZYRA_API_KEYS entry {i + 1}") for i, k in enumerate(keys)]
        if single_key:
            lines.append((single_key, "default", "ZYRA_API_KEY"))
        if key_file is not None:
            text = key_file.read_text()
            lines += [
                (line, f"file{i + 1}", f"ZYRA_API_KEYS_FILE ({key_file}) line {i + 1}")
                for i, line in enumerate(text.splitlines())
            ]
        entries = []
        for line, name, where in lines:
            try:
                entry = parse_key_line(line, name)
            except KeyEntryError as exc:
                raise KeyEntryError(f"{where}: {exc}") from None
            if entry is not None:
                entries.append(entry)
        return cls(entries)

    @property
    def configured(self) -> bool:
        return bool(self.entries)

    def identify(self, presented: str | None) -> Principal | None:
        """The principal of the key presented, or None."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest) and found is None:
                found = entry
        return None if found is None else Principal.for_api_key(found.name, found.scopes)
