"""A `run` pipeline, checked stage by stage before anything runs.

`zyra run CONFIG` reads a YAML/JSON document of stages and runs each one as a
Zyra command, after applying `--set` overrides and expanding `$VAR` from its
environment. The request's own arguments say nothing about what those stages
read or write, so the document is held here to the rules of a direct request:

- the document comes inline, from an upload, or from an allowed absolute path;
- overrides are applied with Zyra's own `_apply_overrides` (then dropped);
- environment references are refused, except names the operator allows, which
  are expanded here, so nothing is left for Zyra to expand;
- every stage becomes argv through Zyra's own `_build_argv_for_stage`, must be a
  command the service offers (never `run` itself), is parsed by that command's
  own parser, and every path or `@file` it names obeys the same PathPolicy, every
  URL it connects to the same outbound policy.

What runs is exactly what was checked: the normalised document is written as
JSON into the job's working directory, and the stages checked are the ones
Zyra's own loader reads back from that text.
"""

from __future__ import annotations

import copy
import json
import os
import re
import stat
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from zyra.pipeline_runner import _apply_overrides, _build_argv_for_stage, _load_config

from runner.argv import ArgProblem, InvalidArgsError, PathPolicy
from runner.catalog import (
    ArgSpec,
    CommandCatalog,
    CommandLineError,
    CommandSpec,
    UnknownCommandError,
    UnknownStageError,
)
from runner.inputs import FILE_ID, StagedInput, UploadMeta, file_ref, resolve_file_refs

PIPELINE_PATH = "inputs/pipeline/pipeline.json"  # relative to the job's working directory
MAX_CONFIG_BYTES = 1 << 20
MAX_STAGES = 100
MAX_VALUES = 100_000  # values in one document: YAML aliases can multiply a small file
MAX_DEPTH = 64
# Exactly the references os.path.expandvars (called by Zyra's runner) replaces.
ENV_REFERENCE = re.compile(r"\$(\w+|\{[^}]*\})", re.ASCII)
_BRACED = re.compile(r"\{(\w+)(?::-(.*))?\}", re.ASCII | re.DOTALL)
# What makes Zyra's `run` treat a document as a workflow (zyra/pipeline_runner.py).
_WORKFLOW_KEYS = ("jobs", "on")
_WORKFLOW_TOKENS = ("\njobs:", "\non:", "\r\njobs:", "\r\non:")

ACCEPTED = (
    'a pipeline object ({"stages": [{"stage", "command", "args"}, ...]}), an uploaded '
    'file ("file_id:<id>" or {"file_id": "<id>"}) or an absolute path under an allowed '
    "prefix"
)
_STAGE_SHAPE = (
    f"a pipeline is a mapping with a `stages` list of 1 to {MAX_STAGES} stages; each stage "
    "is a mapping with `stage` and `command` (strings) and optional `args` (a mapping)"
)


@dataclass(frozen=True)
class PipelineRules:
    """What a pipeline is held to: the same catalog and paths as a direct request."""

    catalog: CommandCatalog
    paths: PathPolicy
    env: Mapping[str, str]  # the command's environment
    env_allow: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Uploads:
    """How to reach uploaded files: their metadata, and their bytes by file id."""

    meta: Callable[[str], UploadMeta | None]
    data: Callable[[str], bytes | None]


@dataclass(frozen=True)
class CheckedPipeline:
    args: dict[str, Any]  # the `run` args to build argv from: config named, no overrides
    inputs: list[StagedInput]  # the document itself and the uploads its stages name
    document: dict[str, Any]  # what Zyra will read


class _StageShape(BaseModel):
    model_config = ConfigDict(strict=True)

    stage: str
    command: str
    args: dict[str, Any] = Field(default_factory=dict)


class _PipelineShape(BaseModel):
    model_config = ConfigDict(strict=True)

    stages: list[_StageShape] = Field(min_length=1, max_length=MAX_STAGES)


class _Refused(Exception):
    """One reason a stage cannot run, and which of its fields it concerns."""

    def __init__(self, msg: str, type_: str, field: str, input_: Any = None) -> None:
        super().__init__(msg)
        self.msg, self.type, self.field, self.input = msg, type_, field, input_


def check_pipeline(args: dict[str, Any], rules: PipelineRules, uploads: Uploads) -> CheckedPipeline:
    """The `run` request's args, checked; raises InvalidArgsError naming what is refused."""
    document, text = _load(args.get("config"), rules.paths, uploads)
    _refuse_workflow(document, text)
    overrides = _overrides(args.get("overrides"))
    _measure(document)
    _require_shape(document)
    _apply_overrides(document, overrides)
    document = _expand_env(document, rules)
    staged = _stage_uploads(document, rules.catalog, uploads)
    text, document = _as_zyra_reads(document)
    _require_shape(document)
    problems = [p for i, s in enumerate(document["stages"]) for p in _stage_problems(i, s, rules)]
    if problems:
        raise InvalidArgsError(problems)
    run_args = {k: v for k, v in args.items() if k != "overrides"} | {"config": PIPELINE_PATH}
    return CheckedPipeline(
        run_args, [*staged, StagedInput(path=PIPELINE_PATH, content=text)], document
    )


def _refused(msg: str, type_: str = "config", input_: Any = None) -> InvalidArgsError:
    return InvalidArgsError([ArgProblem("config", msg, type_, input_)])


# --- where the document comes from ---------------------------------------------------------


def _load(config: Any, paths: PathPolicy, uploads: Uploads) -> tuple[Any, str | None]:
    """The document and, when it came as text, that text."""
    file_id = file_ref(config)
    if file_id is not None:
        text = _upload_text(file_id, uploads)
    elif isinstance(config, dict):
        return copy.deepcopy(config), None  # the record keeps the client's own copy
    elif isinstance(config, str) and config.startswith("/"):
        text = _local_text(config, paths)
    elif isinstance(config, str) and "://" in config:
        raise _refused(f"a URL is not accepted here; give {ACCEPTED}", "config", config)
    elif isinstance(config, str):
        raise _refused(
            "a relative path names nothing yet (the job's working directory is empty when "
            f"the request arrives); give {ACCEPTED}",
            "config",
            config,
        )
    elif config is None:
        raise _refused(f"is required; give {ACCEPTED}", "missing")
    else:
        raise _refused(f"wrong type; give {ACCEPTED}", "type", config)
    return _parse(text), text


def _upload_text(file_id: str, uploads: Uploads) -> str:
    meta = uploads.meta(file_id) if FILE_ID.match(file_id) else None
    if meta is None:
        raise _refused(
            f"no uploaded file with id {file_id!r}; upload it with POST /upload first",
            "file_ref",
            file_id,
        )
    if meta.size > MAX_CONFIG_BYTES:
        raise _too_large()
    data = uploads.data(file_id)
    if data is None:
        raise _refused(f"uploaded file {file_id} is no longer stored", "file_ref", file_id)
    return _decode(data)


def _local_text(path: str, paths: PathPolicy) -> str:
    refusal = paths.check_path(path, accepts_url=False)
    if refusal:
        raise _refused(f"{refusal}; or give {ACCEPTED}", "path", path)
    # The API reads this file itself: a symbolic link may not lead out of the prefixes.
    real_prefixes = PathPolicy(tuple(os.path.realpath(p) for p in paths.allowed_prefixes))
    if real_prefixes.check_path(os.path.realpath(path), accepts_url=False):
        raise _refused("leads out of the allowed prefixes through a symbolic link", "path", path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _refused(f"cannot be read: {exc.strerror}", "path", path) from exc
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise _refused("is not a regular file", "path", path)
        data = f.read(MAX_CONFIG_BYTES + 1)
    return _decode(data)


def _decode(data: bytes) -> str:
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_large()
    try:
        return data.decode("utf-8")  # as Zyra reads it
    except UnicodeDecodeError as exc:
        raise _refused("is not UTF-8 text") from exc


def _too_large() -> InvalidArgsError:
    return _refused(f"a pipeline may be at most {MAX_CONFIG_BYTES} bytes", "too_large")


def _parse(text: str) -> Any:
    """YAML first, then JSON, like Zyra's own loader."""
    try:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as yaml_error:
            try:
                return json.loads(text)
            except ValueError:
                problem = _yaml_problem(yaml_error)
        raise _refused(f"is neither YAML nor JSON: {problem}")
    except RecursionError:
        raise _refused(f"nests deeper than {MAX_DEPTH} levels", "too_large") from None


def _yaml_problem(error: yaml.YAMLError) -> str:
    # Without the snippet of the offending line that str(error) would quote.
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or "unreadable"
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


# --- the document as a whole ---------------------------------------------------------------


def _refuse_workflow(document: Any, text: str | None) -> None:
    keys = isinstance(document, dict) and any(k in document for k in _WORKFLOW_KEYS)
    if keys or (text is not None and any(t in text for t in _WORKFLOW_TOKENS)):
        raise _refused(
            "is a Zyra workflow (it has `jobs` or `on`); only pipelines are accepted: "
            + _STAGE_SHAPE,
            "workflow",
        )


def _overrides(value: Any) -> list[tuple[str, str]]:
    """The request's `overrides` (Zyra's `--set key=value`) as Zyra splits them."""
    pairs: list[tuple[str, str]] = []
    for item in value if isinstance(value, list) else [] if value is None else [value]:
        if not isinstance(item, str) or "=" not in item:
            raise InvalidArgsError(
                [ArgProblem("overrides", "each override is 'key=value', 'N.key=value' or "
                            "'stage.key=value' (Zyra's --set)", "value", item)]
            )  # fmt: skip
        key, _, text = item.partition("=")
        pairs.append((key, text))
    return pairs


def _measure(document: Any) -> None:
    """Refuse documents too big to walk (YAML aliases repeat one value many times)."""
    seen, stack = 0, [(document, 0)]
    while stack:
        value, depth = stack.pop()
        seen += 1
        if seen > MAX_VALUES:
            raise _refused(f"holds more than {MAX_VALUES} values", "too_large")
        if depth > MAX_DEPTH:
            raise _refused(f"nests deeper than {MAX_DEPTH} levels", "too_large")
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]


def _require_shape(document: Any) -> None:
    if not isinstance(document, dict):
        raise _refused(f"is not a mapping; {_STAGE_SHAPE}", "pipeline")
    try:
        _PipelineShape.model_validate({"stages": document.get("stages")})
    except ValidationError as exc:
        raise InvalidArgsError(
            [ArgProblem("config", f"{_where(e['loc'])}{e['msg']}; {_STAGE_SHAPE}", "pipeline",
                        at=tuple(e["loc"])) for e in exc.errors()]
        ) from None  # fmt: skip


def _where(loc: tuple[Any, ...]) -> str:
    return f"stage {loc[1] + 1}: " if len(loc) > 1 and isinstance(loc[1], int) else ""


# --- environment references ----------------------------------------------------------------


def _expand_env(document: dict[str, Any], rules: PipelineRules) -> dict[str, Any]:
    """The document with allowed references expanded; any other reference is refused."""
    problems: list[ArgProblem] = []

    def walk(value: Any, at: tuple[str | int, ...]) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, (*at, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*at, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and ENV_REFERENCE.search(value):
            expanded, refusal = _expand_string(value, rules)
            if refusal:
                problems.append(ArgProblem("config", _in_stage(document, at) + refusal, "env",
                                           value, at=_stage_loc(at)))  # fmt: skip
            return expanded
        return value

    expanded = walk(document, ())
    if problems:
        raise InvalidArgsError(problems)
    return expanded


def _expand_string(text: str, rules: PipelineRules) -> tuple[str, str | None]:
    """`text` with allowed references replaced (`${NAME:-default}` as Zyra reads it),
    and why it is refused, if it is."""
    allowed = ", ".join(sorted(rules.env_allow)) or "none"
    refusals: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        reference, body = match.group(0), match.group(1)
        braced = _BRACED.fullmatch(body)  # ${NAME} or ${NAME:-default}
        # $NAME, or the name in braces; other forms (e.g. ${X:+y}) are never expanded
        name = body if not body.startswith("{") else braced.group(1) if braced else None
        if name is None or name not in rules.env_allow:
            refusals.append(
                f"{reference!r} refers to the environment; expansion is off except for "
                f"names in ZYRA_PIPELINE_ENV_ALLOW (allowed: {allowed}) as $NAME, ${{NAME}} "
                "or ${NAME:-default}"
            )
            return reference
        value, default = rules.env.get(name), braced.group(2) if braced else None
        if default is not None and not value:
            return default
        if value is None:
            refusals.append(f"{reference!r}: {name} is not set in the command's environment")
            return reference
        return value

    expanded = ENV_REFERENCE.sub(substitute, text)
    if not refusals and ENV_REFERENCE.search(expanded):
        refusals.append(f"expands to {expanded!r}, which still holds a '$' reference")
    return expanded, refusals[0] if refusals else None


def _stage_loc(at: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """A location inside a stage names the argument: (stages, i, input), not (…, args, input)."""
    if len(at) > 3 and at[0] == "stages" and at[2] == "args":
        return (*at[:2], *at[3:])
    return at


def _in_stage(document: dict[str, Any], at: tuple[str | int, ...]) -> str:
    if len(at) > 1 and at[0] == "stages" and isinstance(at[1], int):
        return _stage_label(at[1], document["stages"][at[1]]) + ": "
    return ""


def _stage_label(index: int, stage: dict[str, Any]) -> str:
    return f"stage {index + 1} ({stage.get('stage')} {stage.get('command')})"


# --- stages --------------------------------------------------------------------------------


def _command_of(stage: dict[str, Any], catalog: CommandCatalog) -> tuple[list[str], CommandSpec]:
    """The argv Zyra builds for a stage, and the offered command it runs."""
    try:
        argv = _build_argv_for_stage(copy.deepcopy(stage))
    except (SystemExit, Exception) as exc:  # Zyra's code, given a client's document
        raise _Refused(f"Zyra cannot map it to a command: {exc}", "pipeline", "stage") from None
    try:
        spec = catalog.resolve(argv[0], argv[1])
    except UnknownStageError as exc:
        offered = ", ".join(s for s in exc.valid if s != "run")
        raise _Refused(f"stage {argv[0]!r} is not offered; offered: {offered}",
                       "unknown_stage", "stage", stage["stage"]) from None  # fmt: skip
    except UnknownCommandError as exc:
        raise _Refused(str(exc), "unknown_command", "command", stage["command"]) from None
    if spec.stage == "run":
        raise _Refused("a pipeline may not run another pipeline", "nested_run", "stage", "run")
    if len(spec.argv_prefix) == 2 and argv[1] != spec.name:
        raise _Refused(f"unknown command {argv[1]!r}; did you mean {spec.name!r}?",
                       "unknown_command", "command", stage["command"])  # fmt: skip
    return argv, spec


def _stage_uploads(
    document: dict[str, Any], catalog: CommandCatalog, uploads: Uploads
) -> list[StagedInput]:
    """Uploads named by stages (`"file_id:<id>"`) replaced by their staged paths."""
    staged: dict[str, StagedInput] = {}
    problems: list[ArgProblem] = []
    for index, stage in enumerate(document["stages"]):
        if not any(file_ref(v) for v in _leaves(stage.get("args") or {})):
            continue
        try:
            _, spec = _command_of(stage, catalog)
        except _Refused:
            continue  # reported with the stage's other problems
        resolved, found, refs = resolve_file_refs(spec, stage.get("args") or {}, uploads.meta)
        stage["args"] = resolved
        staged |= {item.path: item for item in found}
        label = _stage_label(index, stage)
        problems += [replace(p, arg="config", msg=f"{label}: {p.msg}", at=("stages", index, p.arg))
                     for p in refs]  # fmt: skip
    if problems:
        raise InvalidArgsError(problems)
    return list(staged.values())


def _leaves(args: dict[str, Any]) -> Iterator[Any]:
    for value in args.values():
        yield from value if isinstance(value, list) else [value]


def _stage_problems(index: int, stage: dict[str, Any], rules: PipelineRules) -> list[ArgProblem]:
    label = _stage_label(index, stage)
    try:
        argv, spec = _command_of(stage, rules.catalog)
    except _Refused as refused:
        return [ArgProblem("config", f"{label}: {refused.msg}", refused.type, refused.input,
                           at=("stages", index, refused.field))]  # fmt: skip
    assert spec.parser is not None
    try:
        parsed = vars(spec.parser.parse_args(argv[len(spec.argv_prefix) :]))
    except CommandLineError as exc:
        msg = f"{label}: Zyra's parser refuses `zyra {' '.join(argv)}`: {exc}"
        return [ArgProblem("config", msg, "usage", stage.get("args"), at=("stages", index, "args"))]
    defaults = {action.dest: action.default for action in reversed(spec.parser._actions)}
    problems: list[ArgProblem] = []
    for name, value in parsed.items():
        arg = spec.args.get(name)
        if arg is None or value == defaults.get(name):
            continue  # not an argument, or Zyra's own default
        for text in _texts(value):
            refusal, type_ = rules.paths.check_value(arg, text), "path"
            if not refusal:
                refusal, type_ = rules.paths.check_url(arg, text), "url"
            if refusal:
                problems.append(ArgProblem("config", f"{label}: {refusal}", type_, text,
                                           at=("stages", index, _pipeline_key(arg))))  # fmt: skip
    return problems


def _pipeline_key(arg: ArgSpec) -> str:
    """The key a pipeline's args use for an argument: Zyra maps `some_key` to `--some-key`
    (so `search api`'s `api_query` is `query` there)."""
    if arg.option and arg.option.startswith("--"):
        return arg.option[2:].replace("-", "_")
    return arg.name


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str | os.PathLike):
        yield os.fspath(value)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


# --- what Zyra reads -----------------------------------------------------------------------


def _as_zyra_reads(document: dict[str, Any]) -> tuple[str, Any]:
    """The document as JSON text, and that text as Zyra's own loader reads it back."""
    try:
        # YAML (which Zyra tries first) folds a raw NEL into a space: keep it escaped.
        text = json.dumps(document, ensure_ascii=False, allow_nan=False, default=str)
        text = text.replace("\x85", "\\u0085")
        text.encode("utf-8")
    except ValueError as exc:  # NaN/Infinity, or a lone surrogate
        raise _refused(f"holds a value JSON cannot carry: {exc}") from None
    if len(text.encode("utf-8")) > MAX_CONFIG_BYTES:
        raise _too_large()
    with tempfile.TemporaryDirectory(prefix="zyra-pipeline-") as folder:
        path = Path(folder) / "pipeline.json"
        path.write_text(text, encoding="utf-8")
        return text, _load_config(str(path))
