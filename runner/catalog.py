"""The command catalog, read from Zyra's own argparse registration.

Nothing here is a hand-kept list of commands: each stage's parser is built by
calling the same ``register_cli`` functions Zyra's CLI calls, and every
command's arguments are read off the resulting argparse actions. The only
hand-kept knowledge is which argument *names* are file paths (argparse has no
notion of it) and which stages exist at all.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import IO, Any, NoReturn

from runner.secret_args import is_secret_arg


class ArgKind(StrEnum):
    """How a value turns into argv."""

    FLAG = "flag"  # store_true/store_false: a boolean
    COUNT = "count"  # -vvv: an integer
    SCALAR = "scalar"  # one value
    LIST = "list"  # several values after one option (nargs + / *)
    REPEATED = "repeated"  # append/extend: the option repeated per value


class PathRole(StrEnum):
    """Whether an argument names a file the command reads or writes."""

    NONE = "none"
    INPUT = "input"
    OUTPUT = "output"


# Argument names (argparse dests) that are paths. Zyra names them consistently,
# so the role follows the name; PATH_ROLE_OVERRIDES covers the exceptions.
INPUT_PATH_DESTS = frozenset(
    {
        "input", "inputs", "file_or_url", "frames", "frames_dir", "frames_meta",
        "items_file", "input_file", "config", "description_file", "credential_file",
        "profile_file", "cmap_file", "color_scale_file", "timestamps_csv",
        "catalog_file", "manifest", "meta", "basemap",
    }
)  # fmt: skip
OUTPUT_PATH_DESTS = frozenset(
    {
        "output", "output_dir", "sync_dir", "metadata_out", "log_file", "log_dir",
        "state_file", "json_report", "legend_file", "output_names",
    }
)  # fmt: skip
PATH_ROLE_OVERRIDES: dict[tuple[str, str, str], PathRole] = {
    # `disseminate local INPUT PATH`: PATH is where the file is written.
    ("disseminate", "local", "path"): PathRole.OUTPUT,
}
# Input arguments that may also be a remote URL instead of a local path.
URL_CAPABLE_DESTS = frozenset({"file_or_url", "input", "inputs", "config", "input_file"})
# Arguments that may also be given as a JSON object: a pipeline written inline
# (runner/pipeline_config.py checks it; the service never fetches one from a URL).
INLINE_DOCUMENT_ARGS = frozenset({("run", "run", "config")})


@dataclass(frozen=True)
class UrlArg:
    """How Zyra reads an argument that is a URL it connects to."""

    bare_scheme: str | None = None  # a value without a scheme is read as this (None: no URL)
    sibling_hosts: bool = False  # Zyra tries api.<host> <-> www.<host> too (OpenAPI lookup)


# Arguments that are URLs Zyra connects to (not paths), keyed (stage, command or "*",
# dest). Their destinations are checked (runner/outbound.py); argparse cannot say which.
URL_ARGS: dict[tuple[str, str, str], UrlArg] = {
    ("acquire", "http", "url"): UrlArg(),
    ("acquire", "api", "url"): UrlArg(),
    ("acquire", "api", "openapi_url"): UrlArg(),
    ("acquire", "s3", "url"): UrlArg(),
    ("acquire", "ftp", "path"): UrlArg(bare_scheme="ftp"),  # `host/path` is FTP too
    ("acquire", "thredds", "catalog_url"): UrlArg(),
    ("process", "update-dataset-json", "input_url"): UrlArg(),
    ("visualize", "*", "tile_source"): UrlArg(),  # a provider name, or a tile URL template
    ("disseminate", "post", "url"): UrlArg(),
    ("disseminate", "s3", "url"): UrlArg(),
    ("disseminate", "ftp", "path"): UrlArg(bare_scheme="ftp"),
    ("search", "api", "url"): UrlArg(sibling_hosts=True),
    ("search", "search", "ogc_wms"): UrlArg(),
    ("search", "search", "ogc_records"): UrlArg(),
}

# Global argparse dests every Zyra command carries that are not arguments.
_IGNORED_DESTS = frozenset({"help", "func"})


@dataclass(frozen=True)
class ArgSpec:
    """One argument of one command, keyed by its argparse dest."""

    name: str
    kind: ArgKind
    value_type: str  # JSON Schema type of one value: string, integer, number, boolean
    option: str | None  # e.g. "--output"; None for a positional
    false_option: str | None = None  # for a flag pair like --x/--no-x sharing a dest
    position: int | None = None  # order among positionals
    choices: tuple[Any, ...] | None = None
    default: Any = None
    required: bool = False
    help: str = ""
    role: PathRole = PathRole.NONE
    accepts_url: bool = False
    accepts_object: bool = False
    nargs: str | int | None = None
    url: UrlArg | None = None  # a URL Zyra connects to (URL_ARGS)
    secret: bool = False  # may carry a credential (runner/secret_args.py)

    @property
    def is_positional(self) -> bool:
        return self.kind is not ArgKind.FLAG and self.option is None

    @property
    def reads_at_file(self) -> bool:
        """Whether a value `@<path>` may make Zyra read that file (e.g. `--data @body.json`):
        then the path after `@` is held to the rules of an input path."""
        return (
            self.role is PathRole.NONE
            and self.kind not in (ArgKind.FLAG, ArgKind.COUNT)
            and self.value_type == "string"
        )

    def json_schema(self) -> dict[str, Any]:
        one: dict[str, Any] = {
            "type": [self.value_type, "object"] if self.accepts_object else self.value_type
        }
        if self.choices:
            one["enum"] = list(self.choices)
        if self.kind in (ArgKind.LIST, ArgKind.REPEATED):
            schema: dict[str, Any] = {"type": "array", "items": one}
            if self.nargs == "+":
                schema["minItems"] = 1
            elif isinstance(self.nargs, int):
                schema["minItems"] = schema["maxItems"] = self.nargs
        elif self.kind is ArgKind.COUNT:
            schema = {"type": "integer", "minimum": 0}
        else:
            schema = one
        if self.help:
            schema["description"] = self.help
        if _json_safe(self.default):
            schema["default"] = self.default
        schema["x-zyra"] = {
            "option": self.option,
            **({"false_option": self.false_option} if self.false_option else {}),
            "positional": self.is_positional,
            "path": self.role.value,
            "accepts_url": self.accepts_url,
            **({"at_file": True} if self.reads_at_file else {}),
            **({"url": True} if self.url else {}),
            **({"secret": True} if self.secret else {}),
        }
        return schema


@dataclass(frozen=True)
class CommandSpec:
    stage: str
    name: str
    description: str
    args: dict[str, ArgSpec]
    # argv words before the arguments, e.g. ("visualize", "heatmap") or ("run",)
    argv_prefix: tuple[str, ...]
    # Zyra's own parser for the words after argv_prefix (it raises CommandLineError)
    parser: argparse.ArgumentParser | None = field(default=None, compare=False, repr=False)

    @property
    def positionals(self) -> list[ArgSpec]:
        return sorted(
            (a for a in self.args.values() if a.is_positional), key=lambda a: a.position or 0
        )

    def json_schema(self) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {name: spec.json_schema() for name, spec in self.args.items()},
            "required": sorted(n for n, s in self.args.items() if s.required),
        }


@dataclass(frozen=True)
class StageSpec:
    name: str
    aliases: tuple[str, ...]
    commands: dict[str, CommandSpec] = field(default_factory=dict)


class UnknownStageError(LookupError):
    def __init__(self, stage: str, valid: Iterable[str]) -> None:
        self.stage = stage
        self.valid = sorted(valid)
        super().__init__(f"unknown stage {stage!r}; valid stages: {', '.join(self.valid)}")


class UnknownCommandError(LookupError):
    def __init__(self, stage: str, command: str, valid: Iterable[str]) -> None:
        self.stage = stage
        self.command = command
        self.valid = sorted(valid)
        super().__init__(
            f"unknown command {command!r} in stage {stage!r}; "
            f"valid commands: {', '.join(self.valid)}"
        )


@dataclass(frozen=True)
class StageSource:
    """Where a stage's commands come from in Zyra."""

    aliases: tuple[str, ...]
    # "module:function" pairs called with an argparse subparsers object
    registrars: tuple[str, ...] = ()
    # for a stage that is one command: "module:function" called with the subparsers
    # object, registering a parser named like the stage (e.g. `run`), or with a
    # bare parser (e.g. `search`)
    single: str | None = None
    single_takes_parser: bool = False


# The stages Zyra's CLI wires up (zyra/cli.py), keyed by canonical name.
STAGE_SOURCES: dict[str, StageSource] = {
    "acquire": StageSource(("import", "ingest"), ("zyra.connectors.ingest:register_cli",)),
    "process": StageSource(
        ("transform",),
        ("zyra.processing:register_cli", "zyra.transform:register_cli"),
    ),
    "visualize": StageSource(("render",), ("zyra.visualization.cli_register:register_cli",)),
    "disseminate": StageSource(
        ("export", "decimate", "decimation"), ("zyra.connectors.egress:register_cli",)
    ),
    "run": StageSource((), single="zyra.pipeline_runner:register_cli_run"),
    "search": StageSource(
        (), single="zyra.connectors.discovery:register_cli", single_takes_parser=True
    ),
    # Off unless enabled in settings: interactive, LLM-driven or skeleton stages.
    "wizard": StageSource((), single="zyra.wizard:register_cli", single_takes_parser=True),
    "narrate": StageSource((), ("zyra.narrate:register_cli",)),
    "swarm": StageSource((), single="zyra.swarm.cli:register_cli", single_takes_parser=True),
    "plan": StageSource((), single="zyra.swarm.planner:register_cli", single_takes_parser=True),
    "simulate": StageSource((), ("zyra.simulate:register_cli",)),
    "decide": StageSource(("optimize",), ("zyra.decide:register_cli",)),
    "verify": StageSource((), ("zyra.verify:register_cli",)),
}
DEFAULT_STAGES = ("acquire", "process", "visualize", "disseminate", "run", "search")


def _load(ref: str) -> Callable[..., Any]:
    module, _, func = ref.partition(":")
    return getattr(importlib.import_module(module), func)


def _json_safe(value: Any) -> bool:
    if value is None or isinstance(value, bool | int | float | str):
        return value is not None
    if isinstance(value, list | tuple):
        return all(_json_safe(v) for v in value)
    return False


def _value_type(action: argparse.Action) -> str:
    if action.type is int:
        return "integer"
    if action.type is float:
        return "number"
    if action.choices and all(isinstance(c, int) for c in action.choices):
        return "integer"
    return "string"


def _clean_help(action: argparse.Action) -> str:
    text = action.help if isinstance(action.help, str) else ""
    if text == argparse.SUPPRESS:
        return ""
    # Help strings carry argparse %-formatting. Some of Zyra's have a bare `%Y`
    # that argparse itself chokes on; those are shown unformatted.
    with contextlib.suppress(ValueError, KeyError, TypeError):
        text = text % {**vars(action), "prog": "zyra"}
    return re.sub(r"\s+", " ", text).strip()


def _long_option(action: argparse.Action) -> str:
    longs = [o for o in action.option_strings if o.startswith("--")]
    return (longs or list(action.option_strings))[0]


def _arg_kind(action: argparse.Action) -> ArgKind:
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        return ArgKind.FLAG
    if isinstance(action, argparse._CountAction):
        return ArgKind.COUNT
    if isinstance(action, argparse._AppendAction | argparse._ExtendAction):
        return ArgKind.REPEATED
    if action.nargs in ("+", "*") or isinstance(action.nargs, int):
        return ArgKind.LIST
    return ArgKind.SCALAR


def _path_role(stage: str, command: str, dest: str) -> PathRole:
    override = PATH_ROLE_OVERRIDES.get((stage, command, dest))
    if override is not None:
        return override
    if dest in INPUT_PATH_DESTS:
        return PathRole.INPUT
    if dest in OUTPUT_PATH_DESTS:
        return PathRole.OUTPUT
    return PathRole.NONE


def _url_arg(stage: str, command: str, dest: str) -> UrlArg | None:
    return URL_ARGS.get((stage, command, dest)) or URL_ARGS.get((stage, "*", dest))


def command_from_parser(
    stage: str, name: str, parser: argparse.ArgumentParser, argv_prefix: tuple[str, ...]
) -> CommandSpec:
    """Read one command's arguments off its argparse parser."""
    args: dict[str, ArgSpec] = {}
    position = 0
    for action in parser._actions:
        if action.dest in _IGNORED_DESTS or isinstance(
            action, argparse._HelpAction | argparse._SubParsersAction | argparse._VersionAction
        ):
            continue
        kind = _arg_kind(action)
        if kind is ArgKind.FLAG:
            args[action.dest] = _flag_spec(action, args.get(action.dest))
            continue
        is_positional = not action.option_strings
        role = _path_role(stage, name, action.dest)
        args[action.dest] = ArgSpec(
            name=action.dest,
            kind=kind,
            value_type=_value_type(action),
            option=None if is_positional else _long_option(action),
            position=position if is_positional else None,
            choices=tuple(action.choices) if action.choices else None,
            default=action.default if action.default is not argparse.SUPPRESS else None,
            required=action.nargs not in ("?", "*") if is_positional else bool(action.required),
            help=_clean_help(action),
            role=role,
            accepts_url=role is PathRole.INPUT
            and action.dest in URL_CAPABLE_DESTS
            and (stage, name, action.dest) not in INLINE_DOCUMENT_ARGS,
            accepts_object=(stage, name, action.dest) in INLINE_DOCUMENT_ARGS,
            nargs=action.nargs,
            url=_url_arg(stage, name, action.dest),
            secret=role is PathRole.NONE and is_secret_arg(action.dest),
        )
        if is_positional:
            position += 1
    return CommandSpec(
        stage=stage,
        name=name,
        description=_clean_help_text(parser.description or ""),
        args=args,
        argv_prefix=argv_prefix,
        parser=parser,
    )


def _flag_spec(action: argparse.Action, paired: ArgSpec | None) -> ArgSpec:
    """A boolean argument; --x and --no-x writing one dest become one spec."""
    sets_false = isinstance(action, argparse._StoreFalseAction)
    flag = _long_option(action)
    if paired is not None:
        return replace(paired, **{"false_option" if sets_false else "option": flag})
    return ArgSpec(
        name=action.dest,
        kind=ArgKind.FLAG,
        value_type="boolean",
        option=None if sets_false else flag,
        false_option=flag if sets_false else None,
        default=bool(action.default),
        help=_clean_help(action),
    )


def _clean_help_text(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _subparsers_of(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action
    return None


class CommandLineError(ValueError):
    """Zyra's parser refused an argv (where the CLI would print usage and exit 2)."""


class RaisingArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting.

    The catalog's parsers check pipeline stages inside the API process, where
    exiting is no answer. Subparsers are built from the parent's class, so every
    parser of the tree behaves the same.
    """

    def error(self, message: str) -> NoReturn:
        raise CommandLineError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        # Reached by --help and --version: they print instead of running.
        raise CommandLineError((message or "").strip() or "asks for help instead of running")

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:
        pass


def _commands_of_stage(stage: str, source: StageSource) -> dict[str, CommandSpec]:
    root = RaisingArgumentParser(prog="zyra")
    sub = root.add_subparsers(dest="cmd")
    commands: dict[str, CommandSpec] = {}
    if source.single is None:
        for ref in source.registrars:
            _load(ref)(sub)
        help_by_name = {a.dest: a.help or "" for a in sub._choices_actions}
        for name, parser in sub.choices.items():
            spec = command_from_parser(stage, name, parser, (stage, name))
            if not spec.description:
                spec = replace(spec, description=help_by_name.get(name, ""))
            commands[name] = spec
        return commands
    if source.single_takes_parser:
        parser = sub.add_parser(stage)
        _load(source.single)(parser)
    else:
        _load(source.single)(sub)
        parser = sub.choices[stage]
    commands[stage] = command_from_parser(stage, stage, parser, (stage,))
    # A single-command stage may still have subcommands (e.g. `search api`).
    nested = _subparsers_of(parser)
    if nested is not None:
        for name, nested_parser in nested.choices.items():
            commands[name] = command_from_parser(stage, name, nested_parser, (stage, name))
    return commands


@dataclass(frozen=True)
class ExposurePolicy:
    """Which stages and commands the service offers (from settings)."""

    stages: tuple[str, ...] = DEFAULT_STAGES
    deny: tuple[str, ...] = ()  # "stage" or "stage/command", canonical names

    def allows(self, stage: str, command: str) -> bool:
        return stage not in self.deny and f"{stage}/{command}" not in self.deny


class CommandCatalog:
    """Stage → command → argument specs, for the installed Zyra."""

    def __init__(self, stages: dict[str, StageSpec]) -> None:
        self.stages = stages
        self._alias_to_stage = {
            alias: spec.name for spec in stages.values() for alias in (spec.name, *spec.aliases)
        }

    @classmethod
    def from_zyra(cls, policy: ExposurePolicy | None = None) -> CommandCatalog:
        policy = policy or ExposurePolicy()
        stages: dict[str, StageSpec] = {}
        for stage in policy.stages:
            source = STAGE_SOURCES.get(stage)
            if source is None:
                raise ValueError(
                    f"unknown stage {stage!r} in settings; known: {', '.join(STAGE_SOURCES)}"
                )
            commands = {
                name: spec
                for name, spec in _commands_of_stage(stage, source).items()
                if policy.allows(stage, name)
            }
            if commands:
                stages[stage] = StageSpec(stage, source.aliases, commands)
        return cls(stages)

    def canonical_stage(self, stage: str) -> str:
        key = stage.strip().lower()
        if key not in self._alias_to_stage:
            raise UnknownStageError(stage, self.stages)
        return self._alias_to_stage[key]

    def resolve(self, stage: str, command: str | None) -> CommandSpec:
        """Find a command by stage (or alias) and name; single-command stages need no name."""
        spec = self.stages[self.canonical_stage(stage)]
        name = (command or "").strip() or spec.name
        if name not in spec.commands:
            raise UnknownCommandError(spec.name, name, spec.commands)
        return spec.commands[name]

    def describe(self) -> dict[str, Any]:
        """The `GET /cli/commands` document."""
        return {
            "stages": {
                stage.name: {
                    "aliases": list(stage.aliases),
                    "commands": {
                        cmd.name: {"description": cmd.description, "schema": cmd.json_schema()}
                        for cmd in stage.commands.values()
                    },
                }
                for stage in self.stages.values()
            }
        }
