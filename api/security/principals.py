"""Who is calling: a `Principal` with scopes, whatever the credential it presented."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum


class Scope(StrEnum):
    """What a principal may do; `admin` implies every other scope."""

    RUN = "run"  # start and cancel jobs, upload files
    READ = "read"  # list and read jobs, follow their events, download outputs
    ADMIN = "admin"


class Source(StrEnum):
    API_KEY = "api_key"
    OAUTH2 = "oauth2"


DEFAULT_KEY_SCOPES = frozenset({Scope.RUN, Scope.READ})
SCOPE_NAMES = frozenset(s.value for s in Scope)
_SEPARATORS = re.compile(r"[\s,]+")


class InvalidScopeError(ValueError):
    def __init__(self, name: str) -> None:
        self.name = name
        valid = ", ".join(s.value for s in Scope)
        super().__init__(f"unknown scope {name!r}; scopes are {valid}")


def with_implied(scopes: Iterable[Scope]) -> frozenset[Scope]:
    scopes = frozenset(scopes)
    return frozenset(Scope) if Scope.ADMIN in scopes else scopes


def parse_scopes(text: str) -> frozenset[Scope]:
    """`run read`, `run,read` or `admin`; an unknown name raises InvalidScopeError."""
    names = [n for n in _SEPARATORS.split(text.strip()) if n]
    for name in names:
        if name not in SCOPE_NAMES:
            raise InvalidScopeError(name)
    return with_implied(Scope(n) for n in names)


@dataclass(frozen=True)
class Principal:
    """`id` is what ownership keys on: prefixed by source (`key:<name>`,
    `oauth2:<subject>`) so an API key named like a token's subject is someone else.
    `name` is for display (a job's `submitted_by`)."""

    id: str
    name: str
    source: Source
    scopes: frozenset[Scope] = field(default=frozenset())

    def __post_init__(self) -> None:
        object.__setattr__(self, "scopes", with_implied(self.scopes))

    @classmethod
    def for_api_key(cls, name: str, scopes: frozenset[Scope]) -> Principal:
        return cls(f"key:{name}", name, Source.API_KEY, scopes)

    @classmethod
    def for_token(cls, subject: str, name: str, scopes: frozenset[Scope]) -> Principal:
        return cls(f"oauth2:{subject}", name, Source.OAUTH2, scopes)

    def missing(self, needed: Iterable[str]) -> list[str]:
        """The scopes of `needed` this principal lacks, in the order given."""
        return [s for s in needed if s not in self.scopes]
