"""A client's args dict, checked against the catalog, turned into an argv list.

No shell is involved anywhere, and a client never supplies raw argv: every key
must be an argument the command declares, every value must have its type, and
path arguments must stay inside the job's working directory (or an allowed
prefix the operator configured). So must the file named by an `@file` value of
any other argument: Zyra reads `--data @body.json` or `--json-body @q.json`
from that file. URLs Zyra would connect to must lead to allowed destinations
(runner/outbound.py).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from runner.catalog import ArgKind, ArgSpec, CommandSpec, PathRole
from runner.outbound import (
    Destination,
    OutboundPolicy,
    RefusedDestinationError,
    UnresolvedDestinationError,
)

REMOTE_SCHEMES = frozenset({"http", "https", "s3", "ftp", "sftp"})
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_NUMBER = re.compile(r"^-?\d+(\.\d*)?([eE][-+]?\d+)?$")
STDIO_PATH = "-"
AT_FILE = "@"

_TYPE_NAMES = {"string": "a string", "integer": "an integer", "number": "a number"}


@dataclass(frozen=True)
class ArgProblem:
    """One thing wrong with one argument, shaped like a FastAPI validation error."""

    arg: str
    msg: str
    type: str
    input: Any = None
    at: tuple[str | int, ...] = ()  # where inside the argument's value, e.g. a pipeline stage

    def as_detail(self, prefix: Iterable[str] = ("body", "args")) -> dict[str, Any]:
        return {
            "loc": [*prefix, self.arg, *self.at],
            "msg": self.msg,
            "type": self.type,
            "input": self.input,
        }


class InvalidArgsError(ValueError):
    def __init__(self, problems: list[ArgProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.arg}: {p.msg}" for p in problems))


@dataclass(frozen=True)
class PathPolicy:
    """Where path arguments may point.

    Relative paths resolve inside the job's working directory and may not climb
    out of it; absolute paths only under prefixes the operator allowed (a data
    volume mounted into the pod, say).
    """

    allowed_prefixes: tuple[str, ...] = field(default_factory=tuple)
    # Where URL arguments may lead (runner/outbound.py); None: not checked.
    outbound: OutboundPolicy | None = None

    def check(self, spec: ArgSpec, value: str) -> str | None:
        """Why a path argument's value is refused, or None when it is acceptable."""
        return self.check_path(value, accepts_url=spec.role is PathRole.INPUT and spec.accepts_url)

    def check_value(self, spec: ArgSpec, value: str) -> str | None:
        """Why any argument's value is refused: a path that leaves the working
        directory, or an `@file` value naming one (Zyra strips blanks first)."""
        if spec.role is not PathRole.NONE:
            return self.check(spec, value)
        text = value.strip()
        if spec.reads_at_file and text.startswith(AT_FILE):
            refusal = self.check_path(text[len(AT_FILE) :], accepts_url=False)
            return f"'@' makes Zyra read the file it names: {refusal}" if refusal else None
        return None

    def check_url(self, spec: ArgSpec, value: str) -> str | None:
        """Why the destination of a URL Zyra would connect to for this argument is
        refused; None when it is allowed or the value is no URL to Zyra."""
        url = remote_url(spec, value)
        if self.outbound is None or url is None:
            return None
        try:
            destination = self.outbound.check_url(url, REMOTE_SCHEMES)
            for host, port in _also_reached(spec, url, destination):
                with contextlib.suppress(UnresolvedDestinationError):  # Zyra cannot either
                    self.outbound.destination(host, port)
        except RefusedDestinationError as exc:
            return str(exc)
        return None

    def check_path(self, value: str, accepts_url: bool) -> str | None:
        if value == STDIO_PATH:
            return None
        scheme = _SCHEME.match(value)
        if scheme:
            if accepts_url:
                if scheme.group(1).lower() in REMOTE_SCHEMES:
                    return None
                return f"URL scheme {scheme.group(1)!r} is not accepted; use one of " + ", ".join(
                    sorted(REMOTE_SCHEMES)
                )
            return "expects a path inside the job's working directory, not a URL"
        path = PurePosixPath(value)
        if ".." in path.parts:
            return "may not contain '..'; paths stay inside the job's working directory"
        if path.is_absolute():
            normal = os.path.normpath(value)
            for prefix in self.allowed_prefixes:
                root = os.path.normpath(prefix)
                if normal == root or normal.startswith(root.rstrip("/") + "/"):
                    return None
            allowed = ", ".join(self.allowed_prefixes) or "none are configured"
            return (
                "absolute paths are refused; give a path relative to the job's working "
                f"directory (allowed absolute prefixes: {allowed})"
            )
        return None


def remote_url(spec: ArgSpec, value: str) -> str | None:
    """The URL Zyra connects to for this argument's value, if it is one. Leading and
    trailing blanks are dropped: HTTP clients drop them too."""
    text = value.strip()
    if spec.url is not None:
        if _URL_SCHEME.match(text):
            return text
        # Without a scheme an HTTP client refuses the value; an FTP path is `host/path`.
        return f"{spec.url.bare_scheme}://{text}" if spec.url.bare_scheme else None
    if spec.role is PathRole.INPUT and spec.accepts_url and _SCHEME.match(text):
        return text
    return None


def _also_reached(
    spec: ArgSpec, url: str, destination: Destination | None
) -> list[tuple[str, int | None]]:
    """Hosts Zyra reaches for `url` besides the one a URL parser reads in it."""
    hosts: list[tuple[str, int | None]] = []
    if url.startswith("ftp://"):
        # Zyra's FTP client finds the host its own way (the first '@' ends a user).
        ftp_host = _zyra_ftp_host(url)
        if ftp_host is not None:
            hosts.append((ftp_host, 21))
    if spec.url and spec.url.sibling_hosts and destination is not None:
        # `search api` looks for an OpenAPI document on api.<host> <-> www.<host> too.
        for prefix, other in (("api.", "www."), ("www.", "api.")):
            if destination.host.startswith(prefix):
                hosts.append((other + destination.host[len(prefix) :], destination.port))
    return hosts


def _zyra_ftp_host(url: str) -> str | None:
    from zyra.connectors.backends.ftp import parse_ftp_path

    try:
        return parse_ftp_path(url)[0]
    except ValueError:
        return None  # Zyra refuses it too


def build_argv(
    command: CommandSpec, args: dict[str, Any], paths: PathPolicy | None = None
) -> list[str]:
    """The argv (without the program name) that runs `command` with `args`."""
    paths = paths or PathPolicy()
    problems: list[ArgProblem] = []
    for name in args:
        if name not in command.args:
            problems.append(
                ArgProblem(
                    name,
                    f"unknown argument for {command.stage} {command.name}; accepted: "
                    + ", ".join(sorted(command.args)),
                    "unknown_argument",
                    args[name],
                )
            )
    for spec in command.args.values():
        if spec.required and args.get(spec.name) is None:
            problems.append(ArgProblem(spec.name, _expectation(spec, "is required"), "missing"))

    positional_words: list[str] = []
    option_words: list[str] = []
    for spec in command.positionals:
        value = args.get(spec.name)
        if value is not None:
            positional_words += _words(spec, value, paths, problems)
    for spec in command.args.values():
        value = args.get(spec.name)
        if not spec.is_positional and value is not None:
            option_words += _words(spec, value, paths, problems)
    if problems:
        raise InvalidArgsError(problems)
    # Positionals first: an option taking several values would swallow them.
    return [*command.argv_prefix, *positional_words, *option_words]


def _expectation(spec: ArgSpec, lead: str) -> str:
    """'... expects <type>[ one of ...]' for error messages."""
    if spec.kind is ArgKind.FLAG:
        what = "a boolean"
    elif spec.kind is ArgKind.COUNT:
        what = "a non-negative integer"
    else:
        what = _TYPE_NAMES.get(spec.value_type, spec.value_type)
        if spec.kind in (ArgKind.LIST, ArgKind.REPEATED):
            what = f"a list of {what.split(' ', 1)[1]}s (or one value)"
    text = f"{lead}; expects {what}"
    if spec.choices:
        text += " from: " + ", ".join(map(str, spec.choices))
    return text


def _words(spec: ArgSpec, value: Any, paths: PathPolicy, problems: list[ArgProblem]) -> list[str]:
    if spec.kind is ArgKind.FLAG:
        return _flag_words(spec, value, problems)
    if spec.kind is ArgKind.COUNT:
        if not _is_int(value) or value < 0:
            problems.append(ArgProblem(spec.name, _expectation(spec, "invalid"), "type", value))
            return []
        return [spec.option or ""] * value
    many = spec.kind in (ArgKind.LIST, ArgKind.REPEATED)
    values = value if many and isinstance(value, list) else [value]
    if not many and isinstance(value, list):
        problems.append(ArgProblem(spec.name, _expectation(spec, "takes one value"), "type", value))
        return []
    if spec.nargs == "+" and not values:
        problems.append(ArgProblem(spec.name, "needs at least one value", "too_short", value))
        return []
    texts: list[str] = []
    for item in values:
        text = _scalar_text(spec, item, paths, problems)
        if text is None:
            return []
        texts.append(text)
    if spec.is_positional or spec.kind is ArgKind.LIST:
        # Separate words: argparse would read a leading '-' as an option.
        for text in texts:
            if text.startswith("-") and not _NUMBER.match(text) and text != STDIO_PATH:
                problems.append(
                    ArgProblem(spec.name, "a value here may not start with '-'", "value", text)
                )
                return []
        if spec.is_positional:
            return texts
        return [spec.option or "", *texts]
    # "--opt=value" keeps values that start with '-' from looking like options.
    return [f"{spec.option}={text}" for text in texts]


def _flag_words(spec: ArgSpec, value: Any, problems: list[ArgProblem]) -> list[str]:
    if not isinstance(value, bool):
        problems.append(ArgProblem(spec.name, _expectation(spec, "invalid"), "type", value))
        return []
    if value == spec.default:
        return []
    flag = spec.option if value else spec.false_option
    if flag is None:
        problems.append(
            ArgProblem(spec.name, f"can only be {str(spec.default).lower()}", "value", value)
        )
        return []
    return [flag]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _scalar_text(
    spec: ArgSpec, value: Any, paths: PathPolicy, problems: list[ArgProblem]
) -> str | None:
    ok = {
        "string": isinstance(value, str),
        "integer": _is_int(value),
        "number": _is_int(value) or isinstance(value, float),
    }.get(spec.value_type, False)
    if not ok:
        problems.append(ArgProblem(spec.name, _expectation(spec, "wrong type"), "type", value))
        return None
    if spec.choices and value not in spec.choices:
        problems.append(
            ArgProblem(spec.name, _expectation(spec, "not a valid choice"), "enum", value)
        )
        return None
    text = str(value)
    if "\x00" in text:
        problems.append(ArgProblem(spec.name, "may not contain NUL characters", "value", value))
        return None
    refusal = paths.check_value(spec, text)
    if refusal:
        problems.append(ArgProblem(spec.name, refusal, "path", value))
        return None
    refusal = paths.check_url(spec, text)
    if refusal:
        problems.append(ArgProblem(spec.name, refusal, "url", value))
        return None
    return text
