"""An argparse parser for one remote command, built from its catalog schema.

Each argument's schema carries `x-zyra` (its option, `false_option`, whether it is
positional, its path role), so the parser takes the words Zyra's own would: the long
options, flags and --no-x pairs, several values after an option. Only what the user
gave ends up in the parsed namespace (everything defaults to SUPPRESS): the server
applies Zyra's own defaults.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from zyra_client.models import CommandDescription

_CONVERTERS: dict[str, Callable[[str], Any]] = {"integer": int, "number": float}


def x_zyra(schema: dict[str, Any]) -> dict[str, Any]:
    return schema.get("x-zyra") or {}


def _value_type(schema: dict[str, Any]) -> str:
    kind = schema.get("type", "string")
    if isinstance(kind, list):  # e.g. ["string", "object"]: a command line gives text
        kind = next((k for k in kind if k != "object"), "string")
    return kind


def _one_value(schema: dict[str, Any]) -> dict[str, Any]:
    """type and choices of one value."""
    kind = _value_type(schema)
    spec: dict[str, Any] = {"type": _CONVERTERS.get(kind, str)}
    if schema.get("enum"):
        spec["choices"] = schema["enum"]
    return spec


def _add(parser: argparse.ArgumentParser, name: str, schema: dict[str, Any], required: bool):
    x = x_zyra(schema)
    kind = _value_type(schema)
    help_text = (schema.get("description") or "").replace("%", "%%")
    common: dict[str, Any] = {"default": argparse.SUPPRESS, "help": help_text}
    if kind == "boolean":
        if x.get("option"):
            parser.add_argument(x["option"], dest=name, action="store_true", **common)
        if x.get("false_option"):
            parser.add_argument(x["false_option"], dest=name, action="store_false", **common)
        return
    if kind == "integer" and "minimum" in schema and x.get("option") and "enum" not in schema:
        # A count (-vvv): the catalog shows it as an integer of at least 0.
        parser.add_argument(x["option"], dest=name, action="count", **common)
        return
    many: dict[str, Any] = {}
    if kind == "array":
        value = _one_value(schema.get("items") or {})
        fixed = schema.get("minItems")
        if fixed is not None and fixed == schema.get("maxItems"):
            many = {"nargs": fixed}
        elif x.get("positional"):
            many = {"nargs": "+" if required else "*"}
        else:
            # Zyra repeats some (--header a --header b) and takes several after one
            # option for others (--extent w e s n): accept both, the server knows which.
            many = {"nargs": "+", "action": "extend"}
    else:
        value = _one_value(schema)
    if x.get("positional") or not x.get("option"):
        if not many and not required:
            many = {"nargs": "?"}
        parser.add_argument(name, metavar=name.upper(), **value, **many, **common)
        return
    parser.add_argument(
        x["option"], dest=name, metavar=name.upper(), required=required, **value, **many, **common
    )


class OneLineErrors(argparse.ArgumentParser):
    """A wrong word is one line naming the argument (a command's usage runs to dozens
    of lines: --help shows it), exit 2 as argparse's own."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build(prog: str, command: CommandDescription) -> argparse.ArgumentParser:
    parser = OneLineErrors(prog=prog, description=command.description or None)
    required = set(command.required)
    for name, schema in command.arguments.items():
        try:
            _add(parser, name, schema, name in required)
        except (argparse.ArgumentError, ValueError, TypeError):
            continue  # an option this parser cannot take (a clash): the rest still work
    return parser


def parse(prog: str, command: CommandDescription, words: list[str]) -> dict[str, Any]:
    """The arguments as `POST /cli/run` takes them; argparse's own error (exit 2) for a
    wrong word."""
    return vars(build(prog, command).parse_args(words))
