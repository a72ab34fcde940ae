"""API keys: from settings or a mounted file, compared in constant time.

Keys are kept only as SHA-256 digests; a presented key is hashed and compared
with `hmac.compare_digest` against every known digest, so neither the match nor
its position leaks through timing.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path

HASHED_PREFIX = "sha256:"


@dataclass(frozen=True)
class KeyEntry:
    name: str
    digest: bytes


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_key_line(line: str, default_name: str) -> KeyEntry | None:
    """`key`, `name:key` or `name:sha256:<hex>`; None for blanks and comments."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    name, sep, rest = line.partition(":")
    if not sep:
        return KeyEntry(default_name, _digest(line))
    if rest.startswith(HASHED_PREFIX):
        return KeyEntry(name, bytes.fromhex(rest.removeprefix(HASHED_PREFIX)))
    return KeyEntry(name, _digest(rest))


class ApiKeyRing:
    def __init__(self, entries: list[KeyEntry]) -> None:
        self.entries = entries

    @classmethod
    def from_sources(
        cls, keys: list[str], key_file: Path | None, single_key: str | None
    ) -> ApiKeyRing:
        lines = [(k, f"key{i + 1}") for i, k in enumerate(keys)]
        if single_key:
            lines.append((single_key, "default"))
        if key_file is not None:
            text = key_file.read_text()
            lines += [(line, f"file{i + 1}") for i, line in enumerate(text.splitlines())]
        entries = [e for line, name in lines if (e := parse_key_line(line, name)) is not None]
        return cls(entries)

    @property
    def configured(self) -> bool:
        return bool(self.entries)

    def identify(self, presented: str | None) -> str | None:
        """The name of the key presented, or None."""
        if not presented:
            return None
        digest = _digest(presented)
        found = None
        for entry in self.entries:
            if hmac.compare_digest(entry.digest, digest) and found is None:
                found = entry.name
        return found
