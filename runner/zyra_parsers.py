"""Zyra's argument parsers, built once in the template process instead of per command.

`zyra.cli.main` builds an argparse tree on every call, registering every command of
the group its first argument names (about 15 ms of a 90 ms heatmap). The tree does not
depend on the job (no default reads the environment, the clock or the working
directory), so the template builds one per group and each forked child parses with its
own copy. What `main` does after parsing is repeated here, step by step; anything this
module does not know (`--version`, an unknown group, a Zyra without the helpers it
relies on) goes through `main` itself. `tests/unit/runner/test_zyra_parsers.py` holds
the two paths to the same stdout, stderr and exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from typing import Any

# The groups the service exposes, by Zyra's canonical names (`import` normalises to
# `acquire`, `render` to `visualize`, `disseminate` and `export` to `decimate`).
GROUPS = ("acquire", "process", "visualize", "decimate", "run")
# Commands main warns about from its own line of code, which stderr shows: main runs them.
DEPRECATED_COMMANDS = frozenset({"decimate", "transform"})

_parsers: dict[str, argparse.ArgumentParser] = {}


class _Built(Exception):
    """Raised where main would parse: carries the parser it built."""

    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


def _group_of(argv: list[str]) -> str | None:
    """The group `main` would register for `argv`, as it works it out."""
    from zyra.cli import _normalize_group_name

    if any(a in {"--version", "-V"} for a in argv):
        return None
    first = next((a for a in argv if not a.startswith("-")), None)
    return _normalize_group_name(first) if first else None


def _capture(group: str) -> argparse.ArgumentParser:
    """The parser `main` builds for `group`, taken at the moment it would parse."""
    from zyra.cli import main

    original = argparse.ArgumentParser.parse_args

    def built(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Built(self)

    argparse.ArgumentParser.parse_args = built  # type: ignore[method-assign]
    try:
        main([group])
    except _Built as done:
        return done.parser
    finally:
        argparse.ArgumentParser.parse_args = original  # type: ignore[method-assign]
    raise RuntimeError(f"zyra.cli.main did not parse for {group!r}")


def prebuild(groups: tuple[str, ...] = GROUPS) -> list[str]:
    """Build the parsers (in the template process); what could not be built."""
    failed = []
    for group in groups:
        try:
            _parsers[group] = _capture(group)
        except Exception as exc:  # this group then goes through main, as before
            failed.append(f"{group}: {type(exc).__name__}: {exc}")
    return failed


def _configure_logging() -> None:
    from zyra.utils.cli_helpers import configure_logging_from_env

    configure_logging_from_env(default=os.environ.get("ZYRA_VERBOSITY", "info"))


def main(argv: list[str]) -> int:
    """`zyra.cli.main(argv)`, with the parser built beforehand when there is one."""
    from zyra.cli import main as zyra_main

    try:
        parser = _parsers.get(_group_of(argv) or "")
    except ImportError:
        parser = None
    if parser is None:
        return zyra_main(argv)
    args = parser.parse_args(argv)
    if getattr(args, "cmd", None) in DEPRECATED_COMMANDS:
        return zyra_main(argv)
    for name in ("ZYRA_VERBOSITY", "DATAVIZHUB_VERBOSITY"):
        if getattr(args, "verbose", False):
            os.environ[name] = "debug"
        elif getattr(args, "quiet", False):
            os.environ[name] = "quiet"
        else:
            os.environ.setdefault(name, "info")
    with contextlib.suppress(Exception):  # as in main: logging set-up is best-effort
        _configure_logging()
    handler: Callable[[argparse.Namespace], int] = args.func
    return handler(args)
